//! Floe's lightweight catalog: which namespaces and tables a warehouse holds.
//!
//! With no server, the catalog *is* the warehouse's folder tree in the Hadoop-catalog
//! layout (see `spec/catalog.md`): a folder with a `metadata/` folder holding at least one
//! `v{N}.metadata.json` is a table, any other folder with content is a namespace, and
//! namespaces nest. Listing is a LIST with a delimiter per level.
//!
//! ```no_run
//! # async fn demo() -> floe_catalog::Result<()> {
//! use floe_catalog::Catalog;
//! use floe_table_format::{Namespace, Warehouse};
//! let catalog = Catalog::new(Warehouse::open("./warehouse")?);
//! for table in catalog.list_tables(&Namespace::parse("fleet")?).await? {
//!     println!("{table}");
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod iceberg_catalog;
mod listing;
pub mod namespace;
pub mod rest;
pub mod rest_api;
pub mod rest_store;
pub mod sql;
pub mod sql_backend;

use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use floe_table_format::version;
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Warehouse};

pub use error::{Error, Result};
pub use iceberg_catalog::IcebergCatalog;
pub use namespace::{NamespaceDoc, NamespaceUpdate, TableTemplate};

/// How many folders are examined at once while listing.
const LIST_CONCURRENCY: usize = 32;

/// What a folder of the warehouse holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FolderKind {
    Table,
    Namespace,
    /// What a dropped (not purged) table left behind: neither a table nor a namespace.
    Remains,
}

/// The catalog of one warehouse.
#[derive(Debug, Clone)]
pub struct Catalog {
    warehouse: Warehouse,
    /// Set when the Iceberg SQL catalog records which tables exist (see
    /// [`sql_backend`]); None when the warehouse's folders do.
    sql: Option<std::sync::Arc<sql_backend::SqlBackend>>,
    /// Set when a REST catalog (`floe serve`) keeps the tables; the warehouse is then the
    /// server's, reached with the caller's grants.
    rest: Option<std::sync::Arc<rest::RestBackend>>,
}

impl Catalog {
    /// The same catalog, reading and writing the warehouse through `store` (a cache in
    /// front of the warehouse's own store, say).
    pub fn with_store(&self, store: std::sync::Arc<dyn ObjectStore>) -> Result<Self> {
        Ok(Self {
            warehouse: Warehouse::with_store(self.warehouse.url(), store)?,
            sql: self.sql.clone(),
            rest: self.rest.clone(),
        })
    }

    /// The catalog of `warehouse`.
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse,
            sql: None,
            rest: None,
        }
    }

    /// The catalog of a warehouse whose tables are recorded in an Iceberg SQL catalog.
    pub fn with_sql(warehouse: Warehouse, backend: sql_backend::SqlBackend) -> Self {
        Self {
            warehouse,
            sql: Some(std::sync::Arc::new(backend)),
            rest: None,
        }
    }

    /// The catalog a REST catalog server keeps (see [`rest`]).
    pub fn with_rest(backend: rest::RestBackend) -> Self {
        Self {
            warehouse: backend.warehouse().clone(),
            sql: None,
            rest: Some(std::sync::Arc::new(backend)),
        }
    }

    /// Refuse what a REST client cannot do here, naming the verb.
    fn refuse_over_rest(&self, what: &str) -> Result<()> {
        match &self.rest {
            Some(r) => Err(floe_table_format::Error::InvalidArgument {
                argument: what.to_string(),
                reason: format!(
                    "not available through the REST catalog {}: run it on the server's warehouse, or through the REST API as an admin",
                    r.warehouse().url()
                ),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// The SQL backend, if this catalog uses one.
    pub fn sql_backend(&self) -> Option<&std::sync::Arc<sql_backend::SqlBackend>> {
        self.sql.as_ref()
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Create a table.
    pub async fn create_table(
        &self,
        ident: &TableIdent,
        definition: TableDefinition,
    ) -> Result<Table> {
        if let Some(sql) = &self.sql {
            return sql.create_table(&self.warehouse, ident, definition).await;
        }
        if let Some(rest) = &self.rest {
            return rest.create_table(ident, &definition, false).await;
        }
        Ok(Table::create(&self.warehouse, ident, definition).await?)
    }

    /// Create a table, or load it if it already exists.
    pub async fn create_or_load_table(
        &self,
        ident: &TableIdent,
        definition: TableDefinition,
    ) -> Result<Table> {
        if let Some(sql) = &self.sql {
            return match sql.create_table(&self.warehouse, ident, definition).await {
                Err(Error::Table(floe_table_format::Error::TableExists { .. })) => {
                    sql.load_table(&self.warehouse, ident).await
                }
                other => other,
            };
        }
        if let Some(rest) = &self.rest {
            return match rest.create_table(ident, &definition, false).await {
                Err(Error::Table(floe_table_format::Error::TableExists { .. })) => {
                    rest.load_table(ident).await
                }
                other => other,
            };
        }
        Ok(Table::create_or_load(&self.warehouse, ident, definition).await?)
    }

    /// Adopt an existing Iceberg table from its metadata file (see [`Table::register`]).
    pub async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<Table> {
        if let Some(sql) = &self.sql {
            return sql
                .register_table(&self.warehouse, ident, metadata_location)
                .await;
        }
        self.refuse_over_rest("register")?;
        Ok(Table::register(&self.warehouse, ident, metadata_location).await?)
    }

    /// Load a table's head.
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        if let Some(sql) = &self.sql {
            return sql.load_table(&self.warehouse, ident).await;
        }
        if let Some(rest) = &self.rest {
            return rest.load_table(ident).await;
        }
        Ok(Table::load(&self.warehouse, ident).await?)
    }

    /// Load a table, or create it from its namespace's table template (a device's first
    /// contact). Two devices doing this at once end up with one table.
    pub async fn load_or_create_from_template(&self, ident: &TableIdent) -> Result<Table> {
        if let Some(rest) = &self.rest {
            // The server knows the template: ask it to create from it (404 without one).
            return match rest.load_table(ident).await {
                Err(Error::Table(floe_table_format::Error::TableNotFound { .. })) => {
                    let placeholder = TableDefinition {
                        schema: floe_table_format::schema::default_iot_schema(),
                        partition: Default::default(),
                        properties: Default::default(),
                    };
                    match rest.create_table(ident, &placeholder, true).await {
                        Err(Error::Table(floe_table_format::Error::TableExists { .. })) => {
                            rest.load_table(ident).await
                        }
                        other => other,
                    }
                }
                other => other,
            };
        }
        match self.load_table(ident).await {
            Err(Error::Table(floe_table_format::Error::TableNotFound { table, location })) => {
                let template = match self.describe_namespace(ident.namespace()).await {
                    Ok(doc) => doc.template,
                    Err(Error::NamespaceNotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                match template {
                    Some(t) => self.create_or_load_table(ident, t.definition()?).await,
                    None => Err(floe_table_format::Error::TableNotFound { table, location }.into()),
                }
            }
            other => other,
        }
    }

    /// Whether anything exists under a namespace (tables, sub-namespaces or properties).
    pub async fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        if let Some(sql) = &self.sql {
            return sql.namespace_exists(ns);
        }
        if let Some(rest) = &self.rest {
            return rest.namespace_exists(ns).await;
        }
        Ok(
            version::any_object_under(&self.warehouse, &self.warehouse.location(&ns.path()))
                .await?,
        )
    }

    /// Create a namespace with properties (and optionally a table template).
    pub async fn create_namespace(&self, ns: &Namespace, doc: NamespaceDoc) -> Result<()> {
        if let Some(sql) = &self.sql {
            return sql.create_namespace(ns, &doc);
        }
        self.refuse_over_rest("namespace create")?;
        self.refuse_table_ancestors(ns).await?;
        if let Some(t) = &doc.template {
            t.validate()?;
        }
        if namespace::create(&self.warehouse, ns, &doc).await? {
            Ok(())
        } else {
            Err(Error::NamespaceExists {
                namespace: ns.to_string(),
            })
        }
    }

    /// A namespace's properties and template (empty if it exists only through its tables).
    pub async fn describe_namespace(&self, ns: &Namespace) -> Result<NamespaceDoc> {
        if let Some(sql) = &self.sql {
            return sql.describe_namespace(ns);
        }
        if let Some(rest) = &self.rest {
            return Ok(NamespaceDoc {
                properties: rest.namespace_properties(ns).await?.into_iter().collect(),
                ..NamespaceDoc::default()
            });
        }
        match namespace::read(&self.warehouse, ns).await? {
            Some((_, doc)) => Ok(doc),
            None if self.namespace_exists(ns).await? => Ok(NamespaceDoc::default()),
            None => Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            }),
        }
    }

    /// Change a namespace's properties or template (concurrent updates are never lost).
    pub async fn update_namespace(
        &self,
        ns: &Namespace,
        change: &NamespaceUpdate,
    ) -> Result<NamespaceDoc> {
        if let Some(sql) = &self.sql {
            return sql.update_namespace(ns, change);
        }
        self.refuse_over_rest("namespace update")?;
        self.refuse_table_ancestors(ns).await?;
        namespace::update(&self.warehouse, ns, change).await
    }

    async fn refuse_table_ancestors(&self, ns: &Namespace) -> Result<()> {
        let parts = ns.parts();
        for depth in 1..=parts.len() {
            let loc = self.warehouse.location(&parts[..depth].join("/"));
            if !version::list_versions(&self.warehouse, &loc)
                .await?
                .is_empty()
            {
                return Err(floe_table_format::Error::InvalidName {
                    name: ns.to_string(),
                    reason: format!("{} is a table, not a namespace", parts[..depth].join(".")),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Vacuum a table (see [`floe_table_format::vacuum::vacuum`]).
    pub async fn vacuum_table(
        &self,
        ident: &TableIdent,
        grace: std::time::Duration,
        dry_run: bool,
    ) -> Result<floe_table_format::vacuum::VacuumReport> {
        let mut t = self.load_table(ident).await?;
        self.check_sole_owner(&t, "vacuum")?;
        Ok(floe_table_format::vacuum::vacuum(&mut t, grace, dry_run).await?)
    }

    /// Before a vacuum or a purge (`verb`) of `table` (loaded through this catalog), in an
    /// SQL catalog, where the table's metadata (not its name) decides its folder: refuse a
    /// folder outside the warehouse, or one that also holds another live table (a rename
    /// followed by a create with the old name makes two tables share a folder). Nothing to
    /// check for other catalogs: a table's folder is its name's.
    pub fn check_sole_owner(&self, table: &floe_table_format::Table, verb: &str) -> Result<()> {
        let Some(sql) = &self.sql else {
            return Ok(());
        };
        let name = table.name();
        let root = table.location().trim_end_matches('/');
        floe_table_format::confine::check_inside_warehouse(&self.warehouse, root, verb)?;
        let root_key = self.warehouse.object_path(root)?.to_string();
        for (other, metadata_location) in sql.all_tables()? {
            let Ok(key) = self.warehouse.object_path(&metadata_location) else {
                continue;
            };
            if Some(&other) != table.ident() && key.to_string().starts_with(&format!("{root_key}/"))
            {
                return Err(floe_table_format::Error::InvalidArgument {
                    argument: format!("{verb} of {name}"),
                    reason: format!(
                        "its folder {root} also holds the live table {other}; nothing was deleted (drop {other} first, or drop {name} without --purge)"
                    ),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Drop a table: its version hint and metadata versions are deleted (oldest first, the
    /// head last, so an interrupted drop leaves a loadable table), then the rest of its
    /// `metadata/` folder (manifests, manifest lists). With `purge`, its data files are
    /// deleted too; without, they stay for recovery. Returns the number of objects deleted.
    pub async fn drop_table(&self, ident: &TableIdent, purge: bool) -> Result<usize> {
        if let Some(rest) = &self.rest {
            return rest.drop_table(ident, purge).await;
        }
        if let Some(sql) = &self.sql {
            if !purge {
                sql.drop_table(ident)?;
                return Ok(1);
            }
            let table = sql.load_table(&self.warehouse, ident).await?;
            self.check_sole_owner(&table, "purge")?;
            let root = table.location().trim_end_matches('/').to_string();
            sql.drop_table(ident)?;
            let n = self.delete_own_objects(&root, true).await?;
            return Ok(1 + n);
        }
        let location = self.warehouse.location(&ident.path());
        let versions = version::list_versions(&self.warehouse, &location).await?;
        if versions.is_empty() {
            let prefix = self.warehouse.object_path(&location)?.to_string();
            let keys: Vec<String> = self
                .warehouse
                .list_all(&location)
                .await?
                .iter()
                .map(|o| o.location.to_string())
                .collect();
            if keys.is_empty() {
                return Err(floe_table_format::Error::TableNotFound {
                    table: ident.to_string(),
                    location: format!("{location}/metadata (nothing at all is there)"),
                }
                .into());
            }
            // An interrupted drop (or a drop without purge, followed by one with) leaves
            // only a table's own objects and no versions: finishing it is allowed.
            // Anything else is not a table, and is left alone.
            let others = floe_table_format::confine::other_table_roots(&keys, &prefix);
            if !keys
                .iter()
                .all(|k| floe_table_format::confine::is_own(k, &prefix, &others))
            {
                let what = match others.first() {
                    Some(root) => format!(
                        "a namespace: it holds the table {}",
                        root.strip_prefix(&format!("{prefix}/"))
                            .map(|r| format!("{ident}.{}", r.replace('/', ".")))
                            .unwrap_or_else(|| root.clone())
                    ),
                    None if keys.iter().any(|k| k.contains("/.floe/")) => {
                        "a namespace (it has namespace properties)".to_string()
                    }
                    None => "a folder of objects that are not a Floe table's".to_string(),
                };
                return Err(floe_table_format::Error::InvalidName {
                    name: ident.to_string(),
                    reason: format!("{ident} is not a table but {what}; nothing was deleted"),
                }
                .into());
            }
        }
        let store = self.warehouse.store();
        let delete = |loc: String| async move {
            match store.delete(&self.warehouse.object_path(&loc)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok::<_, Error>(()),
                Err(source) => Err(floe_table_format::Error::Write {
                    location: loc,
                    source,
                }
                .into()),
            }
        };
        // The index marker goes first, then the head, so a drop cut short leaves remains,
        // never a half table nor a marker of a table that is gone.
        floe_table_format::index::remove(&self.warehouse, ident).await?;
        delete(version::hint_location(&location)).await?;
        for v in &versions {
            delete(version::metadata_location(&location, *v)).await?;
        }
        let rest = self.delete_own_objects(&location, purge).await?;
        Ok(1 + versions.len() + rest)
    }

    /// Delete the objects of the table at `location` that are its own: everything under
    /// its `metadata/` and, when `purge`, its `data/`, but never anything of another
    /// table rooted inside those folders, nor anything else under the table's folder (a
    /// namespace's tables or documents, foreign files). Returns how many were deleted.
    async fn delete_own_objects(&self, location: &str, purge: bool) -> Result<usize> {
        let prefix = self.warehouse.object_path(location)?.to_string();
        let verb = if purge { "purge" } else { "drop" };
        let doomed: Vec<Path> =
            floe_table_format::confine::own_objects(&self.warehouse, location, verb)
                .await?
                .into_iter()
                .map(|o| o.location)
                .filter(|k| purge || k.as_ref().starts_with(&format!("{prefix}/metadata/")))
                .collect();
        let n = doomed.len();
        let results: Vec<_> = self
            .warehouse
            .store()
            .delete_stream(stream::iter(doomed.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(floe_table_format::Error::Write {
                        location: location.to_string(),
                        source,
                    }
                    .into())
                }
            }
        }
        Ok(n)
    }

    /// Rename a table. In the SQL catalog this is one row update; on the warehouse's folders
    /// a rename is not atomic (every object would move) and is refused.
    pub async fn rename_table(&self, from: &TableIdent, to: &TableIdent) -> Result<()> {
        self.refuse_over_rest("rename")?;
        match &self.sql {
            Some(sql) => sql.rename_table(from, to),
            None => Err(floe_table_format::Error::InvalidArgument {
                argument: "rename".into(),
                reason: "tables in a warehouse catalog cannot be renamed (object stores have no atomic rename); use an SQL catalog (--catalog sqlite:///…) or copy with register".into(),
            }
            .into()),
        }
    }

    /// The store, for callers that need raw access (tests, tools).
    pub fn store(&self) -> &std::sync::Arc<dyn ObjectStore> {
        self.warehouse.store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_table_format::schema;

    fn def() -> TableDefinition {
        let s = schema::default_iot_schema();
        let partition = schema::parse_partition_spec("day(ts)", &s).unwrap();
        TableDefinition {
            schema: s,
            partition,
            properties: Default::default(),
        }
    }

    #[tokio::test]
    async fn lists_namespaces_and_tables() {
        let wh = Warehouse::open(&format!("memory://cat-{}", uuid_like())).unwrap();
        let cat = Catalog::new(wh);
        for t in ["fleet.dev_2", "fleet.dev_1", "site_17.chargers.c1"] {
            cat.create_table(&TableIdent::parse(t).unwrap(), def())
                .await
                .unwrap();
        }
        let ns: Vec<String> = cat
            .list_all_namespaces()
            .await
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(ns, ["fleet", "site_17", "site_17.chargers"]);
        let tables: Vec<String> = cat
            .list_tables(&Namespace::parse("fleet").unwrap())
            .await
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tables, ["fleet.dev_1", "fleet.dev_2"]);
        // Pages: names after the cursor, at most `limit`, and a cursor while more remain.
        for i in 3..=7 {
            cat.create_table(
                &TableIdent::parse(&format!("fleet.dev_{i}")).unwrap(),
                def(),
            )
            .await
            .unwrap();
        }
        let fleet = Namespace::parse("fleet").unwrap();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = cat
                .list_tables_page(&fleet, after.as_deref(), 3)
                .await
                .unwrap();
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(|t| t.name().to_string()));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(
            seen,
            (1..=7).map(|i| format!("dev_{i}")).collect::<Vec<_>>()
        );
        assert!(cat
            .list_tables(&Namespace::parse("site_17").unwrap())
            .await
            .unwrap()
            .is_empty());
    }

    fn uuid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}
