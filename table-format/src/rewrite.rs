//! Replacing and removing data files: the snapshot producer behind `floe compact` (a
//! `replace` snapshot: small files out, their rows rewritten into fewer files) and
//! `floe retain` (a `delete` snapshot: whole files older than a cutoff out, metadata only).
//!
//! Delete files other engines wrote (position and equality deletes, merge-on-read) are never
//! rewritten or dropped here: compaction skips every partition that has one (a rewritten
//! data file gets a newer sequence number, out of the deletes' reach, so deleted rows would
//! come back), and retention drops data files only. Such partitions are left for a rewrite
//! by an engine that applies deletes.
//!
//! Each attempt validates against the head it builds on: every file to remove must still be
//! live there. Concurrent appends therefore survive (their manifests are carried over
//! untouched), and if a file to remove was removed meanwhile the rewrite fails cleanly with
//! [`Error::FilesChanged`], committing nothing. The version is claimed like any commit
//! by the one commit driver ([`Table::commit`]); a lost race rebuilds on the new head.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use arrow_array::RecordBatch;
use iceberg::spec::{DataContentType, DataFile, ManifestFile, Operation, PrimitiveLiteral};
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

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// The `replace` it committed; None when there was nothing it could compact.
    pub rewrite: Option<RewriteReport>,
    /// Partitions with small files to compact that were left alone because they have live
    /// delete files (another engine's merge-on-read deletes): rewrite them with that engine.
    pub skipped_partitions_with_deletes: usize,
}

/// A live file of the current snapshot: a data file or a delete file (see
/// [`DataFile::content_type`]).
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// The file (data, position deletes or equality deletes).
    pub data_file: DataFile,
    /// Its data sequence number (the commit that added its rows, or a compaction).
    pub sequence_number: Option<i64>,
}

/// Every live file of the table's current snapshot, data and delete files alike.
pub async fn live_files(table: &TableView) -> Result<Vec<LiveFile>> {
    match table.metadata().current_snapshot() {
        Some(current) => live_files_at(table, current).await,
        None => Ok(Vec::new()),
    }
}

/// Every live file of `snapshot` of `table`, data and delete files alike.
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
            Some(snapshot::write_added_manifest(self, &added, snapshot_id, &write_id, None).await?)
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
            let (location, mut writer) =
                producer.manifest_writer(&format!("r{k}"), m.partition_spec_id)?;
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
                schema: None,
            })
            .await?;
        Ok(Some(applied))
    }
}

/// The live data files of `table` whose rows are all older than `older_than`, judged by
/// the upper bound of the timestamp column `column` (named `argument` in the error when
/// the table has no such column). A file without that bound is never old. Delete files are
/// never returned, whatever their bounds (an equality delete on `column` has some): dropping
/// one would bring back the rows it deletes from files that are not old. They are left for
/// a later rewrite by the engine that wrote them.
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
        .filter(|f| f.data_file.content_type() == DataContentType::Data)
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

/// Every row of the Parquet data file at `path` (a location in `table`'s warehouse), read
/// whole: for small files (compaction, sync's combining).
pub async fn read_data_file(table: &TableView, path: &str) -> Result<Vec<RecordBatch>> {
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

/// The compaction plan for `live` files: bins of small data files (under half of
/// `target_bytes`) of one partition each, about `target_bytes` per bin, and how many
/// partitions that had a bin to rewrite were skipped for their delete files.
///
/// Partitions are compared by their value tuple, as compaction groups them. A delete file
/// is never binned; a partition with any live delete file is skipped whole; a delete file
/// with no partition values (unpartitioned, which may apply to every partition) skips every
/// partition.
fn plan_bins(live: Vec<LiveFile>, target_bytes: u64) -> (Vec<Vec<DataFile>>, usize) {
    let mut by_partition: HashMap<String, Vec<DataFile>> = HashMap::new();
    let mut with_deletes: HashSet<String> = HashSet::new();
    let mut global_deletes = false;
    for f in live {
        let key = format!("{:?}", f.data_file.partition());
        if f.data_file.content_type() != DataContentType::Data {
            global_deletes |= f.data_file.partition().fields().is_empty();
            with_deletes.insert(key);
        } else if f.data_file.file_size_in_bytes() < target_bytes / 2 {
            by_partition.entry(key).or_default().push(f.data_file);
        }
    }
    // Two small files or more: the partition has something to compact.
    by_partition.retain(|_, files| files.len() > 1);
    let before = by_partition.len();
    by_partition.retain(|key, _| !global_deletes && !with_deletes.contains(key));
    let skipped = before - by_partition.len();
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
    (bins, skipped)
}

/// `batch` with its rows ordered by `column` (ascending, nulls first; stable). `step` names
/// the operation in an error.
pub fn sort_by_column(batch: &RecordBatch, column: &str, step: &str) -> Result<RecordBatch> {
    let err = |e: arrow::error::ArrowError| Error::Input {
        input: step.to_string(),
        reason: e.to_string(),
    };
    let Some(key) = batch.column_by_name(column) else {
        return Ok(batch.clone());
    };
    let idx = arrow::compute::sort_to_indices(key, None, None).map_err(err)?;
    let cols = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(err)?;
    RecordBatch::try_new(batch.schema(), cols).map_err(err)
}

/// The rows of the data files at `paths`, conformed to `target` (by column name) and
/// concatenated into one batch, ordered by `sort` when given. Reads every file whole:
/// for small files. `step` names the operation in an error.
pub async fn read_combined(
    table: &TableView,
    paths: &[&str],
    target: &arrow_schema::SchemaRef,
    sort: Option<&str>,
    step: &str,
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    for path in paths {
        for b in read_data_file(table, path).await? {
            batches.push(crate::ingest::conform(&b, target, path)?);
        }
    }
    let all = arrow::compute::concat_batches(target, &batches).map_err(|e| Error::Input {
        input: step.to_string(),
        reason: e.to_string(),
    })?;
    drop(batches);
    match sort {
        Some(column) => sort_by_column(&all, column, step),
        None => Ok(all),
    }
}

/// Bin-pack the small data files of each partition into files of about `target_bytes`,
/// rows sorted by `ts` when the table has that column, committed as one `replace`
/// snapshot. A partition with live delete files is skipped and counted, never rewritten
/// (see the module doc). The report's `rewrite` is None when there is nothing to compact.
pub async fn compact(table: &mut Table, target_bytes: u64) -> Result<CompactReport> {
    table.refresh().await?;
    let (bins, skipped_partitions_with_deletes) = plan_bins(live_files(table).await?, target_bytes);
    if bins.is_empty() {
        return Ok(CompactReport {
            rewrite: None,
            skipped_partitions_with_deletes,
        });
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
        let paths: Vec<&str> = bin.iter().map(|f| f.file_path()).collect();
        removed.extend(paths.iter().map(|p| p.to_string()));
        let sorted =
            read_combined(table, &paths, &target, has_ts.then_some("ts"), "compaction").await?;
        writer.write(sorted).await?;
        added.extend(writer.close().await?);
    }
    let rewrite = table
        .rewrite_files(&removed, added, Operation::Replace)
        .await?;
    Ok(CompactReport {
        rewrite: Some(rewrite),
        skipped_partitions_with_deletes,
    })
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataFileBuilder, DataFileFormat, Literal, Struct};

    use super::*;

    /// A live file: `kind` 'd' data, 'p' position deletes, 'e' equality deletes; in day
    /// partition `day` (None: no partition values); `bytes` long.
    fn file(kind: char, day: Option<i32>, bytes: u64) -> LiveFile {
        let content = match kind {
            'd' => DataContentType::Data,
            'p' => DataContentType::PositionDeletes,
            _ => DataContentType::EqualityDeletes,
        };
        let partition = match day {
            Some(d) => Struct::from_iter([Some(Literal::int(d))]),
            None => Struct::empty(),
        };
        let data_file = DataFileBuilder::default()
            .content(content)
            .file_path(format!("f-{}", uuid::Uuid::new_v4()))
            .file_format(DataFileFormat::Parquet)
            .partition(partition)
            .partition_spec_id(0)
            .record_count(1)
            .file_size_in_bytes(bytes)
            .build()
            .expect("every required field is set");
        LiveFile {
            data_file,
            sequence_number: Some(1),
        }
    }

    #[test]
    fn compaction_never_bins_a_delete_file_and_skips_partitions_with_deletes() {
        let small = |kind, day| file(kind, day, 10);
        // (live files, expected bin sizes sorted, expected skipped partitions)
        let cases: Vec<(&str, Vec<LiveFile>, Vec<usize>, usize)> = vec![
            (
                "no deletes: each day compacted",
                vec![
                    small('d', Some(1)),
                    small('d', Some(1)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                ],
                vec![2, 3],
                0,
            ),
            (
                "a position delete in day 1: day 1 skipped, day 2 compacted",
                vec![
                    small('d', Some(1)),
                    small('d', Some(1)),
                    small('p', Some(1)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                ],
                vec![2],
                1,
            ),
            (
                "an equality delete in day 2",
                vec![
                    small('d', Some(1)),
                    small('d', Some(1)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                    small('e', Some(2)),
                ],
                vec![2],
                1,
            ),
            (
                "deletes alone are never binned, even two small ones",
                vec![
                    small('p', Some(1)),
                    small('e', Some(1)),
                    small('d', Some(1)),
                ],
                vec![],
                0,
            ),
            (
                "an unpartitioned delete on a partitioned table skips every day",
                vec![
                    small('d', Some(1)),
                    small('d', Some(1)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                    small('e', None),
                ],
                vec![],
                2,
            ),
            (
                "unpartitioned table with a delete: skipped",
                vec![small('d', None), small('d', None), small('p', None)],
                vec![],
                1,
            ),
            (
                "a delete in a day with nothing to compact is not counted",
                vec![
                    small('d', Some(1)),
                    small('p', Some(1)),
                    small('d', Some(2)),
                    small('d', Some(2)),
                ],
                vec![2],
                0,
            ),
        ];
        for (name, live, want_bins, want_skipped) in cases {
            let (bins, skipped) = plan_bins(live, 1000);
            let mut sizes: Vec<usize> = bins.iter().map(Vec::len).collect();
            sizes.sort();
            assert_eq!((sizes, skipped), (want_bins, want_skipped), "{name}");
            assert!(
                bins.iter()
                    .flatten()
                    .all(|f| f.content_type() == DataContentType::Data),
                "{name}: a delete file was binned"
            );
        }
    }
}
