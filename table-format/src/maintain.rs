//! `maintain`: the routine upkeep of one table in one call, in the order that frees the
//! most: compact (small files into larger ones), expire (snapshots beyond the table's
//! `history.expire.*` settings), then vacuum (objects no live snapshot references, older
//! than the grace period). Each step is its own commit through the one commit driver, so
//! a failure part way leaves every earlier step committed and the table consistent.

use std::time::Duration;

use crate::error::Result;
use crate::maintenance;
use crate::rewrite::{self, CompactReport};
use crate::table::Table;
use crate::vacuum::{self, ExpireReport, VacuumReport};

/// What `maintain` should do.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Compaction's target file size in bytes.
    pub target_file_bytes: u64,
    /// Vacuum's grace period: younger unreferenced objects may belong to work in flight.
    pub grace: Duration,
}

/// What `maintain` did to one table.
#[derive(Debug, Clone)]
pub struct MaintainReport {
    /// The compaction (its `rewrite` is None when there was nothing to compact).
    pub compacted: CompactReport,
    /// The expiry.
    pub expired: ExpireReport,
    /// The vacuum.
    pub vacuumed: VacuumReport,
}

/// Compact, expire by the table's own settings, then vacuum `table`.
pub async fn maintain(table: &mut Table, options: &MaintainOptions) -> Result<MaintainReport> {
    let compacted = rewrite::compact(table, options.target_file_bytes).await?;
    let settings = maintenance::Settings::of(table.metadata());
    let expired = vacuum::expire(
        table,
        Duration::from_millis(settings.max_snapshot_age_ms.max(0) as u64),
        settings.min_snapshots_to_keep,
    )
    .await?;
    let vacuumed = vacuum::vacuum(table, options.grace, false).await?;
    Ok(MaintainReport {
        compacted,
        expired,
        vacuumed,
    })
}
