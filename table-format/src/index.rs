//! The namespace table index (spec: catalog.md, "The table index").
//!
//! Each table of a warehouse namespace has one marker object,
//! `<ns>/.floe/tables/<table>/<digest>`, where `<digest>` names the table's current schema,
//! stored once per namespace as `<ns>/.floe/schemas/<digest>.json` (the Iceberg schema
//! JSON; the name is the SHA-256 of that JSON, so the object never changes and is written
//! create-only). So:
//! - listing a namespace's tables is one paginated LIST of `.floe/tables/`, not a request
//!   per table folder;
//! - the fleet view's columns come from the few distinct schemas, without reading any
//!   table's metadata, so a query filtered on `device` reads nothing of the other tables.
//!
//! A table's creator writes the marker after winning `v1`; a commit that changes the
//! current schema moves it; a drop deletes it first. A writer that crashes between `v1`
//! and its marker leaves a gap: listing compares the index with one LIST of the
//! namespace's folders and classifies the folders the index lacks the old way, and
//! [`repair`] (`floe check NS`) writes the missing markers and removes stale ones.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use iceberg::spec::Schema;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use sha2::{Digest, Sha256};

use crate::{Error, Namespace, Result, TableIdent, Warehouse};

/// The index folder of a namespace, relative to the warehouse.
fn tables_folder(ns: &Namespace) -> String {
    format!("{}/.floe/tables", ns.path())
}

/// The folder of a table's markers.
fn markers_of(warehouse: &Warehouse, table: &TableIdent) -> String {
    warehouse.location(&format!(
        "{}/{}",
        tables_folder(table.namespace()),
        table.name()
    ))
}

fn schema_relative(ns: &Namespace, digest: &str) -> String {
    format!("{}/.floe/schemas/{digest}.json", ns.path())
}

/// The digest naming a schema: hex SHA-256 of its Iceberg JSON (first 32 digits).
pub fn digest(schema: &Schema) -> Result<(String, Vec<u8>)> {
    let body = serde_json::to_vec(schema).map_err(|e| Error::InvalidArgument {
        argument: "schema".into(),
        reason: format!("cannot serialize: {e}"),
    })?;
    let hash = format!("{:x}", Sha256::digest(&body));
    Ok((hash[..32].to_string(), body))
}

/// One table of the index: its name and the digest of its current schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The table's name in the namespace.
    pub name: String,
    /// The digest of its current schema (see [`read_schema`]).
    pub digest: String,
}

/// Every table of the index, by name (one paginated LIST). A table with two markers (a
/// schema change cut short) has both digests; readers take the union.
pub async fn list(warehouse: &Warehouse, ns: &Namespace) -> Result<BTreeMap<String, Vec<String>>> {
    let location = warehouse.location(&tables_folder(ns));
    let prefix = warehouse.object_path(&location)?;
    let objects: Vec<object_store::ObjectMeta> = warehouse
        .store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| Error::List {
            location: location.clone(),
            source,
        })?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objects {
        let Some(rest) = o.location.as_ref().strip_prefix(&format!("{prefix}/")) else {
            continue;
        };
        if let Some((name, digest)) = rest.split_once('/') {
            if !digest.contains('/') && crate::ident::validate_name(name).is_ok() {
                out.entry(name.to_string())
                    .or_default()
                    .push(digest.to_string());
            }
        }
    }
    Ok(out)
}

/// The schema a digest names.
pub async fn read_schema(warehouse: &Warehouse, ns: &Namespace, digest: &str) -> Result<Schema> {
    let location = warehouse.location(&schema_relative(ns, digest));
    let path = warehouse.object_path(&location)?;
    let bytes = warehouse
        .store()
        .get(&path)
        .await
        .map_err(|source| Error::Read {
            location: location.clone(),
            source,
        })?
        .bytes()
        .await
        .map_err(|source| Error::Read {
            location: location.clone(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMetadata {
        location,
        reason: e.to_string(),
    })
}

/// Record `table` in its namespace's index with `schema`: the schema object (create-only,
/// kept if present), the marker, then the removal of the table's other markers.
pub async fn record(warehouse: &Warehouse, table: &TableIdent, schema: &Schema) -> Result<()> {
    let ns = table.namespace();
    let (digest, body) = digest(schema)?;
    let store = warehouse.store();
    let schema_location = warehouse.location(&schema_relative(ns, &digest));
    match store
        .put_opts(
            &warehouse.object_path(&schema_location)?,
            body.into(),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(source) => {
            return Err(Error::Write {
                location: schema_location,
                source,
            })
        }
    }
    let folder = markers_of(warehouse, table);
    let marker = format!("{folder}/{digest}");
    store
        .put(&warehouse.object_path(&marker)?, bytes::Bytes::new().into())
        .await
        .map_err(|source| Error::Write {
            location: marker.clone(),
            source,
        })?;
    for old in warehouse.list_all(&folder).await? {
        if old.location.filename() != Some(digest.as_str()) {
            delete(warehouse, &old.location).await?;
        }
    }
    Ok(())
}

/// Remove `table` from its namespace's index (every marker it has).
pub async fn remove(warehouse: &Warehouse, table: &TableIdent) -> Result<()> {
    let folder = markers_of(warehouse, table);
    for old in warehouse.list_all(&folder).await? {
        delete(warehouse, &old.location).await?;
    }
    Ok(())
}

async fn delete(warehouse: &Warehouse, path: &object_store::path::Path) -> Result<()> {
    match warehouse.store().delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::Write {
            location: path.to_string(),
            source,
        }),
    }
}

/// Record a table after its creation, or after a commit that changed its current schema.
/// Best effort: the table is already committed, and a missing or stale marker is a gap
/// that listing tolerates and [`repair`] fixes, so a failure is a warning.
pub async fn record_quietly(warehouse: &Warehouse, table: &TableIdent, schema: &Schema) {
    if let Err(e) = record(warehouse, table, schema).await {
        tracing::warn!(table = %table, error = %e, "the namespace index was not updated (floe check repairs it)");
    }
}

/// What [`repair`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Tables that had no marker, or one naming another schema (now recorded).
    pub recorded: Vec<String>,
    /// Markers of tables that no longer exist (now removed).
    pub removed: Vec<String>,
}

/// Bring a namespace's index in line with its tables: `tables` are the namespace's tables
/// (found by classifying its folders) with their current schemas.
pub async fn repair(
    warehouse: &Warehouse,
    ns: &Namespace,
    tables: &[(TableIdent, Schema)],
) -> Result<Repair> {
    let index = list(warehouse, ns).await?;
    let mut report = Repair::default();
    for (ident, schema) in tables {
        let (want, _) = digest(schema)?;
        if index.get(ident.name()).map(Vec::as_slice) != Some(std::slice::from_ref(&want)) {
            record(warehouse, ident, schema).await?;
            report.recorded.push(ident.name().to_string());
        }
    }
    for name in index.keys() {
        if !tables.iter().any(|(t, _)| t.name() == name) {
            remove(warehouse, &TableIdent::new(ns.clone(), name.clone())?).await?;
            report.removed.push(name.clone());
        }
    }
    Ok(report)
}
