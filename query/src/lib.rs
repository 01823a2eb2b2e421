//! SQL over Floe tables with DataFusion.
//!
//! [`QueryEngine::open`] registers every namespace of a catalog as a DataFusion schema, so
//! `SELECT … FROM fleet.dev_0042` works, and each namespace also has the fleet view
//! `all_devices` (every table, plus a `device` column with the table name). Names resolve
//! lazily when a query is planned; see [`namespace`] for time travel (`"dev_0042@…"`) and
//! metadata tables (`"dev_0042$files"`).
//!
//! Pruning happens at every level: a filter on `device` drops whole tables before anything
//! of theirs is read; iceberg's planner drops manifests by the manifest list's partition
//! summaries and files by partition values and column bounds; the reader drops row groups
//! by their statistics and pages by the page index. The files left are spread over all
//! cores ([`scan`]).
#![warn(missing_docs)]

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::CatalogProvider;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use floe_catalog::Catalog;
use floe_table_format::Namespace;

pub mod field_ids;
pub mod functions;
pub mod metadata;
pub mod namespace;
pub mod native;
pub mod predicate;
pub mod provider;
pub mod scan;
pub mod session;
pub mod tables;

pub use scan::ScanSummary;

/// The fleet view every namespace has (a real table may not take this name).
pub const ALL_DEVICES: &str = "all_devices";
/// The column of the fleet view holding each row's table name.
pub const DEVICE_COLUMN: &str = "device";

/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading a table failed.
    #[error(transparent)]
    Table(#[from] floe_table_format::Error),
    /// Listing the catalog failed.
    #[error(transparent)]
    Catalog(#[from] floe_catalog::Error),
    /// Planning or running the query failed (DataFusion's message says why; it is not
    /// repeated as a cause).
    #[error("{0}")]
    Query(datafusion::error::DataFusionError),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Query(e)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// iceberg tables a session keeps by metadata location when no shared cache is given.
const SESSION_TABLES: usize = 1024;

/// How scans behave (the same for every table of a session).
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Use the query's filters to skip tables, manifests, files, row groups and pages.
    /// Off reads everything and filters afterwards (for tests and comparisons).
    pub pruning: bool,
    /// Rows per batch read.
    pub batch_size: usize,
    /// Read Parquet files with DataFusion's own scan where it can ([`native`]); off reads
    /// every file with iceberg's reader.
    pub native: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            pruning: true,
            batch_size: 8192,
            native: true,
        }
    }
}

/// What a session may see: the tables of a principal's grants (the SQL endpoint of `floe
/// serve`). A session without a scope sees the whole catalog.
pub trait Scope: Send + Sync + std::fmt::Debug {
    /// Whether the namespace is listed at all (some readable table lies in it or below).
    fn sees(&self, namespace: &Namespace) -> bool;
    /// Whether the table may be read.
    fn reads(&self, table: &floe_table_format::TableIdent) -> bool;
}

/// How a session is set up.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Scan behaviour.
    pub scan: ScanOptions,
    /// Cap on the memory of sorts, joins and aggregations, which spill to disk beyond it.
    pub memory_limit: Option<usize>,
    /// Partitions (threads) per scan and operator; None uses every core.
    pub target_partitions: Option<usize>,
    /// The namespace unqualified names resolve in.
    pub default_namespace: Option<Namespace>,
    /// What the session may see (None: everything). Tables outside it are left out of
    /// listings and fleet views, and naming one is "permission denied", whether or not
    /// it exists.
    pub scope: Option<Arc<dyn Scope>>,
    /// iceberg tables kept across queries (and sessions sharing it) by metadata location;
    /// None: each session keeps its own.
    pub tables: Option<Arc<tables::TableCache>>,
}

/// A DataFusion session over a Floe catalog.
pub struct QueryEngine {
    ctx: SessionContext,
    catalog: Arc<Catalog>,
    provider: Arc<session::FloeCatalogProvider>,
    /// Whether the bit names of the namespaces' properties are registered.
    bits_loaded: std::sync::atomic::AtomicBool,
}

impl QueryEngine {
    /// A session over `catalog` that reads only what each query needs: a name like
    /// `fleet.dev_0042` loads that table alone, `fleet.all_devices` reads the namespace's
    /// table index, and the warehouse is listed only for a query of `information_schema`
    /// or `pg_catalog`, or `SHOW` (see [`Self::prepare`]).
    pub async fn open(catalog: &Catalog, options: EngineOptions) -> Result<Self> {
        let ctx = Self::context_for(&options)?;
        native::install(&ctx, catalog.warehouse())?;
        let catalog = Arc::new(catalog.clone());
        let provider = Arc::new(session::FloeCatalogProvider::new(
            catalog.clone(),
            options.scan,
            options.scope.clone(),
            options
                .tables
                .clone()
                .unwrap_or_else(|| Arc::new(tables::TableCache::new(SESSION_TABLES))),
        ));
        // DataFusion's empty `public` schema stays (clients expect it); the default
        // schema it made for the default namespace would hide the namespace.
        let default_ns = options.default_namespace.as_ref().map(ToString::to_string);
        if let Some(public) = ctx.catalog("datafusion").and_then(|c| c.schema("public")) {
            if default_ns.as_deref() != Some("public") {
                provider.register_schema("public", public)?;
            }
        }
        ctx.register_catalog("datafusion", provider.clone());
        functions::register(&ctx, functions::BitNames::default());
        Ok(Self {
            ctx,
            catalog,
            provider,
            bits_loaded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A session as [`Self::open`] with every namespace and table listed now and the bit
    /// names loaded, for clients that browse the catalog themselves (the Postgres
    /// endpoint's `pg_catalog`).
    pub async fn open_listed(catalog: &Catalog, options: EngineOptions) -> Result<Self> {
        let engine = Self::open(catalog, options).await?;
        engine.list().await?;
        Ok(engine)
    }

    /// List every namespace and table the session may see, and load the bit names of
    /// their properties.
    async fn list(&self) -> Result<()> {
        let namespaces = self.provider.list().await?;
        let mut properties = Vec::new();
        for ns in namespaces {
            match self.catalog.describe_namespace(&ns).await {
                Ok(doc) => properties.push((ns.to_string(), doc.properties)),
                Err(floe_catalog::Error::NamespaceNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        functions::register(
            &self.ctx,
            functions::BitNames::from_properties(properties.iter().map(|(n, p)| (n.clone(), p))),
        );
        self.bits_loaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Read what a statement needs before it is planned: the listing of the warehouse when
    /// it reads `information_schema` or `pg_catalog` (or is a `SHOW`), and the bit names
    /// when it calls a `bit_` function. Planning then loads the tables it names.
    pub async fn prepare(&self, query: &str) -> Result<()> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let Ok(statement) = state.sql_to_statement(query, &dialect) else {
            return Ok(()); // planning reports the error
        };
        let references = state.resolve_table_references(&statement)?;
        let browses = references.iter().any(|r| {
            matches!(r.schema(), Some(s) if s.eq_ignore_ascii_case("information_schema")
                || s.eq_ignore_ascii_case("pg_catalog"))
        });
        let bits = query.to_ascii_lowercase().contains("bit_")
            && !self.bits_loaded.load(std::sync::atomic::Ordering::Relaxed);
        if browses || bits {
            self.list().await?;
        }
        Ok(())
    }

    fn context_for(options: &EngineOptions) -> Result<SessionContext> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            let pool = TrackConsumersPool::new(
                FairSpillPool::new(limit),
                std::num::NonZeroUsize::new(5).expect("5 is not zero"),
            );
            runtime = runtime.with_memory_pool(Arc::new(pool));
        }
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_batch_size(options.scan.batch_size);
        if let Some(limit) = options.memory_limit {
            // A sort reserves this much up front to merge its spill files (10 MB by
            // default): under a small pool that reservation alone would fail the query.
            let execution = &mut config.options_mut().execution;
            execution.sort_spill_reservation_bytes =
                execution.sort_spill_reservation_bytes.min(limit / 4);
            execution.sort_in_place_threshold_bytes =
                execution.sort_in_place_threshold_bytes.min(limit / 8);
        }
        if let Some(n) = options.target_partitions {
            config = config.with_target_partitions(n.max(1));
        }
        if let Some(ns) = &options.default_namespace {
            config = config.with_default_catalog_and_schema("datafusion", ns.to_string());
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc()?)
            .with_default_features()
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// The DataFusion session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plan a statement.
    pub async fn dataframe(&self, query: &str) -> Result<DataFrame> {
        self.prepare(query).await?;
        Ok(self.ctx.sql(query).await?)
    }

    /// Run a query and collect its result.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.dataframe(query).await?.collect().await?)
    }

    /// The physical plan of a query, and what each of its scans planned.
    pub async fn explain(&self, query: &str) -> Result<(Arc<dyn ExecutionPlan>, Vec<ScanSummary>)> {
        let plan = self.dataframe(query).await?.create_physical_plan().await?;
        let summaries = scan_summaries(&plan);
        Ok((plan, summaries))
    }
}

/// What every Floe scan in a physical plan planned (files and bytes, per table).
pub fn scan_summaries(plan: &Arc<dyn ExecutionPlan>) -> Vec<ScanSummary> {
    let mut out = Vec::new();
    let mut stack = vec![plan.clone()];
    while let Some(node) = stack.pop() {
        if let Some(scan) = node.as_any().downcast_ref::<scan::FloeScanExec>() {
            out.push(scan.summary().clone());
        }
        stack.extend(node.children().into_iter().cloned());
    }
    out.reverse();
    out
}
