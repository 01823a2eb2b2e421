//! The Iceberg SQL catalog as a full backend (`--catalog sqlite:///path.db`): which tables
//! exist and where their current metadata is, in the same `iceberg_tables` /
//! `iceberg_namespace_properties` schema pyiceberg's `SqlCatalog` and the Java JDBC catalog
//! use. A commit writes a uniquely named metadata file and swaps `metadata_location` with
//! `UPDATE … WHERE metadata_location = <base>`, exactly as those catalogs do, so Floe and
//! pyiceberg can write the same catalog, even the same table, concurrently.
//!
//! A namespace's table template is kept as the namespace property `floe.template` (JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use floe_table_format::pointer::{self, MetadataPointer};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Warehouse};

use crate::error::{Error, Result};
use crate::sql::SCHEMA;
use crate::{NamespaceDoc, NamespaceUpdate, TableTemplate};

/// The namespace property holding a table template.
pub const TEMPLATE_PROPERTY: &str = "floe.template";

/// A SQLite catalog file.
#[derive(Debug)]
pub struct SqlBackend {
    path: PathBuf,
    name: String,
    conn: Mutex<Connection>,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl SqlBackend {
    /// Open (creating if needed) the SQLite catalog at `path`, as catalog `name`.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| Self::err_at(path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| Self::err_at(path, e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| Self::err_at(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            name: name.to_string(),
            conn: Mutex::new(conn),
        })
    }

    fn err_at(path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Sql {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Self::err_at(&self.path, e)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().expect("sqlite connection lock poisoned");
        f(&conn).map_err(|e| self.err(e))
    }

    /// The catalog name rows are stored under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespaces directly under `parent` (or top-level ones).
    pub fn list_namespaces(&self, parent: Option<&Namespace>) -> Result<Vec<Namespace>> {
        let all: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT DISTINCT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?1
                 UNION SELECT DISTINCT table_namespace FROM iceberg_tables WHERE catalog_name = ?1",
            )?;
            let rows = stmt.query_map(params![self.name], |r| r.get(0))?;
            rows.collect()
        })?;
        let depth = parent.map(|p| p.parts().len()).unwrap_or(0) + 1;
        let mut out: Vec<Namespace> = Vec::new();
        for ns in all {
            let Ok(ns) = Namespace::parse(&ns) else {
                continue;
            };
            if ns.parts().len() < depth {
                continue;
            }
            if let Some(p) = parent {
                if ns.parts()[..p.parts().len()] != *p.parts() {
                    continue;
                }
            }
            let prefix = Namespace::new(ns.parts()[..depth].to_vec())?;
            if !out.contains(&prefix) {
                out.push(prefix);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Tables of a namespace.
    pub fn list_tables(&self, ns: &Namespace) -> Result<Vec<TableIdent>> {
        let names: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT table_name FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?2 ORDER BY table_name",
            )?;
            let rows = stmt.query_map(params![self.name, ns.to_string()], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(names
            .into_iter()
            .filter_map(|n: String| TableIdent::new(ns.clone(), n).ok())
            .collect())
    }

    /// Every table of the catalog with its current metadata location.
    pub fn all_tables(&self) -> Result<Vec<(TableIdent, String)>> {
        let rows: Vec<(String, String, String)> = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables WHERE catalog_name = ?1",
            )?;
            let rows = stmt.query_map(params![self.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(ns, name, loc)| {
                let ident = TableIdent::new(Namespace::parse(&ns).ok()?, name).ok()?;
                Some((ident, loc))
            })
            .collect())
    }

    /// Whether the namespace has properties or tables.
    pub fn namespace_exists(&self, ns: &Namespace) -> Result<bool> {
        let n: i64 = self.with(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM iceberg_namespace_properties WHERE catalog_name = ?1 AND namespace = ?2)
                      + (SELECT count(*) FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?2)",
                params![self.name, ns.to_string()],
                |r| r.get(0),
            )
        })?;
        Ok(n > 0)
    }

    fn properties(&self, ns: &Namespace) -> Result<BTreeMap<String, String>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT property_key, property_value FROM iceberg_namespace_properties WHERE catalog_name = ?1 AND namespace = ?2",
            )?;
            let rows = stmt.query_map(params![self.name, ns.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// A namespace's properties and template.
    pub fn describe_namespace(&self, ns: &Namespace) -> Result<NamespaceDoc> {
        if !self.namespace_exists(ns)? {
            return Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            });
        }
        let mut properties = self.properties(ns)?;
        properties.remove("exists");
        let template = match properties.remove(TEMPLATE_PROPERTY) {
            Some(json) => Some(serde_json::from_str::<TableTemplate>(&json).map_err(|e| {
                Error::CorruptNamespace {
                    location: format!(
                        "{} namespace {ns} property {TEMPLATE_PROPERTY}",
                        self.path.display()
                    ),
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        Ok(NamespaceDoc {
            properties,
            template,
            ..NamespaceDoc::default()
        })
    }

    /// Create a namespace with `doc`.
    pub fn create_namespace(&self, ns: &Namespace, doc: &NamespaceDoc) -> Result<()> {
        if self.namespace_exists(ns)? {
            return Err(Error::NamespaceExists {
                namespace: ns.to_string(),
            });
        }
        self.update_namespace(
            ns,
            &NamespaceUpdate {
                set: doc.properties.clone(),
                unset: vec![],
                template: Some(doc.template.clone()),
            },
        )
        .map(|_| ())
    }

    /// Apply a change to a namespace's properties, in one transaction.
    pub fn update_namespace(
        &self,
        ns: &Namespace,
        change: &NamespaceUpdate,
    ) -> Result<NamespaceDoc> {
        if let Some(Some(t)) = &change.template {
            t.validate()?;
        }
        let template_json = match &change.template {
            Some(Some(t)) => Some(Some(serde_json::to_string(t).map_err(|e| self.err(e))?)),
            Some(None) => Some(None),
            None => None,
        };
        {
            let mut conn = self.conn.lock().expect("sqlite connection lock poisoned");
            let tx = conn.transaction().map_err(|e| self.err(e))?;
            let ns_s = ns.to_string();
            let put = |k: &str, v: &str| {
                tx.execute(
                    "INSERT OR REPLACE INTO iceberg_namespace_properties VALUES (?1, ?2, ?3, ?4)",
                    params![self.name, ns_s, k, v],
                )
            };
            put("exists", "true").map_err(|e| self.err(e))?;
            for (k, v) in &change.set {
                put(k, v).map_err(|e| self.err(e))?;
            }
            let mut unset: Vec<&str> = change.unset.iter().map(String::as_str).collect();
            match &template_json {
                Some(Some(json)) => {
                    put(TEMPLATE_PROPERTY, json).map_err(|e| self.err(e))?;
                }
                Some(None) => unset.push(TEMPLATE_PROPERTY),
                None => {}
            }
            for k in unset {
                tx.execute(
                    "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ?1 AND namespace = ?2 AND property_key = ?3",
                    params![self.name, ns_s, k],
                )
                .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
        }
        self.describe_namespace(ns)
    }

    fn pointer(self: &Arc<Self>, ident: &TableIdent) -> Arc<dyn MetadataPointer> {
        Arc::new(SqlPointer {
            backend: self.clone(),
            namespace: ident.namespace().to_string(),
            table: ident.name().to_string(),
        })
    }

    /// Load a table through its row.
    pub async fn load_table(
        self: &Arc<Self>,
        warehouse: &Warehouse,
        ident: &TableIdent,
    ) -> Result<Table> {
        Ok(Table::load_pointed(warehouse, ident, self.pointer(ident)).await?)
    }

    /// Create a table: its first metadata file, then its row (a second creator of the same
    /// name finds the row taken: `TableExists`).
    pub async fn create_table(
        self: &Arc<Self>,
        warehouse: &Warehouse,
        ident: &TableIdent,
        definition: TableDefinition,
    ) -> Result<Table> {
        let location = warehouse.location(&ident.path());
        let metadata = Table::first_metadata(&location, definition)?;
        let metadata_location = pointer::new_metadata_location(&location, 0);
        Table::write_metadata_file(warehouse, &metadata_location, &metadata).await?;
        self.insert_row(ident, &metadata_location)?;
        self.load_table(warehouse, ident).await
    }

    fn insert_row(&self, ident: &TableIdent, metadata_location: &str) -> Result<()> {
        let inserted = self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO iceberg_tables VALUES (?1, ?2, ?3, ?4, NULL, 'TABLE')",
                params![
                    self.name,
                    ident.namespace().to_string(),
                    ident.name(),
                    metadata_location
                ],
            )
        })?;
        if inserted == 0 {
            return Err(floe_table_format::Error::TableExists {
                table: ident.to_string(),
                location: self.path.display().to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Register an existing table's metadata file under `ident` (no copy: the row points at it).
    pub async fn register_table(
        self: &Arc<Self>,
        warehouse: &Warehouse,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<Table> {
        Table::open_metadata(warehouse, metadata_location).await?;
        self.insert_row(ident, metadata_location)?;
        self.load_table(warehouse, ident).await
    }

    /// Delete a namespace's properties (the caller checked it holds no tables).
    pub fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        let n = self.with(|c| {
            c.execute(
                "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ?1 AND namespace = ?2",
                params![self.name, ns.to_string()],
            )
        })?;
        if n == 0 {
            return Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            });
        }
        Ok(())
    }

    /// Remove a table's row; returns its last metadata location.
    pub fn drop_table(&self, ident: &TableIdent) -> Result<String> {
        let location: Option<String> = self.with(|c| {
            c.query_row(
                "DELETE FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3 RETURNING metadata_location",
                params![self.name, ident.namespace().to_string(), ident.name()],
                |r| r.get(0),
            )
            .optional()
        })?;
        location.ok_or_else(|| {
            floe_table_format::Error::TableNotFound {
                table: ident.to_string(),
                location: self.path.display().to_string(),
            }
            .into()
        })
    }

    /// Rename a table: one UPDATE of its row (its files stay where they are).
    pub fn rename_table(&self, from: &TableIdent, to: &TableIdent) -> Result<()> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE iceberg_tables SET table_namespace = ?4, table_name = ?5
                 WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3
                 AND NOT EXISTS (SELECT 1 FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?4 AND table_name = ?5)",
                params![self.name, from.namespace().to_string(), from.name(), to.namespace().to_string(), to.name()],
            )
        })?;
        if changed == 1 {
            return Ok(());
        }
        if self.list_tables(to.namespace())?.contains(to) {
            return Err(floe_table_format::Error::TableExists {
                table: to.to_string(),
                location: self.path.display().to_string(),
            }
            .into());
        }
        Err(floe_table_format::Error::TableNotFound {
            table: from.to_string(),
            location: self.path.display().to_string(),
        }
        .into())
    }
}

/// One table's row, as the pointer its commits swap.
#[derive(Debug)]
struct SqlPointer {
    backend: Arc<SqlBackend>,
    namespace: String,
    table: String,
}

impl SqlPointer {
    fn fail(&self, e: rusqlite::Error) -> floe_table_format::Error {
        floe_table_format::Error::Catalog {
            catalog: self.backend.path.display().to_string(),
            reason: e.to_string(),
            retryable: is_busy(&e),
        }
    }
}

#[async_trait]
impl MetadataPointer for SqlPointer {
    async fn current(&self) -> floe_table_format::Result<Option<String>> {
        let conn = self
            .backend
            .conn
            .lock()
            .expect("sqlite connection lock poisoned");
        conn.query_row(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
            params![self.backend.name, self.namespace, self.table],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.fail(e))
    }

    async fn swap(&self, expected: &str, new: &str) -> floe_table_format::Result<bool> {
        let conn = self
            .backend
            .conn
            .lock()
            .expect("sqlite connection lock poisoned");
        match conn.execute(
            "UPDATE iceberg_tables SET metadata_location = ?5, previous_metadata_location = ?4
             WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3 AND metadata_location = ?4",
            params![self.backend.name, self.namespace, self.table, expected, new],
        ) {
            Ok(n) => Ok(n == 1),
            // SQLite statements are atomic: a busy database did not apply the UPDATE, so
            // this is a lost race (rebase and retry), never an ambiguous outcome.
            Err(e) if is_busy(&e) => Ok(false),
            Err(e) => Err(self.fail(e)),
        }
    }
}
