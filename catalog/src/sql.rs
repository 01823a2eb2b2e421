//! Publishing the catalog as an SQLite database in the Iceberg SQL-catalog schema, the one
//! pyiceberg's `SqlCatalog` and the Java JDBC catalog read: `iceberg_tables` (one row per
//! table, pointing at its current metadata file) and `iceberg_namespace_properties`.
//!
//! A publish is a snapshot of the warehouse: rows of this catalog name are upserted (the
//! old location moves to `previous_metadata_location`), rows of tables that no longer
//! exist are deleted, and all of it happens in one SQLite transaction.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::Catalog;

/// The tables of the Iceberg SQL-catalog schema (as pyiceberg 0.12 and the Java JDBC
/// catalog create them).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);
CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000) NOT NULL,
    PRIMARY KEY (catalog_name, namespace, property_key)
);";

/// What a publish wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Namespaces published.
    pub namespaces: usize,
    /// Tables published.
    pub tables: usize,
    /// Rows of tables that no longer exist, removed.
    pub removed: usize,
}

fn sql_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Sql {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Publish every namespace and table of `catalog` into the SQLite file at `path`, under
/// `catalog_name` (the name a reader must open the catalog with).
pub async fn publish(catalog: &Catalog, path: &Path, catalog_name: &str) -> Result<PublishReport> {
    // Gather first (async, from the store), then write in one transaction.
    let mut namespaces = Vec::new();
    let mut tables = Vec::new();
    for ns in catalog.list_all_namespaces().await? {
        let doc = catalog.describe_namespace(&ns).await?;
        namespaces.push((ns.to_string(), doc));
        for ident in catalog.list_tables(&ns).await? {
            let table = catalog.load_table(&ident).await?;
            tables.push((
                ident.namespace().to_string(),
                ident.name().to_string(),
                table.metadata_location().to_string(),
            ));
        }
    }
    let mut conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
    let tx = conn.transaction().map_err(|e| sql_err(path, e))?;
    tx.execute_batch(SCHEMA).map_err(|e| sql_err(path, e))?;
    for (ns, doc) in &namespaces {
        tx.execute(
            "INSERT OR REPLACE INTO iceberg_namespace_properties VALUES (?1, ?2, 'exists', 'true')",
            params![catalog_name, ns],
        )
        .map_err(|e| sql_err(path, e))?;
        for (k, v) in &doc.properties {
            tx.execute(
                "INSERT OR REPLACE INTO iceberg_namespace_properties VALUES (?1, ?2, ?3, ?4)",
                params![catalog_name, ns, k, v],
            )
            .map_err(|e| sql_err(path, e))?;
        }
    }
    for (ns, name, location) in &tables {
        tx.execute(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type)
             VALUES (?1, ?2, ?3, ?4, NULL, 'TABLE')
             ON CONFLICT (catalog_name, table_namespace, table_name) DO UPDATE SET
               previous_metadata_location = iceberg_tables.metadata_location,
               metadata_location = excluded.metadata_location
             WHERE iceberg_tables.metadata_location IS NOT excluded.metadata_location",
            params![catalog_name, ns, name, location],
        )
        .map_err(|e| sql_err(path, e))?;
    }
    let present: BTreeSet<(String, String)> = tables
        .iter()
        .map(|(ns, n, _)| (ns.clone(), n.clone()))
        .collect();
    let existing: Vec<(String, String)> = {
        let mut stmt = tx
            .prepare(
                "SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = ?1",
            )
            .map_err(|e| sql_err(path, e))?;
        let rows = stmt
            .query_map(params![catalog_name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| sql_err(path, e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| sql_err(path, e))?
    };
    let mut removed = 0;
    for key in existing.into_iter().filter(|k| !present.contains(k)) {
        removed += tx
            .execute(
                "DELETE FROM iceberg_tables WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
                params![catalog_name, key.0, key.1],
            )
            .map_err(|e| sql_err(path, e))?;
    }
    tx.commit().map_err(|e| sql_err(path, e))?;
    Ok(PublishReport {
        namespaces: namespaces.len(),
        tables: tables.len(),
        removed,
    })
}
