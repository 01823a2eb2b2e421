//! The session's catalog: every namespace of the warehouse as a schema, resolved when a
//! query names it, so a query on `fleet.dev_7` lists neither the warehouse nor `fleet`.
//! Listings (for `information_schema`, `SHOW TABLES`, a client's schema browser) are made
//! on demand by [`crate::QueryEngine`].

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::Result as DFResult;

use floe_catalog::Catalog;
use floe_table_format::Namespace;

use crate::namespace::NamespaceSchema;
use crate::tables::TableCache;
use crate::{ScanOptions, Scope};

/// The `datafusion` catalog of a Floe session.
#[derive(Debug)]
pub struct FloeCatalogProvider {
    catalog: Arc<Catalog>,
    options: ScanOptions,
    scope: Option<Arc<dyn Scope>>,
    tables: Arc<TableCache>,
    /// Schemas from the last listing, plus any registered (`public`): what
    /// `schema_names` reports.
    listed: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
    /// Namespaces resolved by name without a listing.
    named: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl FloeCatalogProvider {
    /// A catalog over `catalog`, listing nothing yet.
    pub fn new(
        catalog: Arc<Catalog>,
        options: ScanOptions,
        scope: Option<Arc<dyn Scope>>,
        tables: Arc<TableCache>,
    ) -> Self {
        Self {
            catalog,
            options,
            scope,
            tables,
            listed: RwLock::new(BTreeMap::new()),
            named: RwLock::new(BTreeMap::new()),
        }
    }

    fn namespace_schema(&self, ns: Namespace) -> NamespaceSchema {
        NamespaceSchema::new(
            self.catalog.clone(),
            ns,
            self.options,
            self.scope.clone(),
            self.tables.clone(),
        )
    }

    /// List every namespace the scope sees and its tables.
    pub async fn list(&self) -> crate::Result<Vec<Namespace>> {
        let mut seen = Vec::new();
        for ns in self.catalog.list_all_namespaces().await? {
            if self.scope.as_ref().is_some_and(|s| !s.sees(&ns)) {
                continue;
            }
            let schema = self.namespace_schema(ns.clone());
            schema.list().await?;
            if let Ok(mut listed) = self.listed.write() {
                listed.insert(ns.to_string(), Arc::new(schema));
            }
            seen.push(ns);
        }
        let names: Vec<String> = seen.iter().map(ToString::to_string).collect();
        if let Ok(mut listed) = self.listed.write() {
            listed.retain(|name, s| names.contains(name) || !s.as_any().is::<NamespaceSchema>());
        }
        Ok(seen)
    }
}

impl CatalogProvider for FloeCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.listed
            .read()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.listed.read().ok()?.get(name) {
            return Some(s.clone());
        }
        if let Some(s) = self.named.read().ok()?.get(name) {
            return Some(s.clone());
        }
        // Any valid namespace name resolves; one that does not exist simply has no
        // tables (and one outside the scope is not there at all).
        let ns = Namespace::parse(name).ok()?;
        if self.scope.as_ref().is_some_and(|s| !s.sees(&ns)) {
            return None;
        }
        let schema: Arc<dyn SchemaProvider> = Arc::new(self.namespace_schema(ns));
        self.named
            .write()
            .ok()?
            .insert(name.to_string(), schema.clone());
        Some(schema)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        let mut listed = self
            .listed
            .write()
            .map_err(|_| datafusion::error::DataFusionError::Internal("poisoned".into()))?;
        Ok(listed.insert(name.to_string(), schema))
    }
}
