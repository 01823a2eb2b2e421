//! The append action: one `append` snapshot of new data files, with merge-append (small
//! manifests are merged so the manifest list stays bounded) and in-commit expiry (old
//! snapshots beyond the table's limits leave the metadata in the same version).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iceberg::spec::{
    DataFile, ManifestFile, Operation, Schema, TableMetadata, TableMetadataBuilder,
};

use crate::commit::RetryPolicy;
use crate::driver::{Action, Applied};
use crate::error::{Error, Result};
use crate::maintenance;
use crate::metadata::now_ms;
use crate::snapshot::{self, NewSnapshot, SnapshotProducer};
use crate::table::Table;
use crate::version::Version;

/// How an append commits.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// The id stamped into the snapshot summary. Reusing the id of an earlier attempt makes
    /// the append idempotent: if that attempt landed, nothing is committed again.
    pub commit_id: String,
    /// Retry limits.
    pub policy: RetryPolicy,
    /// Extra snapshot-summary properties.
    pub properties: HashMap<String, String>,
    /// Table properties set in the same version as the snapshot (atomically with it).
    /// Usually empty.
    pub table_properties: HashMap<String, String>,
    /// A counter property the append advances in the same version (sync's watermark),
    /// compare-and-set: see [`Advance`].
    pub advance: Option<Advance>,
    /// The files may include objects this writer did not write after it loaded the head
    /// (sync reusing a copy a failed run left): every vacuum intent in the log is then
    /// checked before a claim (see [`crate::intent`]).
    pub reuses_objects: bool,
}

/// A table-property counter an append advances from `from` to `to` in its own version, as
/// a compare-and-set re-checked on every head the commit builds on (sync's watermark:
/// never overwritten from a stale plan). On a head where `key` holds `from` (absent: 0) the
/// append applies and sets it to `to`; where it already holds `to` or more, another writer
/// committed this step, so nothing is committed and the append reports
/// `already_committed`; anything else fails with [`Error::RequirementFailed`], committing
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The table property.
    pub key: String,
    /// The value the commit was planned from.
    pub from: i64,
    /// The value it sets.
    pub to: i64,
}

impl Advance {
    /// Whether the head `metadata` already holds this step (`Ok(true)`), is where the
    /// step starts (`Ok(false)`), or neither (an error naming the table and property).
    fn check(&self, table: &str, metadata: &TableMetadata, attempt: u32) -> Result<bool> {
        let raw = metadata.properties().get(&self.key);
        let at = match raw {
            None => Some(0),
            Some(v) => v.trim().parse::<i64>().ok(),
        };
        match at {
            Some(v) if v >= self.to => Ok(true),
            Some(v) if v == self.from => Ok(false),
            _ => Err(Error::RequirementFailed {
                table: table.to_string(),
                reason: format!(
                    "the table property {} holds {}, not {} as planned: another writer moved it",
                    self.key,
                    raw.map_or("nothing".to_string(), |v| format!("'{v}'")),
                    self.from
                ),
                after_rebase: attempt > 0,
            }),
        }
    }
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            commit_id: uuid::Uuid::new_v4().to_string(),
            policy: RetryPolicy::default(),
            properties: HashMap::new(),
            table_properties: HashMap::new(),
            advance: None,
            reuses_objects: false,
        }
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    /// The table's head version after the call (the commit is in this version, or in an
    /// earlier one when `already_committed`).
    pub version: Version,
    /// The snapshot it added.
    pub snapshot_id: i64,
    /// Version puts made (1 without contention).
    pub attempts: u32,
    /// True if the commit had already landed earlier (same commit id) and nothing new was written.
    pub already_committed: bool,
}

/// How long [`Table::append`] may take at most, for documentation and CLI defaults.
pub fn default_commit_timeout() -> Duration {
    RetryPolicy::default().max_elapsed
}

impl Table {
    /// Commit data files (written by [`crate::writer::DataWriter`]) as one append snapshot,
    /// through the one commit driver ([`Table::commit`]).
    pub async fn append(
        &mut self,
        files: Vec<DataFile>,
        options: CommitOptions,
    ) -> Result<CommitReport> {
        self.append_files_of(files, None, options).await
    }

    /// Commit data files written with `schema` (a plan of [`crate::evolve::plan`]: the
    /// table's schema with added or widened columns) as one append snapshot that also
    /// installs the columns the head lacks, in the same version. On every head the commit
    /// builds on, [`crate::evolve::reconcile`] decides what to install; when the head no
    /// longer fits the files, this fails with [`Error::SchemaMoved`] and nothing is
    /// committed (`ingest::append_files` then writes the files again).
    pub async fn append_evolving(
        &mut self,
        files: Vec<DataFile>,
        schema: Schema,
        options: CommitOptions,
    ) -> Result<CommitReport> {
        self.append_files_of(files, Some(schema), options).await
    }

    async fn append_files_of(
        &mut self,
        files: Vec<DataFile>,
        schema: Option<Schema>,
        options: CommitOptions,
    ) -> Result<CommitReport> {
        // The driver looks for the commit id before the action writes anything, so a
        // rerun of a landed append uploads no manifest.
        let mut action = AppendAction {
            files,
            manifest: None,
            snapshot_id: self.fresh_snapshot_id(),
            write_id: uuid::Uuid::new_v4().to_string(),
            options: &options,
            schema,
        };
        let done = self
            .commit(&options.commit_id, &options.policy, &mut action)
            .await?;
        Ok(CommitReport {
            version: done.version,
            snapshot_id: self
                .find_commit(&options.commit_id)
                .unwrap_or(action.snapshot_id),
            attempts: done.attempts,
            already_committed: done.already_committed,
        })
    }
}

/// The append action: one `append` snapshot of files whose manifest is written on the
/// first attempt and reused by every later one (its entries inherit their sequence number,
/// and the snapshot id stays fixed).
struct AppendAction<'a> {
    files: Vec<DataFile>,
    manifest: Option<ManifestFile>,
    snapshot_id: i64,
    write_id: String,
    options: &'a CommitOptions,
    /// The schema the files were written with, when it evolves the table's.
    schema: Option<Schema>,
}

#[async_trait::async_trait]
impl Action for AppendAction<'_> {
    fn kind(&self) -> &'static str {
        "append"
    }

    fn reuses_objects(&self) -> bool {
        self.options.reuses_objects
    }

    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>> {
        if self.files.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "append".into(),
                reason: "no data files to commit".into(),
            });
        }
        let mut table_properties = self.options.table_properties.clone();
        if let Some(advance) = &self.options.advance {
            if advance.check(table.name(), table.metadata(), attempt)? {
                return Ok(None);
            }
            table_properties.insert(advance.key.clone(), advance.to.to_string());
        }
        // What of the files' schema this head lacks (re-checked on every head: another
        // writer may have added the same columns, or taken their ids).
        let evolved = match &self.schema {
            Some(planned) => crate::evolve::reconcile(table.name(), table.metadata(), planned)?,
            None => None,
        };
        if self.manifest.is_none() {
            self.manifest = Some(
                snapshot::write_added_manifest(
                    table,
                    &self.files,
                    self.snapshot_id,
                    &self.write_id,
                    self.schema.as_ref(),
                )
                .await?,
            );
        }
        let manifest = self.manifest.clone().expect("written above");
        let producer = SnapshotProducer::new(
            table,
            self.snapshot_id,
            &self.write_id,
            attempt,
            &self.options.commit_id,
        );
        let base = table.metadata().as_ref();
        let settings = maintenance::Settings::of(base);
        let mut manifests = producer.base_manifests().await?;
        // Merge small manifests so the manifest list stays bounded (merge-append).
        let groups =
            maintenance::plan_merge(&manifests, base.default_partition_spec_id(), &settings);
        if !groups.is_empty() {
            let mut merged = Vec::new();
            for (k, group) in groups.iter().enumerate() {
                let sources: Vec<ManifestFile> =
                    group.iter().map(|i| manifests[*i].clone()).collect();
                merged.push(merge_manifests(table, &producer, sources, k + 1).await?);
            }
            let drop: HashSet<usize> = groups.iter().flatten().copied().collect();
            manifests = manifests
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, m)| m)
                .chain(merged)
                .collect();
        }
        manifests.push(manifest);
        let mut applied = producer
            .produce(NewSnapshot {
                operation: Operation::Append,
                manifests,
                added: &self.files,
                removed: &[],
                summary: self.options.properties.clone(),
                table_properties,
                schema: evolved,
            })
            .await?;
        // Expire snapshots so the metadata JSON stays bounded.
        let expired = maintenance::snapshots_to_expire(&applied.metadata, &settings, now_ms());
        if !expired.is_empty() {
            applied.cleanup.manifest_lists = expired
                .iter()
                .filter_map(|id| applied.metadata.snapshot_by_id(*id))
                .map(|s| s.manifest_list().to_string())
                .collect();
            applied.metadata = TableMetadataBuilder::new_from_metadata(applied.metadata, None)
                .remove_snapshots(&expired)
                .build()
                .map_err(|e| Error::iceberg(format!("build next metadata of {}", table.name()), e))?
                .metadata;
        }
        Ok(Some(applied))
    }
}

/// Rewrite several manifests as one whose entries are all `EXISTING` (with their own
/// snapshot ids and sequence numbers); deleted entries are dropped.
async fn merge_manifests(
    table: &Table,
    producer: &SnapshotProducer<'_>,
    sources: Vec<ManifestFile>,
    k: usize,
) -> Result<ManifestFile> {
    // Merge groups are manifests of one spec (the default's, see maintenance::plan_merge).
    let spec_id = sources
        .first()
        .map_or(table.metadata().default_partition_spec_id(), |m| {
            m.partition_spec_id
        });
    let (location, mut writer) = producer.manifest_writer(&format!("m{k}"), spec_id)?;
    // Read the sources concurrently (a merge reads up to min-count-to-merge manifests).
    let loaded = maintenance::load_manifests(table.file_io(), sources).await?;
    for (source, manifest) in loaded {
        for entry in manifest.entries() {
            if !maintenance::keep_entry(entry.status()) {
                continue;
            }
            let (Some(snap), Some(seq)) = (entry.snapshot_id(), entry.sequence_number()) else {
                return Err(Error::CorruptMetadata {
                    location: source.manifest_path.clone(),
                    reason: "an entry has no snapshot id or sequence number".into(),
                });
            };
            writer
                .add_existing_file(
                    entry.data_file().clone(),
                    snap,
                    seq,
                    entry.file_sequence_number,
                )
                .map_err(|e| Error::iceberg(format!("merge into {location}"), e))?;
        }
    }
    writer
        .write_manifest_file()
        .await
        .map_err(|e| Error::iceberg(format!("write merged manifest {location}"), e))
}
