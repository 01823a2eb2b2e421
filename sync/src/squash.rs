//! The squashed projection (`spec/sync.md`, "Squashing"): every local append after the
//! cloud watermark goes to the cloud as one append per table (or a few, under a size cap),
//! and the small files of each partition are first combined into one file sorted by `ts`.
//!
//! ```text
//!   projections (oldest first)  ──batches()──►  Batch (from, to]: its local files
//!   Batch ──stage()──► combined files written into the local table's data/ folder,
//!                      then the journal metadata/sync/<run>.json (written last)
//!   journal ──► copies to the cloud (skip what is there) ──► one cloud append, from → to
//!           ──► journal and staged files removed
//! ```
//!
//! The journal makes a run resumable: a rerun whose cloud watermark is still the journal's
//! `from` projects exactly the journal's files (already uploaded ones are found by path and
//! size), so nothing is combined or sent twice; a journal the cloud has moved past is
//! removed. Staged files and journals are unreferenced objects of the local table: a local
//! vacuum may remove them after its grace period, and a rerun then stages again.

use std::collections::BTreeMap;

use iceberg::spec::{
    deserialize_data_file_from_json, serialize_data_file_to_json, DataContentType, Datum,
    StructType,
};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use floe_table_format::rewrite::read_combined;
use floe_table_format::{DataWriter, Error as TableError, Result as TableResult, Table};

use crate::project::Source;

/// Files at least this large are projected as they are (a local compaction already made
/// them); smaller ones are combined per partition.
pub(crate) const COMBINE_BELOW: u64 = 8 << 20;

/// At most this many input bytes are sorted together (decoded, a few times more): a
/// partition's run of overlapping small files beyond it is written in sorted chunks (each
/// chunk sorted, statistics exact). Small enough for a gateway's memory.
const SORT_BYTES: u64 = 4 << 20;

/// The column combined files are sorted by (as compaction does), when the table has it.
const SORT_COLUMN: &str = "ts";

/// The default cap on the local bytes one cloud commit carries (`--max-commit-bytes`).
pub const DEFAULT_COMMIT_BYTES: u64 = 1 << 30;

/// One local append (or catch-up) to project: its snapshot, sequence number and files.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    pub(crate) snapshot_id: i64,
    pub(crate) sequence_number: i64,
    pub(crate) files: Vec<Source>,
}

/// One cloud commit of a squashed sync: the local appends with sequence numbers in
/// `(from, to]`, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) first_snapshot_id: i64,
    pub(crate) last_snapshot_id: i64,
    pub(crate) snapshots: usize,
    pub(crate) files: Vec<Source>,
}

impl Batch {
    /// Bytes of its local files.
    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|s| s.file.file_size_in_bytes()).sum()
    }
}

/// Group `projections` (oldest first, after watermark `from`) into consecutive batches of
/// at most `cap` local bytes each; a projection larger than the cap is a batch alone.
pub(crate) fn batches(projections: Vec<Projection>, from: i64, cap: u64) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut at = from;
    for p in projections {
        let bytes: u64 = p.files.iter().map(|s| s.file.file_size_in_bytes()).sum();
        match out.last_mut() {
            Some(b) if b.bytes().saturating_add(bytes) <= cap => {
                b.to = p.sequence_number;
                b.last_snapshot_id = p.snapshot_id;
                b.snapshots += 1;
                b.files.extend(p.files);
            }
            _ => out.push(Batch {
                from: at,
                to: p.sequence_number,
                first_snapshot_id: p.snapshot_id,
                last_snapshot_id: p.snapshot_id,
                snapshots: 1,
                files: p.files,
            }),
        }
        at = p.sequence_number;
    }
    out
}

/// What staging a batch decided, before any byte is written: files kept as they are, and
/// groups of small files to combine (one per partition, in a stable order).
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) kept: Vec<Source>,
    pub(crate) groups: Vec<Vec<Source>>,
}

/// Which files of `files` are combined: data files under [`COMBINE_BELOW`] and every data
/// file of another partition spec than `default_spec` (rewritten into the current one);
/// grouped by spec and partition. Delete files, large files and the only small file of a
/// partition are kept as they are.
pub(crate) fn layout(files: &[Source], default_spec: i32) -> Layout {
    let mut groups: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    let mut kept = Vec::new();
    for s in files {
        let data = s.file.content_type() == DataContentType::Data;
        if data && (s.file.file_size_in_bytes() < COMBINE_BELOW || s.spec_id != default_spec) {
            let key = format!("{}:{:?}", s.spec_id, s.file.partition());
            groups.entry(key).or_default().push(s.clone());
        } else {
            kept.push(s.clone());
        }
    }
    // A partition with one file of the current spec already has one file: it is copied
    // as it is (streamed, never decoded), like a large file.
    let mut out = Layout {
        kept,
        groups: Vec::new(),
    };
    for group in groups.into_values() {
        match group.as_slice() {
            [one] if one.spec_id == default_spec => out.kept.push(one.clone()),
            _ => out.groups.push(group),
        }
    }
    out
}

/// The runs of `group` to sort together: files ordered by the lower bound of the sort
/// column, split where a file starts after every earlier file ended (so runs are disjoint
/// in time and written one after the other), and where a run would exceed
/// [`SORT_BYTES`]. Files without bounds form one run.
pub(crate) fn sort_runs(mut group: Vec<Source>, sort_field: Option<i32>) -> Vec<Vec<Source>> {
    let bound = |s: &Source, lower: bool| -> Option<Datum> {
        let id = sort_field?;
        let b = match lower {
            true => s.file.lower_bounds(),
            false => s.file.upper_bounds(),
        };
        b.get(&id).cloned()
    };
    if sort_field.is_none() || group.iter().any(|s| bound(s, true).is_none()) {
        return chunked(vec![group]);
    }
    group.sort_by(|a, b| {
        bound(a, true)
            .partial_cmp(&bound(b, true))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut runs: Vec<Vec<Source>> = Vec::new();
    let mut end: Option<Datum> = None;
    for s in group {
        let (lo, hi) = (bound(&s, true), bound(&s, false));
        match (runs.last_mut(), &end) {
            (Some(run), Some(e)) if lo.as_ref().is_some_and(|l| l <= e) => {
                run.push(s);
                if hi.as_ref().is_none_or(|h| h > e) {
                    end = hi;
                }
            }
            _ => {
                runs.push(vec![s]);
                end = hi;
            }
        }
    }
    chunked(runs)
}

/// `runs` with each split into pieces of at most [`SORT_BYTES`] input bytes.
fn chunked(runs: Vec<Vec<Source>>) -> Vec<Vec<Source>> {
    let mut out = Vec::new();
    for run in runs {
        let mut cur: Vec<Source> = Vec::new();
        let mut bytes = 0;
        for s in run {
            let n = s.file.file_size_in_bytes();
            if !cur.is_empty() && bytes + n > SORT_BYTES {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            bytes += n;
            cur.push(s);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

/// A staged batch, as its journal records it: the range it carries and the local files
/// the cloud append references (combined files, and files kept as they are).
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) run: String,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) first_snapshot_id: i64,
    pub(crate) last_snapshot_id: i64,
    pub(crate) snapshots: usize,
    /// Local files rewritten into the combined ones.
    pub(crate) combined_sources: usize,
    /// The files to upload and commit, each with its spec id.
    pub(crate) files: Vec<Source>,
    /// The staged (combined) files among them: removed locally once projected.
    pub(crate) staged: Vec<String>,
}

/// The journal's JSON form (`metadata/sync/<run>.json` of the local table).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Journal {
    format: u32,
    run: String,
    from: i64,
    to: i64,
    first_snapshot_id: i64,
    last_snapshot_id: i64,
    snapshots: usize,
    combined_sources: usize,
    files: Vec<JournalFile>,
    staged: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct JournalFile {
    spec_id: i32,
    data_file: serde_json::Value,
}

/// The folder of the local table holding journals.
fn journal_dir(local: &Table) -> String {
    format!("{}/metadata/sync", local.location().trim_end_matches('/'))
}

/// Where the upload of `target` (a cloud location) keeps its parts while in progress:
/// `metadata/sync/uploads/<32 hex digits of the SHA-256 of target>.json` of the local table.
pub(crate) fn upload_journal(local: &Table, target: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(target.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/uploads/{hex}.json", journal_dir(local))
}

fn journal_location(local: &Table, run: &str) -> String {
    format!("{}/{run}.json", journal_dir(local))
}

/// Combine the small files of `batch` and write its journal. Nothing is visible to anyone
/// until the cloud append; what a failed staging wrote is unreferenced.
pub(crate) async fn stage(local: &Table, batch: &Batch) -> TableResult<Staged> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let metadata = local.metadata();
    let Layout { kept, groups } = layout(&batch.files, metadata.default_partition_spec_id());
    let sort_field = metadata
        .current_schema()
        .field_by_name(SORT_COLUMN)
        .map(|f| f.id);
    let mut files = kept;
    let mut staged = Vec::new();
    let mut combined_sources = 0;
    for (g, group) in groups.into_iter().enumerate() {
        let mut writer = match DataWriter::with_file_prefix(local, format!("sync-{run}-g{g}")) {
            Ok(w) => w,
            // The local table's write settings are unusable (a hostile or mistaken
            // property): its files still sync, as they are, like a per-commit sync's.
            Err(e @ TableError::InvalidArgument { .. }) => {
                tracing::warn!(table = %local.name(), error = %e, "cannot combine files; projecting them as they are");
                files.extend(group);
                continue;
            }
            Err(e) => return Err(e),
        };
        combined_sources += group.len();
        let target = writer.arrow_schema().clone();
        let sort = sort_field.map(|_| SORT_COLUMN);
        for run_files in sort_runs(group, sort_field) {
            let paths: Vec<&str> = run_files.iter().map(|s| s.file.file_path()).collect();
            let rows = read_combined(local, &paths, &target, sort, "sync").await?;
            writer.write(rows).await?;
        }
        for f in writer.close().await? {
            staged.push(f.file_path().to_string());
            files.push(Source {
                spec_id: metadata.default_partition_spec_id(),
                file: f,
            });
        }
    }
    let out = Staged {
        run,
        from: batch.from,
        to: batch.to,
        first_snapshot_id: batch.first_snapshot_id,
        last_snapshot_id: batch.last_snapshot_id,
        snapshots: batch.snapshots,
        combined_sources,
        files,
        staged,
    };
    write_journal(local, &out).await?;
    Ok(out)
}

/// The partition tuple type of the local table's spec `spec_id` (the journal's data-file
/// JSON is read and written with it), or why there is none.
fn partition_type(local: &Table, spec_id: i32) -> std::result::Result<StructType, String> {
    let metadata = local.metadata();
    metadata
        .partition_spec_by_id(spec_id)
        .ok_or_else(|| format!("partition spec {spec_id} is missing"))?
        .partition_type(metadata.current_schema())
        .map_err(|e| e.to_string())
}

async fn write_journal(local: &Table, s: &Staged) -> TableResult<()> {
    let metadata = local.metadata();
    let mut files = Vec::with_capacity(s.files.len());
    for f in &s.files {
        let ptype =
            partition_type(local, f.spec_id).map_err(|reason| TableError::CorruptMetadata {
                location: local.metadata_location().to_string(),
                reason,
            })?;
        let json = serialize_data_file_to_json(f.file.clone(), &ptype, metadata.format_version())
            .map_err(|e| TableError::iceberg("journal a staged file", e))?;
        files.push(JournalFile {
            spec_id: f.spec_id,
            data_file: serde_json::from_str(&json).map_err(|e| TableError::Input {
                input: "sync journal".into(),
                reason: e.to_string(),
            })?,
        });
    }
    let journal = Journal {
        format: 1,
        run: s.run.clone(),
        from: s.from,
        to: s.to,
        first_snapshot_id: s.first_snapshot_id,
        last_snapshot_id: s.last_snapshot_id,
        snapshots: s.snapshots,
        combined_sources: s.combined_sources,
        files,
        staged: s.staged.clone(),
    };
    let body = serde_json::to_vec_pretty(&journal).expect("a journal serializes");
    let location = journal_location(local, &s.run);
    let wh = local.warehouse();
    wh.store()
        .put(&wh.object_path(&location)?, body.into())
        .await
        .map_err(|source| TableError::Write { location, source })?;
    Ok(())
}

/// The journals of the local table, read back. A journal that cannot be read or whose
/// staged files are gone or changed is removed (with what it staged) and not returned.
pub(crate) async fn journals(local: &Table) -> TableResult<Vec<Staged>> {
    let dir = journal_dir(local);
    let wh = local.warehouse();
    let mut out = Vec::new();
    for meta in wh.list_all(&dir).await? {
        let key = meta.location;
        // Journals of batches only, not the upload journals under uploads/.
        if !key.as_ref().ends_with(".json") || key.as_ref().contains("/sync/uploads/") {
            continue;
        }
        match read_journal(local, &key).await {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => {
                // Listed under the journal folder: the table's own object.
                tracing::warn!(journal = %key, error = %e, "an unreadable sync journal is discarded");
                if let Err(e) = wh.store().delete(&key).await {
                    tracing::warn!(journal = %key, error = %e, "could not remove a sync journal");
                }
            }
        }
    }
    Ok(out)
}

/// One journal, if all its files are still there with their recorded sizes.
async fn read_journal(
    local: &Table,
    key: &object_store::path::Path,
) -> TableResult<Option<Staged>> {
    let wh = local.warehouse();
    let location = &key.to_string();
    let body = match wh.store().get(key).await {
        Ok(got) => got.bytes().await.map_err(|source| TableError::Read {
            location: location.to_string(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(TableError::Read {
                location: location.to_string(),
                source,
            })
        }
    };
    let bad = |reason: String| TableError::CorruptMetadata {
        location: location.to_string(),
        reason,
    };
    let j: Journal = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    if j.format != 1 {
        return Err(bad(format!("journal format {}", j.format)));
    }
    let metadata = local.metadata();
    let mut files = Vec::with_capacity(j.files.len());
    for f in &j.files {
        let ptype = partition_type(local, f.spec_id).map_err(bad)?;
        let file = deserialize_data_file_from_json(
            &f.data_file.to_string(),
            f.spec_id,
            &ptype,
            metadata.current_schema(),
        )
        .map_err(|e| bad(e.to_string()))?;
        files.push(Source {
            spec_id: f.spec_id,
            file,
        });
    }
    // Every file must still be there, whole (a local vacuum may have taken staged files).
    for f in &files {
        match wh.store().head(&wh.object_path(f.file.file_path())?).await {
            Ok(m) if m.size == f.file.file_size_in_bytes() => {}
            _ => {
                return Err(bad(format!(
                    "{} is gone or changed since it was staged",
                    f.file.file_path()
                )))
            }
        }
    }
    Ok(Some(Staged {
        run: j.run,
        from: j.from,
        to: j.to,
        first_snapshot_id: j.first_snapshot_id,
        last_snapshot_id: j.last_snapshot_id,
        snapshots: j.snapshots,
        combined_sources: j.combined_sources,
        files,
        staged: j.staged,
    }))
}

/// Remove a staged batch: its staged files, then its journal. Best effort: what is left
/// is unreferenced and a local vacuum removes it.
pub(crate) async fn discard(local: &Table, s: &Staged) {
    // Only files this run staged (a journal is read from storage and could name others).
    let prefix = format!("sync-{}-", s.run);
    let mut all: Vec<String> = s
        .staged
        .iter()
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix)))
        .cloned()
        .collect();
    all.push(journal_location(local, &s.run));
    remove_quietly(local, &all).await;
}

async fn remove_quietly(local: &Table, locations: &[String]) {
    let wh = local.warehouse();
    for location in locations {
        // Only the local table's own objects: staged files under data/, journals under
        // metadata/sync/ (a hostile journal could name anything).
        let root = local.location().trim_end_matches('/');
        let own = location.starts_with(&format!("{root}/data/"))
            || location.starts_with(&format!("{}/", journal_dir(local)));
        if !own || location.contains("/../") {
            tracing::warn!(object = %location, "not removed: outside the table's data and journal folders");
            continue;
        }
        let Ok(path) = wh.object_path(location) else {
            continue;
        };
        match wh.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(object = %location, error = %e, "could not remove a staged sync object")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{DataFileBuilder, DataFileFormat, Literal, Struct};
    use std::collections::HashMap;

    fn file(day: i32, bytes: u64, lo: i64, hi: i64) -> Source {
        let file = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(format!("f-{day}-{lo}"))
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::from_iter([Some(Literal::int(day))]))
            .partition_spec_id(0)
            .record_count(1)
            .file_size_in_bytes(bytes)
            .lower_bounds(HashMap::from([(2, Datum::timestamptz_micros(lo))]))
            .upper_bounds(HashMap::from([(2, Datum::timestamptz_micros(hi))]))
            .build()
            .unwrap();
        Source { spec_id: 0, file }
    }

    fn projection(seq: i64, files: Vec<Source>) -> Projection {
        Projection {
            snapshot_id: seq * 10,
            sequence_number: seq,
            files,
        }
    }

    #[test]
    fn batches_are_consecutive_ranges_under_the_cap() {
        let ps: Vec<Projection> = (1..=5)
            .map(|k| projection(k + 2, vec![file(1, 10, k, k)]))
            .collect();
        let one = batches(ps.clone(), 2, 1 << 20);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].from, one[0].to, one[0].snapshots), (2, 7, 5));
        assert_eq!(
            (one[0].first_snapshot_id, one[0].last_snapshot_id),
            (30, 70)
        );
        let capped = batches(ps, 2, 25);
        let ranges: Vec<(i64, i64)> = capped.iter().map(|b| (b.from, b.to)).collect();
        assert_eq!(ranges, vec![(2, 4), (4, 6), (6, 7)]);
        assert!(batches(Vec::new(), 3, 10).is_empty());
    }

    #[test]
    fn small_files_group_by_partition_and_large_ones_stay() {
        let files = vec![
            file(1, 10, 1, 2),
            file(2, 10, 1, 2),
            file(1, 10, 3, 4),
            file(1, COMBINE_BELOW, 5, 6),
        ];
        let l = layout(&files, 0);
        // Day 1: two small files combined, the large one kept; day 2: its only file kept.
        assert_eq!(l.kept.len(), 2);
        let sizes: Vec<usize> = l.groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2]);
        // Another spec than the default: rewritten, however large.
        let l = layout(&files, 1);
        assert!(l.kept.is_empty());
        assert_eq!(l.groups.len(), 2);
    }

    #[test]
    fn sort_runs_split_where_time_ranges_do_not_overlap() {
        let runs = |g: Vec<Source>| -> Vec<Vec<String>> {
            sort_runs(g, Some(2))
                .into_iter()
                .map(|r| r.iter().map(|s| s.file.file_path().to_string()).collect())
                .collect()
        };
        // Disjoint, given out of order: one run each, in time order.
        assert_eq!(
            runs(vec![
                file(1, 1, 20, 29),
                file(1, 1, 0, 9),
                file(1, 1, 10, 19)
            ]),
            vec![vec!["f-1-0"], vec!["f-1-10"], vec!["f-1-20"]]
        );
        // Overlapping: sorted together; a file inside an earlier one's range joins it.
        assert_eq!(
            runs(vec![
                file(1, 1, 0, 50),
                file(1, 1, 10, 12),
                file(1, 1, 40, 60),
                file(1, 1, 61, 70)
            ]),
            vec![vec!["f-1-0", "f-1-10", "f-1-40"], vec!["f-1-61"]]
        );
        // No sort column: one run.
        assert_eq!(
            sort_runs(vec![file(1, 1, 0, 1), file(1, 1, 5, 6)], None).len(),
            1
        );
        // Too large to sort at once: chunks.
        let big = vec![file(1, SORT_BYTES, 0, 10), file(1, SORT_BYTES, 5, 15)];
        assert_eq!(sort_runs(big, Some(2)).len(), 2);
    }
}
