//! Namespace objects: properties and the table template of a namespace.
//!
//! One small JSON object per version, `<ns>/.floe/namespace/v{N}.json`, created
//! create-only like table metadata, so concurrent updates are never lost: an updater
//! that loses the race re-reads the newest version, re-applies its change and tries the
//! next number. The `.floe` folder is not a valid name, so listings never mistake it for a
//! table or a namespace.

use std::collections::BTreeMap;

use iceberg::spec::Schema;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use floe_table_format::schema::parse_partition_spec;
use floe_table_format::version::parse_number;
use floe_table_format::{Namespace, TableDefinition, Warehouse};

use crate::error::{Error, Result};

/// The format tag of namespace objects.
pub const NAMESPACE_FORMAT: &str = "floe-namespace/1";
/// Most attempts at one namespace update.
const MAX_UPDATE_ATTEMPTS: u32 = 20;

/// How new device tables in a namespace are defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableTemplate {
    /// The schema (Iceberg schema JSON).
    pub schema: Schema,
    /// Partition expression, e.g. `day(ts)`; empty for none.
    #[serde(rename = "partition-spec", default)]
    pub partition: String,
    /// Table properties of new tables.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl TableTemplate {
    /// Check the template is usable (the partition expression fits the schema).
    pub fn validate(&self) -> Result<()> {
        parse_partition_spec(&self.partition, &self.schema)?;
        Ok(())
    }

    /// The definition of a new table from this template.
    pub fn definition(&self) -> Result<TableDefinition> {
        Ok(TableDefinition {
            schema: self.schema.clone(),
            partition: parse_partition_spec(&self.partition, &self.schema)?,
            properties: self.properties.clone().into_iter().collect(),
        })
    }
}

/// A namespace's properties and template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceDoc {
    /// Always [`NAMESPACE_FORMAT`].
    pub format: String,
    /// Free-form properties (description, owner, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The template of new device tables, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TableTemplate>,
}

impl Default for NamespaceDoc {
    fn default() -> Self {
        Self {
            format: NAMESPACE_FORMAT.to_string(),
            properties: BTreeMap::new(),
            template: None,
        }
    }
}

/// A change to a namespace.
#[derive(Debug, Clone, Default)]
pub struct NamespaceUpdate {
    /// Properties to set.
    pub set: BTreeMap<String, String>,
    /// Properties to remove.
    pub unset: Vec<String>,
    /// `Some(Some(t))` sets the template, `Some(None)` removes it.
    pub template: Option<Option<TableTemplate>>,
}

fn folder(warehouse: &Warehouse, ns: &Namespace) -> String {
    warehouse.location(&format!("{}/.floe/namespace", ns.path()))
}

/// The newest version of a namespace object: (version, doc), or None if there is none.
pub async fn read(warehouse: &Warehouse, ns: &Namespace) -> Result<Option<(u64, NamespaceDoc)>> {
    let dir = folder(warehouse, ns);
    let listed = warehouse.list_all(&dir).await?;
    let newest = listed
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            parse_number(name.strip_prefix('v')?.strip_suffix(".json")?)
        })
        .max();
    let Some(v) = newest else { return Ok(None) };
    let location = format!("{dir}/v{v}.json");
    let bytes = warehouse
        .store()
        .get(&warehouse.object_path(&location)?)
        .await
        .map_err(|source| floe_table_format::Error::Read {
            location: location.clone(),
            source,
        })?
        .bytes()
        .await
        .map_err(|source| floe_table_format::Error::Read {
            location: location.clone(),
            source,
        })?;
    let doc: NamespaceDoc =
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptNamespace {
            location: location.clone(),
            reason: e.to_string(),
        })?;
    if doc.format != NAMESPACE_FORMAT {
        return Err(Error::CorruptNamespace {
            location,
            reason: format!("unknown format '{}'", doc.format),
        });
    }
    Ok(Some((v, doc)))
}

/// Create version `v` create-only; false if another writer took that number first.
async fn create_version(
    warehouse: &Warehouse,
    ns: &Namespace,
    v: u64,
    doc: &NamespaceDoc,
) -> Result<bool> {
    let location = format!("{}/v{v}.json", folder(warehouse, ns));
    let body = serde_json::to_vec_pretty(doc).map_err(|e| Error::CorruptNamespace {
        location: location.clone(),
        reason: e.to_string(),
    })?;
    match warehouse
        .store()
        .put_opts(
            &warehouse.object_path(&location)?,
            body.into(),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(source) => Err(floe_table_format::Error::Write { location, source }.into()),
    }
}

/// Write the first version; false if the namespace object already exists.
pub async fn create(warehouse: &Warehouse, ns: &Namespace, doc: &NamespaceDoc) -> Result<bool> {
    if read(warehouse, ns).await?.is_some() {
        return Ok(false);
    }
    create_version(warehouse, ns, 1, doc).await
}

/// Apply `update` on top of the newest version (or an empty doc), retrying on races.
pub async fn update(
    warehouse: &Warehouse,
    ns: &Namespace,
    change: &NamespaceUpdate,
) -> Result<NamespaceDoc> {
    if let Some(Some(t)) = &change.template {
        t.validate()?;
    }
    for attempt in 0..MAX_UPDATE_ATTEMPTS {
        let (v, mut doc) = read(warehouse, ns)
            .await?
            .unwrap_or((0, NamespaceDoc::default()));
        for (k, val) in &change.set {
            doc.properties.insert(k.clone(), val.clone());
        }
        for k in &change.unset {
            doc.properties.remove(k);
        }
        if let Some(t) = &change.template {
            doc.template = t.clone();
        }
        // `v` comes from an object name: at u64::MAX there is no next version.
        let next = v
            .checked_add(1)
            .ok_or_else(|| floe_table_format::Error::Exhausted {
                location: format!("{}/v{v}.json", folder(warehouse, ns)),
                what: "the namespace version number".into(),
                value: v.to_string(),
            })?;
        if create_version(warehouse, ns, next, &doc).await? {
            return Ok(doc);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(6))).await;
    }
    Err(Error::NamespaceConflict {
        namespace: ns.to_string(),
        attempts: MAX_UPDATE_ATTEMPTS,
    })
}
