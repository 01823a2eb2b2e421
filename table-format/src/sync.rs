//! Projecting a local (gateway) table into a cloud warehouse: the engine of `floe sync`.
//!
//! A gateway commits to its own local warehouse with no network. When the link returns,
//! each local table is *projected* into the table of the same name in the cloud warehouse
//! (see `spec/sync.md` for the protocol):
//!
//! ```text
//!   local snapshots (oldest first, after the cloud watermark W)
//!     append S ──► copy S's added data files (skip if present, same size) ──► cloud append
//!                  commit id  sync-<local uuid>-<S>,  property floe.sync.<local uuid>.sequence-number = seq(S)
//!     replace / delete ──► skipped (local maintenance stays local)
//!   then the local table records W in floe.sync.projected-sequence-number
//! ```
//!
//! Invariants:
//! - **Copy before commit**: a cloud snapshot never references a file that is not there.
//! - **Oldest first**: the cloud holds a prefix of the local appends at every moment.
//! - **At most once**: the watermark moves in the same version as the append it covers, and
//!   the commit id settles a replay of an ambiguous commit; a rerun skips what is there.
//! - **Nothing unprojected is lost locally**: while a table carries the local watermark,
//!   expiry keeps every snapshot above it (see [`crate::maintenance::unprojected_floor`]).
//!
//! The planning step ([`plan_steps`]) is pure; the IO around it is thin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use iceberg::spec::{
    DataFile, DataFileBuilder, ManifestStatus, Operation, PrimitiveLiteral, Snapshot,
    TableMetadata, TableMetadataBuilder,
};
use object_store::{ObjectStoreExt, WriteMultipart};

use crate::append::CommitOptions;
use crate::commit::RetryPolicy;
use crate::driver::{Action, Applied};
use crate::error::{Error, Result};
use crate::table::{Table, TableDefinition};
use crate::warehouse::Warehouse;

/// Local table property: the sequence number of the newest local snapshot the cloud holds.
/// Its presence marks the table as synced; snapshots above it are never expired.
pub const LOCAL_WATERMARK: &str = "floe.sync.projected-sequence-number";

/// Cloud snapshot-summary key: the local snapshot a cloud append projects.
pub const SOURCE_SNAPSHOT_KEY: &str = "floe.sync.source-snapshot-id";

/// Cloud snapshot-summary key: the local table (uuid) a cloud append comes from.
pub const SOURCE_TABLE_KEY: &str = "floe.sync.source-table-uuid";

/// Objects up to this size are copied with one PUT; larger ones as a multipart upload.
const MULTIPART_THRESHOLD: u64 = 8 << 20;

/// Part size of multipart copies: the streamed-upload part size (S3's minimum). A copy
/// waits for each part before filling the next, so it holds about two parts (10 MiB).
const PART_SIZE: usize = crate::storage::UPLOAD_PART_SIZE;

/// The cloud table property holding the watermark of the local table `local_uuid`.
pub fn cloud_watermark_key(local_uuid: &uuid::Uuid) -> String {
    format!("floe.sync.{local_uuid}.sequence-number")
}

/// The commit id of the cloud append that projects local snapshot `snapshot_id`.
pub fn commit_id(local_uuid: &uuid::Uuid, snapshot_id: i64) -> String {
    format!("sync-{local_uuid}-{snapshot_id}")
}

fn parse_watermark(props: &HashMap<String, String>, key: &str) -> i64 {
    props
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .max(0)
}

/// What to do with one local snapshot, in the order of [`plan_steps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Project the files this append added as one cloud append.
    Append {
        /// The local snapshot.
        snapshot_id: i64,
        /// Its sequence number (the new watermark once committed).
        sequence_number: i64,
    },
    /// The local history before this snapshot was expired before any projection: project
    /// every file live in it as one cloud append (the table's state as of that snapshot).
    CatchUp {
        /// The oldest local snapshot still known.
        snapshot_id: i64,
        /// Its sequence number.
        sequence_number: i64,
    },
    /// Local maintenance (`replace`, `delete`): not projected.
    Skip {
        /// The local snapshot.
        snapshot_id: i64,
        /// Its operation.
        operation: String,
    },
}

/// The local snapshots after `watermark`, oldest first, as steps. Walks back from the
/// current snapshot along parent ids until a snapshot at or below the watermark, or the
/// first snapshot. If the walk hits an expired parent above the watermark, the history
/// has a gap: with watermark 0 (nothing projected yet) the oldest known snapshot becomes a
/// [`Step::CatchUp`]; otherwise it is [`Error::SyncGap`], since the cloud's share of the
/// missing snapshots cannot be told apart.
pub fn plan_steps(table: &str, metadata: &TableMetadata, watermark: i64) -> Result<Vec<Step>> {
    let mut chain: Vec<&Snapshot> = Vec::new();
    let mut gap = false;
    let mut cur = metadata.current_snapshot().map(|s| s.as_ref());
    while let Some(s) = cur {
        if s.sequence_number() <= watermark {
            break;
        }
        chain.push(s);
        cur = match s.parent_snapshot_id() {
            None => None,
            Some(p) => match metadata.snapshot_by_id(p) {
                Some(parent) => Some(parent.as_ref()),
                None => {
                    // The parent's sequence number is below this one's; if it cannot be
                    // above the watermark, nothing unprojected is missing.
                    gap = s.sequence_number() - 1 > watermark;
                    None
                }
            },
        };
    }
    chain.reverse();
    let mut steps = Vec::with_capacity(chain.len());
    for (i, s) in chain.iter().enumerate() {
        if i == 0 && gap {
            if watermark > 0 {
                return Err(Error::SyncGap {
                    table: table.to_string(),
                    watermark,
                    oldest: s.sequence_number(),
                });
            }
            steps.push(Step::CatchUp {
                snapshot_id: s.snapshot_id(),
                sequence_number: s.sequence_number(),
            });
            continue;
        }
        match s.summary().operation {
            Operation::Append => steps.push(Step::Append {
                snapshot_id: s.snapshot_id(),
                sequence_number: s.sequence_number(),
            }),
            Operation::Replace | Operation::Delete => steps.push(Step::Skip {
                snapshot_id: s.snapshot_id(),
                operation: s.summary().operation.as_str().to_string(),
            }),
            Operation::Overwrite => {
                return Err(Error::InvalidArgument {
                    argument: format!("snapshot {} of {table}", s.snapshot_id()),
                    reason: "an overwrite snapshot cannot be projected (Floe projects appends; rows an overwrite replaced would stay in the cloud)".into(),
                })
            }
        }
    }
    Ok(steps)
}

/// Reports progress of a sync (a progress bar in the CLI). All methods default to no-ops.
pub trait SyncProgress: Send + Sync {
    /// Files and bytes planned for copying (called once per table, before its copies).
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// Bytes copied.
    fn copied(&self, _bytes: u64) {}
    /// One file done (copied, or skipped because the cloud had it).
    fn file_done(&self, _skipped: bool, _bytes: u64) {}
}

/// No progress reporting.
#[derive(Debug, Default)]
pub struct NoProgress;
impl SyncProgress for NoProgress {}

/// A bandwidth cap shared by every copy of a run (`--max-bytes-per-sec`): a bucket of
/// virtual time; each chunk waits until the bytes before it have had their share of time,
/// so at most `rate` bytes per second go out on average.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec.max(1),
            next: Mutex::new(None),
        }
    }

    /// Wait until `n` more bytes may go out.
    pub async fn take(&self, n: u64) {
        let wait = {
            let mut next = self.next.lock().expect("rate limiter poisoned");
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let end = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *next = Some(end);
            end.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// How a sync runs.
#[derive(Clone)]
pub struct SyncOptions {
    /// Plan and report; write nothing anywhere.
    pub dry_run: bool,
    /// Retry limits of each cloud commit.
    pub policy: RetryPolicy,
    /// Attempts at first reaching the cloud table before reporting it unreachable.
    pub reach_attempts: u32,
    /// First backoff between those attempts (doubling).
    pub reach_backoff: Duration,
    /// Optional bandwidth cap on data copies.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Progress sink.
    pub progress: Arc<dyn SyncProgress>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("dry_run", &self.dry_run)
            .field("policy", &self.policy)
            .field("reach_attempts", &self.reach_attempts)
            .finish()
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            policy: RetryPolicy::default(),
            reach_attempts: 4,
            reach_backoff: Duration::from_millis(500),
            limiter: None,
            progress: Arc::new(NoProgress),
        }
    }
}

/// What a sync of one table did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableSyncReport {
    /// The table.
    pub table: String,
    /// Local snapshots projected as cloud appends (would be, in a dry run).
    pub snapshots_projected: usize,
    /// Local maintenance snapshots passed over.
    pub snapshots_skipped: usize,
    /// Projections the cloud already had (found by commit id).
    pub already_committed: usize,
    /// Data files copied (to copy, in a dry run).
    pub files_copied: u64,
    /// Data files the cloud already had with the same size.
    pub files_skipped: u64,
    /// Bytes copied (to copy, in a dry run).
    pub bytes_copied: u64,
    /// Nothing to project.
    pub already_in_sync: bool,
    /// Whether the first projection was a catch-up of expired local history.
    pub catch_up: bool,
    /// The cloud watermark after the run.
    pub watermark: i64,
}

/// Run `f` against the cloud, retrying transient failures `attempts` times with doubling
/// backoff; a cloud that never answers becomes [`Error::Unreachable`] naming `url`.
pub async fn reach<T, F, Fut>(url: &str, options: &SyncOptions, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let attempts = options.reach_attempts.max(1);
    let mut delay = options.reach_backoff;
    for attempt in 1..=attempts {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < attempts => {
                tracing::warn!(cloud = url, attempt, error = %e, "cloud not reachable; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) if e.is_retryable() => {
                return Err(Error::Unreachable {
                    url: url.to_string(),
                    attempts,
                    source: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Local snapshot `snapshot_id`, which the plan saw in the metadata.
fn snapshot_of(local: &Table, snapshot_id: i64) -> Result<iceberg::spec::SnapshotRef> {
    local
        .metadata()
        .snapshot_by_id(snapshot_id)
        .cloned()
        .ok_or_else(|| Error::CorruptMetadata {
            location: local.metadata_location().to_string(),
            reason: format!("snapshot {snapshot_id} vanished"),
        })
}

/// The data files local snapshot `snapshot_id` added (entries `ADDED` by it).
async fn added_files(local: &Table, snapshot_id: i64) -> Result<Vec<DataFile>> {
    let snapshot = snapshot_of(local, snapshot_id)?;
    let list = local
        .iceberg()?
        .manifest_list_reader(&snapshot)
        .load()
        .await
        .map_err(|e| {
            Error::iceberg(
                format!("read manifest list {}", snapshot.manifest_list()),
                e,
            )
        })?;
    let own: Vec<_> = list
        .entries()
        .iter()
        .filter(|m| m.added_snapshot_id == snapshot_id)
        .cloned()
        .collect();
    let loaded = crate::maintenance::load_manifests(local.file_io(), own).await?;
    Ok(loaded
        .into_iter()
        .flat_map(|(_, manifest)| {
            manifest
                .entries()
                .iter()
                .filter(|e| {
                    e.status() == ManifestStatus::Added && e.snapshot_id() == Some(snapshot_id)
                })
                .map(|e| e.data_file().clone())
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Every data file live in local snapshot `snapshot_id`.
async fn live_files_of(local: &Table, snapshot_id: i64) -> Result<Vec<DataFile>> {
    let snapshot = snapshot_of(local, snapshot_id)?;
    Ok(crate::rewrite::live_files_at(local, &snapshot)
        .await?
        .into_iter()
        .map(|f| f.data_file)
        .collect())
}

/// Where a local data file goes in the cloud table: the same path relative to the table
/// location (files outside it, from a registered table, go to `data/external/<name>`).
pub fn cloud_path(local_location: &str, cloud_location: &str, file_path: &str) -> String {
    let relative = match file_path.strip_prefix(&format!("{local_location}/")) {
        Some(r) => r.to_string(),
        None => format!(
            "data/external/{}",
            file_path.rsplit('/').next().unwrap_or(file_path)
        ),
    };
    format!("{cloud_location}/{relative}")
}

/// The same file at `path`: identical counts, size, partition and column statistics.
fn relocate(file: &DataFile, path: String, spec_id: i32) -> Result<DataFile> {
    let mut b = DataFileBuilder::default();
    b.content(file.content_type())
        .file_path(path.clone())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(|k| k.to_vec()))
        .split_offsets(file.split_offsets().map(|s| s.to_vec()))
        .equality_ids(file.equality_ids())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(order) = file.sort_order_id() {
        b.sort_order_id(order);
    }
    b.build().map_err(|e| Error::InvalidArgument {
        argument: format!("data file {path}"),
        reason: e.to_string(),
    })
}

/// Copy one object from `src` to `dst` unless `dst` already holds `size` bytes there.
/// Streams: one PUT for small objects, a multipart upload for large ones. Returns whether
/// bytes were copied.
async fn copy_object(
    src: &Warehouse,
    src_location: &str,
    dst: &Warehouse,
    dst_location: &str,
    size: u64,
    options: &SyncOptions,
) -> Result<bool> {
    let dst_path = dst.object_path(dst_location)?;
    match dst.store().head(&dst_path).await {
        Ok(meta) if meta.size == size => return Ok(false),
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => {
            return Err(Error::Read {
                location: dst_location.to_string(),
                source,
            })
        }
    }
    let read_err = |source| Error::Read {
        location: src_location.to_string(),
        source,
    };
    let write_err = |source| Error::Write {
        location: dst_location.to_string(),
        source,
    };
    let got = src
        .store()
        .get(&src.object_path(src_location)?)
        .await
        .map_err(read_err)?;
    if got.meta.size != size {
        return Err(Error::CorruptMetadata {
            location: src_location.to_string(),
            reason: format!(
                "the file holds {} bytes but its manifest records {size}",
                got.meta.size
            ),
        });
    }
    let mut stream = got.into_stream();
    if size <= MULTIPART_THRESHOLD {
        let mut buf = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(read_err)?;
            if let Some(l) = &options.limiter {
                l.take(chunk.len() as u64).await;
            }
            buf.extend_from_slice(&chunk);
        }
        dst.store()
            .put(&dst_path, buf.into())
            .await
            .map_err(write_err)?;
        options.progress.copied(size);
        return Ok(true);
    }
    let upload = dst
        .store()
        .put_multipart(&dst_path)
        .await
        .map_err(write_err)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let result: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(read_err)?;
            if let Some(l) = &options.limiter {
                l.take(chunk.len() as u64).await;
            }
            writer.wait_for_capacity(1).await.map_err(write_err)?;
            options.progress.copied(chunk.len() as u64);
            writer.put(chunk);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            writer.finish().await.map_err(write_err)?;
            Ok(true)
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(object = dst_location, error = %abort, "could not abort a multipart upload");
            }
            Err(e)
        }
    }
}

/// The local table as a definition for its cloud twin: schema, partition spec and
/// properties (without the local sync bookkeeping).
fn definition_of(local: &TableMetadata) -> TableDefinition {
    TableDefinition {
        schema: local.current_schema().as_ref().clone(),
        partition: local
            .default_partition_spec()
            .as_ref()
            .clone()
            .into_unbound(),
        properties: local
            .properties()
            .iter()
            .filter(|(k, _)| !k.starts_with("floe.sync."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Refuse a cloud table whose columns or partitioning differ from the local table's:
/// column statistics and partition tuples are keyed by field id and must mean the same.
fn check_compatible(local: &Table, cloud: &Table) -> Result<()> {
    let (l, c) = (local.metadata(), cloud.metadata());
    let same_schema = l.current_schema().as_struct() == c.current_schema().as_struct();
    let same_spec = l.default_partition_spec().fields() == c.default_partition_spec().fields();
    if same_schema && same_spec {
        return Ok(());
    }
    Err(Error::SyncMismatch {
        table: local.name().to_string(),
        cloud: cloud.location().to_string(),
        reason: if same_schema {
            "the partition specs differ".into()
        } else {
            "the schemas differ (field ids, names or types)".into()
        },
    })
}

/// Record `watermark` in the local table's [`LOCAL_WATERMARK`] (never lowering it), as a
/// metadata-only commit that rebases over concurrent local appends.
pub async fn set_local_watermark(local: &mut Table, watermark: i64) -> Result<()> {
    let commit_id = uuid::Uuid::new_v4().to_string();
    local
        .commit(
            &commit_id,
            &RetryPolicy::default(),
            &mut RaiseWatermark { watermark },
        )
        .await?;
    Ok(())
}

/// The property-update action behind the local watermark: idempotent by state (a head whose
/// watermark is already at or above the value is no commit), so it never lowers it.
struct RaiseWatermark {
    watermark: i64,
}

#[async_trait::async_trait]
impl Action for RaiseWatermark {
    fn kind(&self) -> &'static str {
        "set-properties"
    }

    async fn apply(&mut self, local: &Table, _attempt: u32) -> Result<Option<Applied>> {
        let current = local
            .metadata()
            .properties()
            .get(LOCAL_WATERMARK)
            .map(|v| v.trim().parse::<i64>().unwrap_or(0));
        if current.is_some_and(|c| c >= self.watermark) {
            return Ok(None);
        }
        let next = TableMetadataBuilder::new_from_metadata(
            local.metadata().as_ref().clone(),
            Some(local.metadata_location().to_string()),
        )
        .set_properties(HashMap::from([(
            LOCAL_WATERMARK.to_string(),
            self.watermark.to_string(),
        )]))
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(format!("set the sync watermark of {}", local.name()), e))?
        .metadata;
        Ok(Some(Applied::new(next)))
    }
}

/// Project `local` into the table of the same name in `cloud` (created like the local one
/// if absent): every local append after the cloud's watermark for this local table, oldest
/// first, each as one cloud append after its files are copied. See the module docs.
pub async fn sync_table(
    local: &mut Table,
    cloud: &Warehouse,
    options: &SyncOptions,
) -> Result<TableSyncReport> {
    let ident = local
        .ident()
        .cloned()
        .ok_or_else(|| Error::InvalidArgument {
            argument: "sync source".into(),
            reason: format!("{} was opened from a metadata file", local.name()),
        })?;
    let mut report = TableSyncReport {
        table: ident.to_string(),
        ..TableSyncReport::default()
    };
    let local_uuid = local.metadata().uuid();
    let key = cloud_watermark_key(&local_uuid);
    let mut cloud_table = reach(cloud.url(), options, || async {
        match Table::load(cloud, &ident).await {
            Ok(t) => Ok(Some(t)),
            Err(Error::TableNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?;
    let watermark = cloud_table
        .as_ref()
        .map_or(0, |t| parse_watermark(t.metadata().properties(), &key));
    report.watermark = watermark;
    let steps = plan_steps(local.name(), local.metadata(), watermark)?;
    let mut projections = Vec::new();
    for step in &steps {
        match step {
            Step::Append {
                snapshot_id,
                sequence_number,
            } => projections.push((
                *snapshot_id,
                *sequence_number,
                added_files(local, *snapshot_id).await?,
            )),
            Step::CatchUp {
                snapshot_id,
                sequence_number,
            } => {
                report.catch_up = true;
                projections.push((
                    *snapshot_id,
                    *sequence_number,
                    live_files_of(local, *snapshot_id).await?,
                ))
            }
            Step::Skip { .. } => report.snapshots_skipped += 1,
        }
    }
    // An append of no files (not made by Floe) moves nothing; it is passed over.
    projections.retain(|(_, _, files)| !files.is_empty());
    if projections.is_empty() {
        report.already_in_sync = true;
        if !options.dry_run && cloud_table.is_some() {
            set_local_watermark(local, watermark).await?;
        }
        return Ok(report);
    }
    if options.dry_run {
        report.snapshots_projected = projections.len();
        for (_, _, files) in &projections {
            report.files_copied += files.len() as u64;
            report.bytes_copied += files.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
        }
        return Ok(report);
    }
    let mut cloud_table = match cloud_table.take() {
        Some(t) => t,
        None => {
            let definition = definition_of(local.metadata());
            reach(cloud.url(), options, || {
                Table::create_or_load(cloud, &ident, definition.clone())
            })
            .await?
        }
    };
    check_compatible(local, &cloud_table)?;
    let spec_id = cloud_table.metadata().default_partition_spec_id();
    options.progress.planned(
        projections.iter().map(|p| p.2.len() as u64).sum(),
        projections
            .iter()
            .flat_map(|p| p.2.iter().map(|f| f.file_size_in_bytes()))
            .sum(),
    );
    for (snapshot_id, sequence_number, files) in projections {
        let mut cloud_files = Vec::with_capacity(files.len());
        for f in &files {
            let target = cloud_path(local.location(), cloud_table.location(), f.file_path());
            let size = f.file_size_in_bytes();
            let copied = copy_object(
                local.warehouse(),
                f.file_path(),
                cloud,
                &target,
                size,
                options,
            )
            .await?;
            if copied {
                report.files_copied += 1;
                report.bytes_copied += size;
            } else {
                report.files_skipped += 1;
            }
            options.progress.file_done(!copied, size);
            cloud_files.push(relocate(f, target, spec_id)?);
        }
        let commit = CommitOptions {
            commit_id: commit_id(&local_uuid, snapshot_id),
            policy: options.policy.clone(),
            properties: HashMap::from([
                (SOURCE_TABLE_KEY.to_string(), local_uuid.to_string()),
                (SOURCE_SNAPSHOT_KEY.to_string(), snapshot_id.to_string()),
            ]),
            table_properties: HashMap::from([(key.clone(), sequence_number.to_string())]),
        };
        let committed = cloud_table.append(cloud_files, commit).await?;
        if committed.already_committed {
            report.already_committed += 1;
        } else {
            report.snapshots_projected += 1;
        }
        report.watermark = sequence_number;
    }
    set_local_watermark(local, report.watermark).await?;
    Ok(report)
}

/// What [`prune_local`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Data files dropped from the local table (all projected, all older than the cutoff).
    pub files_dropped: usize,
    /// Local snapshots expired.
    pub snapshots_expired: usize,
    /// Unreferenced objects deleted.
    pub objects_deleted: usize,
}

/// After a successful sync, keep a gateway's disk bounded: drop local data files whose rows
/// are all older than `older_than` (by `column`) **and** which the cloud already holds
/// (data sequence number at or below the local watermark), expire snapshots older than
/// `older_than` (never one above the watermark), and vacuum what became unreferenced
/// (older than `grace`). A table never synced is left alone.
pub async fn prune_local(
    local: &mut Table,
    older_than: Duration,
    column: &str,
    grace: Duration,
) -> Result<PruneReport> {
    local.refresh().await?;
    let Some(watermark) = crate::maintenance::unprojected_floor(local.metadata()) else {
        return Ok(PruneReport::default());
    };
    let mut report = PruneReport::default();
    let field = local
        .metadata()
        .current_schema()
        .field_by_name(column)
        .ok_or_else(|| Error::InvalidArgument {
            argument: format!("column {column}"),
            reason: format!("{} has no column '{column}'", local.name()),
        })?
        .id;
    let cutoff_us = crate::metadata::now_ms() * 1000 - older_than.as_micros() as i64;
    let old: Vec<String> = crate::rewrite::live_files(local)
        .await?
        .into_iter()
        .filter(|f| f.sequence_number.is_some_and(|s| s <= watermark))
        .filter(
            |f| match f.data_file.upper_bounds().get(&field).map(|d| d.literal()) {
                Some(PrimitiveLiteral::Long(v)) => *v < cutoff_us,
                _ => false,
            },
        )
        .map(|f| f.data_file.file_path().to_string())
        .collect();
    if !old.is_empty() {
        local
            .rewrite_files(&old, Vec::new(), Operation::Delete)
            .await?;
        report.files_dropped = old.len();
    }
    report.snapshots_expired = crate::vacuum::expire(local, older_than, 1)
        .await?
        .expired
        .len();
    report.objects_deleted = crate::vacuum::vacuum(local, grace, false)
        .await?
        .orphans
        .len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_paths_keep_the_relative_path() {
        assert_eq!(
            cloud_path(
                "file:///var/lib/floe/fleet/d1",
                "s3://b/fleet/d1",
                "file:///var/lib/floe/fleet/d1/data/ts_day=2026-01-01/x-00000.parquet"
            ),
            "s3://b/fleet/d1/data/ts_day=2026-01-01/x-00000.parquet"
        );
        assert_eq!(
            cloud_path("file:///a/t", "s3://b/t", "s3://elsewhere/p/y.parquet"),
            "s3://b/t/data/external/y.parquet"
        );
    }

    use iceberg::spec::{Summary, MAIN_BRANCH};

    /// Metadata with snapshots 1..=ops.len() (id = sequence number = k, each the parent of
    /// the next), then the snapshots in `expired` removed.
    fn history(ops: &[Operation], expired: &[i64]) -> TableMetadata {
        let schema = crate::schema::default_iot_schema();
        let partition = crate::schema::parse_partition_spec("day(ts)", &schema).unwrap();
        let mut m = Table::first_metadata(
            "memory://t/ns/t",
            TableDefinition {
                schema,
                partition,
                properties: HashMap::new(),
            },
        )
        .unwrap();
        for (i, op) in ops.iter().enumerate() {
            let k = i as i64 + 1;
            let snapshot = Snapshot::builder()
                .with_snapshot_id(k)
                .with_parent_snapshot_id((k > 1).then_some(k - 1))
                .with_sequence_number(k)
                .with_timestamp_ms(crate::metadata::now_ms() + 1_000 + k)
                .with_manifest_list(format!("memory://t/ns/t/metadata/snap-{k}.avro"))
                .with_summary(Summary {
                    operation: op.clone(),
                    additional_properties: HashMap::new(),
                })
                .with_schema_id(0)
                .build();
            m = TableMetadataBuilder::new_from_metadata(m, None)
                .set_branch_snapshot(snapshot, MAIN_BRANCH)
                .unwrap()
                .build()
                .unwrap()
                .metadata;
        }
        if !expired.is_empty() {
            m = TableMetadataBuilder::new_from_metadata(m, None)
                .remove_snapshots(expired)
                .build()
                .unwrap()
                .metadata;
        }
        m
    }

    fn append(k: i64) -> Step {
        Step::Append {
            snapshot_id: k,
            sequence_number: k,
        }
    }

    fn skip(k: i64, op: &str) -> Step {
        Step::Skip {
            snapshot_id: k,
            operation: op.into(),
        }
    }

    #[test]
    fn plans_the_local_history_after_the_watermark_oldest_first() {
        use Operation::{Append as A, Delete as D, Overwrite as O, Replace as R};
        let catch_up = |k: i64| Step::CatchUp {
            snapshot_id: k,
            sequence_number: k,
        };
        // (history, expired snapshots, watermark, expected steps; None = an error)
        type Case = (Vec<Operation>, Vec<i64>, i64, Option<Vec<Step>>);
        let cases: Vec<Case> = vec![
            (vec![], vec![], 0, Some(vec![])),
            (
                vec![A, A, A],
                vec![],
                0,
                Some(vec![append(1), append(2), append(3)]),
            ),
            (vec![A, A, A], vec![], 2, Some(vec![append(3)])),
            (vec![A, A, A], vec![], 3, Some(vec![])),
            (
                vec![A, A, R, A, D],
                vec![],
                1,
                Some(vec![
                    append(2),
                    skip(3, "replace"),
                    append(4),
                    skip(5, "delete"),
                ]),
            ),
            // Expired at or below the watermark: no gap.
            (
                vec![A, A, A, A],
                vec![1, 2],
                2,
                Some(vec![append(3), append(4)]),
            ),
            // Expired above the watermark before anything was projected: catch up.
            (
                vec![A, A, A, A],
                vec![1, 2],
                0,
                Some(vec![catch_up(3), append(4)]),
            ),
            (
                vec![A, R, A],
                vec![1],
                0,
                Some(vec![catch_up(2), append(3)]),
            ),
            // Expired above a watermark: refuse.
            (vec![A, A, A, A], vec![2], 1, None),
            // Overwrites are not projectable.
            (vec![A, O], vec![], 0, None),
            (vec![A, O, A], vec![], 2, Some(vec![append(3)])),
        ];
        for (ops, expired, w, want) in cases {
            let m = history(&ops, &expired);
            let got = plan_steps("t", &m, w);
            match want {
                Some(steps) => assert_eq!(got.unwrap(), steps, "{ops:?} −{expired:?} w={w}"),
                None => assert!(got.is_err(), "{ops:?} −{expired:?} w={w}: {got:?}"),
            }
        }
        let gap = plan_steps("t", &history(&[A, A, A, A], &[2]), 1).unwrap_err();
        assert!(
            matches!(
                gap,
                Error::SyncGap {
                    watermark: 1,
                    oldest: 3,
                    ..
                }
            ),
            "{gap}"
        );
    }

    #[tokio::test]
    async fn the_rate_limiter_holds_the_average_rate() {
        let limiter = RateLimiter::new(100_000);
        let started = Instant::now();
        for _ in 0..4 {
            limiter.take(25_000).await;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(950), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn copies_stream_small_and_multipart_objects_and_skip_what_is_there() {
        let src = Warehouse::open(&format!("memory://copy-src-{}", uuid::Uuid::new_v4())).unwrap();
        let dst = Warehouse::open(&format!("memory://copy-dst-{}", uuid::Uuid::new_v4())).unwrap();
        let options = SyncOptions::default();
        for size in [
            1_000usize,
            (MULTIPART_THRESHOLD as usize) + 3 * PART_SIZE / 2,
        ] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let from = src.location(&format!("t/data/f{size}.parquet"));
            let to = dst.location(&format!("t/data/f{size}.parquet"));
            src.store()
                .put(&src.object_path(&from).unwrap(), body.clone().into())
                .await
                .unwrap();
            let n = size as u64;
            assert!(copy_object(&src, &from, &dst, &to, n, &options)
                .await
                .unwrap());
            let got = dst
                .store()
                .get(&dst.object_path(&to).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(got.as_ref(), body.as_slice(), "{size}");
            // Present with the same size: skipped.
            assert!(!copy_object(&src, &from, &dst, &to, n, &options)
                .await
                .unwrap());
            // A size the manifest does not record: refused, nothing written.
            let other = dst.location("t/data/other.parquet");
            assert!(copy_object(&src, &from, &dst, &other, n + 1, &options)
                .await
                .is_err());
        }
        // A leftover of another size is replaced.
        let from = src.location("t/data/f1000.parquet");
        let to = dst.location("t/data/f1000.parquet");
        dst.store()
            .put(&dst.object_path(&to).unwrap(), vec![0u8; 10].into())
            .await
            .unwrap();
        assert!(copy_object(&src, &from, &dst, &to, 1_000, &options)
            .await
            .unwrap());
    }

    #[test]
    fn ids_and_keys() {
        let u = uuid::Uuid::nil();
        assert_eq!(
            commit_id(&u, 42),
            "sync-00000000-0000-0000-0000-000000000000-42"
        );
        assert_eq!(
            cloud_watermark_key(&u),
            "floe.sync.00000000-0000-0000-0000-000000000000.sequence-number"
        );
        let props = HashMap::from([("k".to_string(), "7".to_string())]);
        assert_eq!(parse_watermark(&props, "k"), 7);
        assert_eq!(parse_watermark(&props, "other"), 0);
    }
}
