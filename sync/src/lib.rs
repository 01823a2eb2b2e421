//! Projecting a local (gateway) warehouse into a cloud warehouse: the engine of `floe sync`.
//!
//! A gateway commits to its own local warehouse with no network. When the link returns,
//! each local table is *projected* into the table of the same name in the cloud warehouse
//! (see `spec/sync.md` for the protocol). Sync works across two warehouses, so it sits
//! above the table format and the catalog: it lists and opens tables, local and cloud,
//! through [`floe_catalog::Catalog`], and commits through the table format's one commit path.
//!
//! ```text
//!   local snapshots (oldest first, after the cloud watermark W)            plan.rs
//!     append S ──► copy S's added data files (skip if present, same size)  copy.rs
//!              ──► cloud append                                            project.rs
//!                  commit id  sync-<local uuid>-<S>,  property floe.sync.<local uuid>.sequence-number = seq(S)
//!     replace / delete ──► skipped (local maintenance stays local)
//!   then the local table records W in floe.sync.projected-sequence-number  project.rs
//!   optionally: drop what the cloud holds and is old                       prune.rs
//! ```
//!
//! Invariants:
//! - **Copy before commit**: a cloud snapshot never references a file that is not there.
//! - **Oldest first**: the cloud holds a prefix of the local appends at every moment.
//! - **At most once**: the watermark moves in the same version as the append it covers, and
//!   the commit id settles a replay of an ambiguous commit; a rerun skips what is there.
//! - **Nothing unprojected is lost locally**: while a table carries the local watermark
//!   ([`LOCAL_WATERMARK`]), expiry keeps every snapshot above it (see
//!   [`floe_table_format::maintenance::unprojected_floor`]).
//!
//! The planning step ([`plan_steps`]) is pure; the IO around it is thin.
//!
//! ```no_run
//! # async fn demo() -> floe_sync::Result<()> {
//! use floe_catalog::Catalog;
//! use floe_table_format::Warehouse;
//! let local = Catalog::new(Warehouse::open("file:///var/lib/floe")?);
//! let cloud = Catalog::new(Warehouse::open("s3://bucket/fleet")?);
//! let options = floe_sync::SyncOptions::default();
//! let report = floe_sync::sync(&local, &cloud, &["fleet".into()], &options, None).await?;
//! println!("{} table(s) synced, {} failed", report.tables.len(), report.failed.len());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod copy;
mod error;
mod plan;
mod project;
mod prune;
mod run;
mod squash;

pub use copy::{NoProgress, RateLimiter, SyncProgress};
pub use error::{Error, Result};
pub use plan::{plan_steps, Step};
pub use project::{
    cloud_path, cloud_watermark_key, commit_id, range_commit_id, set_local_watermark,
    SOURCE_FIRST_SNAPSHOT_KEY, SOURCE_RANGE_KEY, SOURCE_SNAPSHOTS_KEY, SOURCE_SNAPSHOT_KEY,
    SOURCE_TABLE_KEY,
};
pub use prune::{prune_local, PruneOptions, PruneReport};
pub use run::{
    planned_requests, reach, select_tables, sync, sync_table, SyncOptions, SyncReport,
    TableSyncReport,
};
pub use squash::DEFAULT_COMMIT_BYTES;

/// Local table property: the sequence number of the newest local snapshot the cloud holds.
/// Defined in the table format, whose expiry protects the snapshots above it.
pub use floe_table_format::maintenance::LOCAL_WATERMARK;
