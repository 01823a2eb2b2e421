//! Replacing and removing data files: the snapshot producer behind `floe compact` (a
//! `replace` snapshot: small files out, their rows rewritten into fewer files) and
//! `floe retain` (a `delete` snapshot: whole files older than a cutoff out, metadata only).
//!
//! Each attempt validates against the head it builds on: every file to remove must still be
//! live there. Concurrent appends therefore survive (their manifests are carried over
//! untouched), and if a file to remove was removed meanwhile the rewrite fails cleanly with
//! [`Error::FilesChanged`], committing nothing. The version is claimed like any commit
//! by the one commit driver ([`Table::commit`]); a lost race rebuilds on the new head.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use arrow_array::RecordBatch;
use iceberg::spec::{DataFile, ManifestFile, Operation, PrimitiveLiteral};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::commit::RetryPolicy;
use crate::driver::{Action, Applied};
use crate::error::{Error, Result};
use crate::snapshot::{self, NewSnapshot, SnapshotProducer};
use crate::table::{Table, TableView};
use crate::version::Version;
use crate::writer::DataWriter;

/// What a rewrite committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteReport {
    /// The version it lives in.
    pub version: Version,
    /// Its snapshot.
    pub snapshot_id: i64,
    /// Data files removed.
    pub removed: usize,
    /// Data files added.
    pub added: usize,
    /// Version claims made.
    pub attempts: u32,
}

/// A live data file of the current snapshot.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// The file.
    pub data_file: DataFile,
    /// Its data sequence number (the commit that added its rows, or a compaction).
    pub sequence_number: Option<i64>,
}

/// Every live data file of the table's current snapshot.
pub async fn live_files(table: &TableView) -> Result<Vec<LiveFile>> {
    match table.metadata().current_snapshot() {
        Some(current) => live_files_at(table, current).await,
        None => Ok(Vec::new()),
    }
}

/// Every live data file of `snapshot` of `table`.
pub async fn live_files_at(
    table: &TableView,
    snapshot: &iceberg::spec::SnapshotRef,
) -> Result<Vec<LiveFile>> {
    let list = table.read_manifest_list(snapshot).await?;
    let loaded = crate::maintenance::load_manifests(table.file_io(), list).await?;
    let per_manifest: Vec<Vec<LiveFile>> = loaded
        .into_iter()
        .map(|(_, manifest)| {
            manifest
                .entries()
                .iter()
                .filter(|e| e.is_alive())
                .map(|e| LiveFile {
                    data_file: e.data_file().clone(),
                    sequence_number: e.sequence_number(),
                })
                .collect()
        })
        .collect();
    Ok(per_manifest.into_iter().flatten().collect())
}

impl Table {
    /// Commit one snapshot that removes the data files at `removed` and adds `added`
    /// (written with [`DataWriter`]), as `operation` (`Replace` or `Delete`).
    pub async fn rewrite_files(
        &mut self,
        removed: &[String],
        added: Vec<DataFile>,
        operation: Operation,
    ) -> Result<RewriteReport> {
        let write_id = uuid::Uuid::new_v4().to_string();
        let snapshot_id = self.fresh_snapshot_id();
        let added_manifest = if added.is_empty() {
            None
        } else {
            Some(snapshot::write_added_manifest(self, &added, snapshot_id, &write_id).await?)
        };
        let commit_id = uuid::Uuid::new_v4().to_string();
        let mut action = ReplaceAction {
            removed: removed.iter().map(String::as_str).collect(),
            added: &added,
            added_manifest,
            snapshot_id,
            write_id,
            operation,
            commit_id: commit_id.clone(),
        };
        let done = self
            .commit(&commit_id, &RetryPolicy::default(), &mut action)
            .await?;
        Ok(RewriteReport {
            version: done.version,
            snapshot_id,
            removed: removed.len(),
            added: added.len(),
            attempts: done.attempts,
        })
    }
}

/// The replace / delete action: remove files that must still be live in the head it
/// builds on (else [`Error::FilesChanged`], committing nothing) and add rewritten ones.
struct ReplaceAction<'a> {
    removed: HashSet<&'a str>,
    added: &'a [DataFile],
    added_manifest: Option<ManifestFile>,
    snapshot_id: i64,
    write_id: String,
    operation: Operation,
    commit_id: String,
}

#[async_trait::async_trait]
impl Action for ReplaceAction<'_> {
    fn kind(&self) -> &'static str {
        match self.operation {
            Operation::Delete => "delete-files",
            _ => "replace",
        }
    }

    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>> {
        if table.metadata().current_snapshot().is_none() {
            return Err(Error::InvalidArgument {
                argument: "rewrite".into(),
                reason: format!("{} has no snapshot", table.name()),
            });
        }
        let removed = &self.removed;
        let producer = SnapshotProducer::new(
            table,
            self.snapshot_id,
            &self.write_id,
            attempt,
            &self.commit_id,
        );
        let loaded =
            crate::maintenance::load_manifests(table.file_io(), producer.base_manifests().await?)
                .await?;
        // Validate: every file to remove is live in this base.
        let mut found: HashMap<String, DataFile> = HashMap::new();
        for (_, manifest) in &loaded {
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                if removed.contains(e.data_file().file_path()) {
                    found.insert(e.data_file().file_path().to_string(), e.data_file().clone());
                }
            }
        }
        if found.len() != removed.len() {
            let mut missing: Vec<String> = removed
                .iter()
                .filter(|p| !found.contains_key(**p))
                .map(|p| p.to_string())
                .collect();
            missing.sort();
            return Err(Error::FilesChanged {
                table: table.name().to_string(),
                missing,
            });
        }
        let mut manifests = Vec::new();
        for (k, (m, manifest)) in loaded.into_iter().enumerate() {
            let touches = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && removed.contains(e.data_file().file_path()));
            if !touches {
                manifests.push(m);
                continue;
            }
            let (location, mut writer) = producer.manifest_writer(&format!("r{k}"))?;
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                let (Some(snap), Some(seq)) = (e.snapshot_id(), e.sequence_number()) else {
                    return Err(Error::CorruptMetadata {
                        location: m.manifest_path.clone(),
                        reason: "an entry has no snapshot id or sequence number".into(),
                    });
                };
                let df = e.data_file().clone();
                let step = |err| Error::iceberg(format!("rewrite manifest {location}"), err);
                if removed.contains(df.file_path()) {
                    writer
                        .add_delete_file(df, seq, e.file_sequence_number)
                        .map_err(step)?;
                } else {
                    writer
                        .add_existing_file(df, snap, seq, e.file_sequence_number)
                        .map_err(step)?;
                }
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(|e| Error::iceberg(format!("write manifest {location}"), e))?,
            );
        }
        manifests.extend(self.added_manifest.clone());
        let removed_files: Vec<DataFile> = found.into_values().collect();
        let applied = producer
            .produce(NewSnapshot {
                operation: self.operation.clone(),
                manifests,
                added: self.added,
                removed: &removed_files,
                summary: HashMap::new(),
                table_properties: HashMap::new(),
            })
            .await?;
        Ok(Some(applied))
    }
}

/// The live files of `table` whose rows are all older than `older_than`, judged by the
/// upper bound of the timestamp column `column` (named `argument` in the error when the
/// table has no such column). A file without that bound is never old.
pub async fn files_older_than(
    table: &TableView,
    older_than: Duration,
    column: &str,
    argument: &str,
) -> Result<Vec<LiveFile>> {
    let field = table
        .metadata()
        .current_schema()
        .field_by_name(column)
        .ok_or_else(|| Error::InvalidArgument {
            argument: argument.to_string(),
            reason: format!("{} has no column '{column}'", table.name()),
        })?
        .id;
    // Saturating: an age beyond the clock's range means "older than anything".
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let cutoff_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(micros)
        .unwrap_or(0)
        .saturating_sub(micros(older_than));
    Ok(live_files(table)
        .await?
        .into_iter()
        .filter(
            |f| match f.data_file.upper_bounds().get(&field).map(|d| d.literal()) {
                Some(PrimitiveLiteral::Long(v)) => *v < cutoff_us,
                _ => false,
            },
        )
        .collect())
}

/// Drop every live data file whose rows are all older than `older_than` (by the upper
/// bound of the timestamp column `column`), as a metadata-only `delete` snapshot.
pub async fn retain(
    table: &mut Table,
    older_than: Duration,
    column: &str,
) -> Result<Option<RewriteReport>> {
    table.refresh().await?;
    let old: Vec<String> =
        files_older_than(table, older_than, column, &format!("--column {column}"))
            .await?
            .into_iter()
            .map(|f| f.data_file.file_path().to_string())
            .collect();
    if old.is_empty() {
        return Ok(None);
    }
    table
        .rewrite_files(&old, Vec::new(), Operation::Delete)
        .await
        .map(Some)
}

async fn read_data_file(table: &TableView, path: &str) -> Result<Vec<RecordBatch>> {
    let wh = table.warehouse();
    let bytes = wh
        .store()
        .get(&wh.object_path(path)?)
        .await
        .map_err(|source| Error::Read {
            location: path.to_string(),
            source,
        })?
        .bytes()
        .await
        .map_err(|source| Error::Read {
            location: path.to_string(),
            source,
        })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| Error::Input {
            input: path.to_string(),
            reason: e.to_string(),
        })?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Input {
            input: path.to_string(),
            reason: e.to_string(),
        })
}

/// Bin-pack the small data files of each partition into files of about `target_bytes`,
/// rows sorted by `ts` when the table has that column, committed as one `replace`
/// snapshot. Returns None when there is nothing to compact.
pub async fn compact(table: &mut Table, target_bytes: u64) -> Result<Option<RewriteReport>> {
    table.refresh().await?;
    let mut by_partition: HashMap<String, Vec<DataFile>> = HashMap::new();
    for f in live_files(table).await? {
        if f.data_file.file_size_in_bytes() < target_bytes / 2 {
            by_partition
                .entry(format!("{:?}", f.data_file.partition()))
                .or_default()
                .push(f.data_file);
        }
    }
    let mut bins: Vec<Vec<DataFile>> = Vec::new();
    for (_, mut files) in by_partition {
        files.sort_by(|a, b| a.file_path().cmp(b.file_path()));
        let mut bin: Vec<DataFile> = Vec::new();
        let mut size = 0;
        for f in files {
            if !bin.is_empty() && size + f.file_size_in_bytes() > target_bytes {
                bins.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += f.file_size_in_bytes();
            bin.push(f);
        }
        bins.push(bin);
    }
    bins.retain(|b| b.len() > 1);
    if bins.is_empty() {
        return Ok(None);
    }
    let has_ts = table
        .metadata()
        .current_schema()
        .field_by_name("ts")
        .is_some();
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for bin in bins {
        let mut writer = DataWriter::new(table)?;
        let target = writer.arrow_schema().clone();
        let mut batches = Vec::new();
        for f in &bin {
            for b in read_data_file(table, f.file_path()).await? {
                batches.push(crate::ingest::conform(&b, &target, f.file_path())?);
            }
            removed.push(f.file_path().to_string());
        }
        let all = arrow::compute::concat_batches(&target, &batches).map_err(|e| Error::Input {
            input: "compaction".into(),
            reason: e.to_string(),
        })?;
        let sorted = if has_ts {
            let ts = all.column_by_name("ts").expect("checked: the table has ts");
            let idx =
                arrow::compute::sort_to_indices(ts, None, None).map_err(|e| Error::Input {
                    input: "compaction".into(),
                    reason: e.to_string(),
                })?;
            let cols = all
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Input {
                    input: "compaction".into(),
                    reason: e.to_string(),
                })?;
            RecordBatch::try_new(target.clone(), cols).map_err(|e| Error::Input {
                input: "compaction".into(),
                reason: e.to_string(),
            })?
        } else {
            all
        };
        writer.write(sorted).await?;
        added.extend(writer.close().await?);
    }
    table
        .rewrite_files(&removed, added, Operation::Replace)
        .await
        .map(Some)
}
