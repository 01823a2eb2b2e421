//! Floe's table format: per-device Apache Iceberg v2 tables on object storage, committed
//! with conditional writes and no catalog server or lock service.
//!
//! This crate owns the object layout and the commit protocol (see `spec/` at the
//! repository root). It knows storage only as an `Arc<dyn ObjectStore>` behind a
//! [`Warehouse`], and carries no query engine, so a gateway that only appends stays small.
//! A gateway's local tables are projected into a cloud warehouse by the `floe-sync` crate,
//! above this one (it works across two warehouses).
//!
//! ```no_run
//! # async fn demo() -> floe_table_format::Result<()> {
//! use floe_table_format::*;
//! let wh = Warehouse::open("memory://example")?;
//! let ident = TableIdent::parse("fleet.dev_0001")?;
//! let schema = schema::default_iot_schema();
//! let partition = schema::parse_partition_spec("day(ts)", &schema)?;
//! let mut table = Table::create(&wh, &ident, TableDefinition {
//!     schema, partition, properties: Default::default() }).await?;
//! let options = CommitOptions::default();
//! let mut writer = DataWriter::new(&table)?;
//! // writer.write(batch).await?; …
//! let files = writer.close().await?;
//! table.append(files, options).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod alter;
pub mod append;
pub mod check;
pub mod commit;
pub mod confine;
pub mod diff;
pub mod driver;
pub mod durable;
pub mod error;
pub mod evolve;
pub mod external;
pub mod head;
pub mod ident;
pub mod index;
pub mod ingest;
pub mod intent;
pub mod maintain;
pub mod maintenance;
pub mod metadata;
pub mod pointer;
pub mod rewrite;
pub mod schema;
mod snapshot;
pub mod storage;
pub mod table;
pub mod vacuum;
pub mod version;
pub mod warehouse;
pub mod writer;

pub use append::{Advance, CommitOptions, CommitReport};
pub use commit::RetryPolicy;
pub use driver::{Action, Applied, Committed};
pub use error::{Error, Result};
pub use ident::{Namespace, TableIdent};
pub use metadata::COMMIT_ID_KEY;
pub use table::{Table, TableDefinition, TableView};
pub use version::Version;
pub use warehouse::Warehouse;
pub use writer::DataWriter;

/// Re-exported so callers use the same versions.
pub use iceberg;
