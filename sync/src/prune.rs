//! Keeping a gateway's disk bounded after a sync: drop what the cloud already holds and
//! is old, never anything not yet projected.

use std::time::Duration;

use iceberg::spec::Operation;

use floe_table_format::{maintenance, rewrite, vacuum, Table};

use crate::error::Result;

/// `--prune-local-older-than`: what to drop locally after a table synced.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Drop projected data whose rows are all older than this.
    pub older_than: Duration,
    /// The timestamp column rows are judged by.
    pub column: String,
    /// Vacuum grace period.
    pub grace: Duration,
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
    let Some(watermark) = maintenance::unprojected_floor(local.metadata()) else {
        return Ok(PruneReport::default());
    };
    let mut report = PruneReport::default();
    let old: Vec<String> =
        rewrite::files_older_than(local, older_than, column, &format!("column {column}"))
            .await?
            .into_iter()
            .filter(|f| f.sequence_number.is_some_and(|s| s <= watermark))
            .map(|f| f.data_file.file_path().to_string())
            .collect();
    if !old.is_empty() {
        local
            .rewrite_files(&old, Vec::new(), Operation::Delete)
            .await?;
        report.files_dropped = old.len();
    }
    report.snapshots_expired = vacuum::expire(local, older_than, 1).await?.expired.len();
    report.objects_deleted = vacuum::vacuum(local, grace, false).await?.orphans.len();
    Ok(report)
}
