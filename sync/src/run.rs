//! A sync run: its options, reaching the cloud with a bounded retry, the projection of
//! one table ([`sync_table`]: plan, copy, append, watermark), and the run over a local
//! catalog's tables, a few at a time ([`sync`]).
//!
//! A cloud that cannot be reached stops the whole run at once (every table would fail the
//! same way, each after its own retries); any other failure of one table is reported and
//! the other tables still sync.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use floe_catalog::Catalog;
use floe_table_format::{Error as TableError, Namespace, RetryPolicy, Table, TableIdent};

use crate::copy::{Copier, NoProgress, RateLimiter, SyncProgress};
use crate::error::{Error, Result};
use crate::plan::{plan_steps, Step};
use crate::project::{
    check_compatible, cloud_path, cloud_watermark_key, commit_id, definition_of, evolve_cloud,
    files_of, parse_watermark, projection_commit, range_commit_id, relocate, same_partitioning,
    set_local_watermark, Source,
};
use crate::prune::{prune_local, PruneOptions, PruneReport};
use crate::squash::{self, Projection};

/// Tables synced at once.
const TABLE_CONCURRENCY: usize = 4;

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
    /// One cloud append per local append, files copied as they are (the projection before
    /// squashing; more requests and small files in the cloud).
    pub per_commit: bool,
    /// A squashed sync makes another cloud append when one would carry more local bytes
    /// than this.
    pub max_commit_bytes: u64,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("dry_run", &self.dry_run)
            .field("policy", &self.policy)
            .field("reach_attempts", &self.reach_attempts)
            .field("per_commit", &self.per_commit)
            .field("max_commit_bytes", &self.max_commit_bytes)
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
            per_commit: false,
            max_commit_bytes: squash::DEFAULT_COMMIT_BYTES,
        }
    }
}

/// What a sync of one table did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableSyncReport {
    /// The table.
    pub table: String,
    /// Local snapshots projected (would be, in a dry run).
    pub snapshots_projected: usize,
    /// Cloud appends made (would be, in a dry run).
    pub cloud_commits: usize,
    /// Small local files combined into fewer, larger ones (squashed sync).
    pub files_combined: u64,
    /// In a dry run: the cloud requests the sync would make (see [`planned_requests`]).
    pub requests_planned: u64,
    /// Local maintenance snapshots passed over.
    pub snapshots_skipped: usize,
    /// Cloud appends the cloud already had (found by commit id or watermark).
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

/// Project `local` into the table of the same name in the `cloud` catalog (created like
/// the local one if absent): every local append after the cloud's watermark for this local
/// table, oldest first; squashed into one cloud append (or a few, under
/// [`SyncOptions::max_commit_bytes`]) whose small files are combined per partition, or
/// with [`SyncOptions::per_commit`] one cloud append per local append. See the crate docs.
pub async fn sync_table(
    local: &mut Table,
    cloud: &Catalog,
    options: &SyncOptions,
) -> Result<TableSyncReport> {
    let cloud_url = cloud.warehouse().url();
    let ident = local
        .ident()
        .cloned()
        .ok_or_else(|| TableError::InvalidArgument {
            argument: "sync source".into(),
            reason: format!("{} was opened from a metadata file", local.name()),
        })?;
    let mut report = TableSyncReport {
        table: ident.to_string(),
        ..TableSyncReport::default()
    };
    let local_uuid = local.metadata().uuid();
    let key = cloud_watermark_key(&local_uuid);
    let mut cloud_table = reach(cloud_url, options, || async {
        match cloud.load_table(&ident).await {
            Ok(t) => Ok(Some(t)),
            Err(floe_catalog::Error::Table(TableError::TableNotFound { .. })) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let mut watermark = cloud_table
        .as_ref()
        .map_or(0, |t| parse_watermark(t.metadata().properties(), &key));
    // Staged batches of an interrupted run (squashed sync only).
    let mut journals = match options.per_commit || options.dry_run {
        true => Vec::new(),
        false => squash::journals(local).await?,
    };
    let mut projections = plan_projections(local, watermark, &mut report).await?;
    let resumable = |journals: &[squash::Staged], w: i64| journals.iter().any(|j| j.from == w);
    if projections.is_empty() && !resumable(&journals, watermark) {
        report.already_in_sync = true;
        report.watermark = watermark;
        if !options.dry_run && cloud_table.is_some() {
            for j in &journals {
                squash::discard(local, j).await;
            }
            set_local_watermark(local, watermark).await?;
        }
        return Ok(report);
    }
    if options.dry_run {
        dry_run(local, projections, watermark, options, &mut report);
        return Ok(report);
    }
    let mut cloud_table = match cloud_table.take() {
        Some(t) => t,
        None => {
            // Another run may have created the table (and projected) since the load above:
            // the watermark is read from the table as created or loaded, and the plan redone.
            let definition = definition_of(local.metadata());
            let t = reach(cloud_url, options, || async {
                Ok(cloud
                    .create_or_load_table(&ident, definition.clone())
                    .await?)
            })
            .await?;
            watermark = parse_watermark(t.metadata().properties(), &key);
            projections = plan_projections(local, watermark, &mut report).await?;
            report.already_in_sync = projections.is_empty() && !resumable(&journals, watermark);
            t
        }
    };
    report.watermark = watermark;
    evolve_cloud(local, &mut cloud_table).await?;
    check_compatible(local, &cloud_table)?;
    let copier = Copier {
        limiter: options.limiter.as_deref(),
        progress: options.progress.as_ref(),
    };
    if options.per_commit {
        for p in projections {
            let upload = Upload {
                from: report.watermark,
                to: p.sequence_number,
                commit_id: commit_id(&local_uuid, p.snapshot_id),
                first_snapshot_id: p.snapshot_id,
                last_snapshot_id: p.snapshot_id,
                snapshots: 1,
                files: p.files,
            };
            project(
                local,
                cloud,
                &mut cloud_table,
                (&copier, &options.policy),
                upload,
                &mut report,
            )
            .await?;
        }
    } else {
        // First a batch an interrupted run staged from this very watermark (the newest),
        // then what is left, planned from the watermark it reached.
        journals.sort_by_key(|j| std::cmp::Reverse(j.to));
        if let Some(i) = journals.iter().position(|j| j.from == report.watermark) {
            let staged = journals.remove(i);
            project_staged(
                local,
                cloud,
                &mut cloud_table,
                (&copier, options),
                staged,
                &mut report,
            )
            .await?;
            projections = plan_projections(local, report.watermark, &mut report).await?;
        }
        // Any other journal was planned from a watermark the cloud has left.
        for j in &journals {
            squash::discard(local, j).await;
        }
        let cap = options.max_commit_bytes;
        for batch in squash::batches(projections, report.watermark, cap) {
            let staged = squash::stage(local, &batch).await?;
            project_staged(
                local,
                cloud,
                &mut cloud_table,
                (&copier, options),
                staged,
                &mut report,
            )
            .await?;
        }
    }
    set_local_watermark(local, report.watermark).await?;
    Ok(report)
}

/// Project a staged batch, then delete its staging: after the commit (or after finding
/// it committed), or when the watermark moved under it, since it can then never apply.
async fn project_staged(
    local: &Table,
    cloud: &Catalog,
    cloud_table: &mut Table,
    (copier, options): (&Copier<'_>, &SyncOptions),
    staged: squash::Staged,
    report: &mut TableSyncReport,
) -> Result<()> {
    report.files_combined += staged.combined_sources as u64;
    let upload = Upload::of_staged(&local.metadata().uuid(), &staged);
    let policy = &options.policy;
    match project(local, cloud, cloud_table, (copier, policy), upload, report).await {
        Err(e @ Error::Table(TableError::RequirementFailed { .. })) => {
            squash::discard(local, &staged).await;
            Err(e)
        }
        Err(e) => Err(e),
        Ok(()) => {
            squash::discard(local, &staged).await;
            Ok(())
        }
    }
}

/// Fill `report` with what a sync would do: snapshots, the files and bytes it would send
/// (combined files estimated by size) and the cloud requests it would make.
fn dry_run(
    local: &Table,
    projections: Vec<Projection>,
    watermark: i64,
    options: &SyncOptions,
    report: &mut TableSyncReport,
) {
    report.watermark = watermark;
    report.snapshots_projected = projections.len();
    let spec = local.metadata().default_partition_spec_id();
    let target = floe_table_format::writer::target_file_size(local);
    let mut sizes: Vec<u64> = Vec::new();
    let commits = if options.per_commit {
        for p in &projections {
            sizes.extend(p.files.iter().map(|s| s.file.file_size_in_bytes()));
        }
        projections.len() as u64
    } else {
        let batches = squash::batches(projections, watermark, options.max_commit_bytes);
        for b in &batches {
            let l = squash::layout(&b.files, spec);
            report.files_combined += l.groups.iter().map(|g| g.len() as u64).sum::<u64>();
            sizes.extend(l.kept.iter().map(|s| s.file.file_size_in_bytes()));
            for g in &l.groups {
                let bytes: u64 = g.iter().map(|s| s.file.file_size_in_bytes()).sum();
                let n = bytes.div_ceil(target.max(1)).max(1);
                sizes.extend((0..n).map(|_| bytes / n));
            }
        }
        batches.len() as u64
    };
    report.cloud_commits = commits as usize;
    report.files_copied = sizes.len() as u64;
    report.bytes_copied = sizes.iter().sum();
    report.requests_planned = planned_requests(&sizes, commits);
}

/// Cloud requests of a sync sending files of `sizes` in `commits` appends, as
/// `spec/sync.md` counts them: the head search (1 GET, 2 HEAD); per file a HEAD and a PUT
/// (a multipart upload: create, one PUT per part, complete); per append its manifest,
/// manifest list, version and hint (4 PUT) and the base manifest list (1 GET).
pub fn planned_requests(sizes: &[u64], commits: u64) -> u64 {
    let files: u64 = sizes
        .iter()
        .map(|&n| match n <= crate::copy::MULTIPART_THRESHOLD {
            true => 2,
            false => 3 + n.div_ceil(crate::copy::PART_SIZE as u64),
        })
        .sum();
    3 + files + 5 * commits
}

/// One cloud append of a sync: the local range `(from, to]` it carries and its files.
struct Upload {
    from: i64,
    to: i64,
    commit_id: String,
    first_snapshot_id: i64,
    last_snapshot_id: i64,
    snapshots: usize,
    files: Vec<Source>,
}

impl Upload {
    fn of_staged(local_uuid: &uuid::Uuid, s: &squash::Staged) -> Self {
        Self {
            from: s.from,
            to: s.to,
            commit_id: range_commit_id(local_uuid, s.from, s.to),
            first_snapshot_id: s.first_snapshot_id,
            last_snapshot_id: s.last_snapshot_id,
            snapshots: s.snapshots,
            files: s.files.clone(),
        }
    }
}

/// Copy an upload's files to the cloud (skipping what is there), then commit them as one
/// append advancing the watermark `from` → `to`.
async fn project(
    local: &Table,
    cloud: &Catalog,
    cloud_table: &mut Table,
    (copier, policy): (&Copier<'_>, &RetryPolicy),
    upload: Upload,
    report: &mut TableSyncReport,
) -> Result<()> {
    // Each file keeps the partition spec it was written with: the cloud spec with the
    // same fields (the default one after `evolve_cloud`; an older local spec must exist in
    // the cloud too, or the file cannot be described there).
    let mut spec_ids = std::collections::HashMap::new();
    for s in &upload.files {
        if spec_ids.contains_key(&s.spec_id) {
            continue;
        }
        let fields = local
            .metadata()
            .partition_spec_by_id(s.spec_id)
            .map(|spec| spec.fields().to_vec());
        let cloud_spec = fields.as_ref().and_then(|fields| {
            let c = cloud_table.metadata();
            match same_partitioning(c.default_partition_spec().fields(), fields) {
                true => Some(c.default_partition_spec_id()),
                false => c
                    .partition_specs_iter()
                    .find(|spec| same_partitioning(spec.fields(), fields))
                    .map(|spec| spec.spec_id()),
            }
        });
        let Some(id) = cloud_spec else {
            return Err(Error::SyncMismatch {
                table: local.name().to_string(),
                cloud: cloud_table.location().to_string(),
                reason: format!(
                    "a data file was written with local partition spec {}, which the cloud table lacks (sync without --per-commit rewrites such files into the current spec)",
                    s.spec_id
                ),
            });
        };
        spec_ids.insert(s.spec_id, id);
    }
    copier.progress.planned(
        upload.files.len() as u64,
        upload
            .files
            .iter()
            .map(|s| s.file.file_size_in_bytes())
            .sum(),
    );
    // A vacuum may have committed an intent to delete a copy this projection reuses (a
    // failed run left it) or made before the vacuum listed the table: the commit is
    // then refused, and the files are copied again under fresh names (the old names
    // are the vacuum's to delete).
    let mut fresh = false;
    let committed = loop {
        let mut cloud_files = Vec::with_capacity(upload.files.len());
        for s in &upload.files {
            let f = &s.file;
            let mut target = cloud_path(local.location(), cloud_table.location(), f.file_path());
            if fresh {
                target = fresh_name(&target);
            }
            let size = f.file_size_in_bytes();
            let resume_at = squash::upload_journal(local, &target);
            let sent = copier
                .copy_object(
                    local.warehouse(),
                    f.file_path(),
                    cloud.warehouse(),
                    &target,
                    size,
                    Some(&resume_at),
                )
                .await?;
            match sent {
                Some(bytes) => {
                    report.files_copied += 1;
                    report.bytes_copied += bytes;
                }
                None => report.files_skipped += 1,
            }
            copier.progress.file_done(sent.is_none(), size);
            cloud_files.push(relocate(f, target, spec_ids[&s.spec_id])?);
        }
        let commit = projection_commit(
            &local.metadata().uuid(),
            &upload.commit_id,
            (
                upload.first_snapshot_id,
                upload.last_snapshot_id,
                upload.snapshots,
            ),
            (upload.from, upload.to),
            policy,
        );
        match cloud_table.append(cloud_files, commit).await {
            Err(TableError::Vacuumed { object, intent, .. }) if !fresh => {
                tracing::warn!(%object, %intent, "a vacuum deletes a copy this projection uses; copying again under fresh names");
                fresh = true;
            }
            other => break other?,
        }
    };
    if committed.already_committed {
        report.already_committed += 1;
    } else {
        report.snapshots_projected += upload.snapshots;
        report.cloud_commits += 1;
    }
    report.watermark = upload.to;
    Ok(())
}

/// `location` with a fresh prefix on its file name (a copy that no vacuum intent names).
fn fresh_name(location: &str) -> String {
    let (dir, name) = location.rsplit_once('/').unwrap_or(("", location));
    format!("{dir}/{}-{name}", uuid::Uuid::new_v4())
}

/// The local snapshots above `watermark`, as projections, oldest first; counts what is
/// passed over in `report` (reset on each call).
async fn plan_projections(
    local: &Table,
    watermark: i64,
    report: &mut TableSyncReport,
) -> Result<Vec<Projection>> {
    report.snapshots_skipped = 0;
    report.catch_up = false;
    let mut projections = Vec::new();
    for step in plan_steps(local.name(), local.metadata(), watermark)? {
        let (snapshot_id, sequence_number, all_live) = match step {
            Step::Append {
                snapshot_id,
                sequence_number,
            } => (snapshot_id, sequence_number, false),
            Step::CatchUp {
                snapshot_id,
                sequence_number,
            } => {
                report.catch_up = true;
                (snapshot_id, sequence_number, true)
            }
            Step::Skip { .. } => {
                report.snapshots_skipped += 1;
                continue;
            }
        };
        projections.push(Projection {
            snapshot_id,
            sequence_number,
            files: files_of(local, snapshot_id, all_live).await?,
        });
    }
    // An append of no files (not made by Floe) moves nothing; it is passed over.
    projections.retain(|p| !p.files.is_empty());
    Ok(projections)
}

/// What a sync run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// One entry per table that synced.
    pub tables: Vec<TableSyncReport>,
    /// Tables that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Local pruning per table (with `--prune-local-older-than`).
    pub pruned: Vec<(String, PruneReport)>,
}

impl SyncReport {
    /// Whether every table was already up to date.
    pub fn already_in_sync(&self) -> bool {
        self.failed.is_empty() && self.tables.iter().all(|t| t.already_in_sync)
    }
}

/// The tables a selection names: none = every table of the warehouse; `NS.TABLE` = that
/// table; `NS` = every table in it and in the namespaces below it.
pub async fn select_tables(local: &Catalog, selection: &[String]) -> Result<Vec<TableIdent>> {
    let all_namespaces = local.list_all_namespaces().await?;
    let mut out = Vec::new();
    if selection.is_empty() {
        for ns in &all_namespaces {
            out.extend(local.list_tables(ns).await?);
        }
        return Ok(out);
    }
    for s in selection {
        if let Ok(ident) = TableIdent::parse(s) {
            if local.load_table(&ident).await.is_ok() {
                out.push(ident);
                continue;
            }
        }
        let ns = Namespace::parse(s)?;
        let under: Vec<&Namespace> = all_namespaces
            .iter()
            .filter(|n| n.parts().starts_with(ns.parts()))
            .collect();
        if under.is_empty() {
            return Err(floe_catalog::Error::NamespaceNotFound {
                namespace: format!("{s} (neither a table nor a namespace of the local warehouse)"),
            }
            .into());
        }
        for n in under {
            out.extend(local.list_tables(n).await?);
        }
    }
    out.sort_by_key(|t| t.to_string());
    out.dedup();
    Ok(out)
}

/// Project the selected tables of the `local` catalog into the `cloud` catalog, then prune
/// them locally if asked.
pub async fn sync(
    local: &Catalog,
    cloud: &Catalog,
    selection: &[String],
    options: &SyncOptions,
    prune: Option<&PruneOptions>,
) -> Result<SyncReport> {
    let cloud_url = cloud.warehouse().url();
    let tables = select_tables(local, selection).await?;
    let mut runs = stream::iter(tables)
        .map(|ident| async move {
            let result: Result<(TableSyncReport, Option<PruneReport>)> = async {
                let mut table = local.load_table(&ident).await?;
                let report = sync_table(&mut table, cloud, options).await?;
                let pruned = match prune {
                    Some(p) if !options.dry_run => {
                        local.check_sole_owner(&table, "prune")?;
                        Some(prune_local(&mut table, p.older_than, &p.column, p.grace).await?)
                    }
                    _ => None,
                };
                Ok((report, pruned))
            }
            .await;
            (ident, result)
        })
        .buffer_unordered(TABLE_CONCURRENCY);
    let mut report = SyncReport::default();
    while let Some((ident, result)) = runs.next().await {
        match result {
            Ok((r, pruned)) => {
                report.tables.push(r);
                if let Some(p) = pruned {
                    report.pruned.push((ident.to_string(), p));
                }
            }
            Err(e @ Error::Unreachable { .. }) => return Err(e),
            // The link dropped in the middle of a table: every other table would fail the
            // same way after its own retries, so stop here (what was copied is reused by
            // the next run; nothing half-committed exists).
            Err(e) if e.as_table_error().is_some_and(|t| link_lost(t, cloud_url)) => {
                return Err(Error::Unreachable {
                    url: cloud_url.to_string(),
                    attempts: 1,
                    source: Box::new(e),
                })
            }
            Err(e) => {
                tracing::warn!(table = %ident, error = %e, "sync failed");
                report.failed.push((ident.to_string(), error_chain(&e)));
            }
        }
    }
    report.tables.sort_by(|a, b| a.table.cmp(&b.table));
    report.failed.sort();
    report.pruned.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(report)
}

/// A transient store failure on an object of the cloud warehouse (for a read, write or
/// list, retryable means a transient store failure).
fn link_lost(e: &TableError, cloud_url: &str) -> bool {
    match e {
        TableError::Read { location, .. }
        | TableError::Write { location, .. }
        | TableError::List { location, .. } => location.starts_with(cloud_url) && e.is_retryable(),
        _ => false,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
