//! SQL over Floe tables with DataFusion.
//!
//! Tables are registered under their namespace as a schema, so
//! `SELECT … FROM fleet.dev_0042` works. Scans go through iceberg-datafusion, which prunes
//! by manifest-list partition summaries, file partition values and column bounds, and
//! Parquet row-group statistics.
#![warn(missing_docs)]

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::SessionContext;
use datafusion::sql::TableReference;
use iceberg_datafusion::IcebergStaticTableProvider;

use floe_catalog::Catalog;
use floe_table_format::{Namespace, Table};

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
    /// Registering a table with DataFusion failed.
    #[error("register {table} for SQL")]
    Register {
        /// The table.
        table: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Planning or running the query failed.
    #[error("query failed")]
    Query(#[from] datafusion::error::DataFusionError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A DataFusion session with Floe tables registered.
pub struct QueryEngine {
    ctx: SessionContext,
}

impl Default for QueryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryEngine {
    /// An empty session.
    pub fn new() -> Self {
        Self {
            ctx: SessionContext::new(),
        }
    }

    /// The DataFusion session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Register one loaded table as `namespace.table` (as of its loaded snapshot).
    pub async fn register_table(&self, table: &Table) -> Result<()> {
        let ident = table.ident().ok_or_else(|| Error::Register {
            table: table.name().to_string(),
            source: "only tables loaded by name can be registered".into(),
        })?;
        let schema_name = ident.namespace().to_string();
        let catalog = self
            .ctx
            .catalog("datafusion")
            .expect("the default catalog exists");
        if catalog.schema(&schema_name).is_none() {
            catalog
                .register_schema(&schema_name, Arc::new(MemorySchemaProvider::new()))
                .map_err(Error::Query)?;
        }
        let provider = IcebergStaticTableProvider::try_new_from_table(table.iceberg()?)
            .await
            .map_err(|e| Error::Register {
                table: table.name().to_string(),
                source: Box::new(e),
            })?;
        self.ctx
            .register_table(
                TableReference::partial(schema_name, ident.name().to_string()),
                Arc::new(provider),
            )
            .map_err(Error::Query)?;
        Ok(())
    }

    /// Register every table of a namespace.
    pub async fn register_namespace(
        &self,
        catalog: &Catalog,
        namespace: &Namespace,
    ) -> Result<usize> {
        let idents = catalog.list_tables(namespace).await?;
        for ident in &idents {
            let table = catalog.load_table(ident).await?;
            self.register_table(&table).await?;
        }
        Ok(idents.len())
    }

    /// Run a query and collect its result.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(query).await?.collect().await?)
    }
}
