//! A Floe namespace as a DataFusion schema, resolving names lazily.
//!
//! Names a query may use in a namespace:
//! - `dev_0042`: the table's current snapshot (its head is read when the query is planned);
//! - `"dev_0042@5761234567890"`: as of a snapshot id;
//! - `"dev_0042@2026-11-20T10:00:00Z"` (or `@2026-11-20 10:00:00`, `@2026-11-20`, UTC):
//!   as of a time, the snapshot that was current then;
//! - `"dev_0042$snapshots"`, `$history`, `$manifests`, `$files` (also after `@…`);
//! - `all_devices` (and `"all_devices@TIME"`): every table, with a `device` column.
//!
//! Table names are lowercase `[a-z0-9_-]`, so `@` and `$` never clash with a real name.

use std::any::Any;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::TableProvider;
use futures::{stream, StreamExt, TryStreamExt};

use floe_catalog::Catalog;
use floe_table_format::{Namespace, TableIdent};

use crate::metadata::{metadata_table, MetadataTable};
use crate::provider::{FleetMember, FleetProvider, FloeTableProvider, MemberLoader};
use crate::tables::TableCache;
use crate::{ScanOptions, Scope, ALL_DEVICES};

/// Tables loaded at once for a fleet view.
const LOAD_CONCURRENCY: usize = 16;

/// When to read a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The current snapshot.
    Current,
    /// A snapshot id.
    Snapshot(i64),
    /// The snapshot current at this time (milliseconds since the epoch).
    Time(i64),
}

/// A name as a query wrote it, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The table (or `all_devices`).
    pub base: String,
    /// When.
    pub as_of: AsOf,
    /// A metadata table instead of the data.
    pub metadata: Option<MetadataTable>,
}

impl TableName {
    /// Parse `base[@when][$metadata]`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let (rest, metadata) = match name.split_once('$') {
            Some((rest, m)) => (
                rest,
                Some(MetadataTable::parse(m).ok_or_else(|| {
                    format!(
                        "unknown metadata table `${m}` in `{name}` \
                         (snapshots, history, manifests or files)"
                    )
                })?),
            ),
            None => (name, None),
        };
        let (base, as_of) = match rest.split_once('@') {
            Some((base, when)) => (base, parse_as_of(when).map_err(|e| format!("{name}: {e}"))?),
            None => (rest, AsOf::Current),
        };
        Ok(Self {
            base: base.to_string(),
            as_of,
            metadata,
        })
    }
}

fn parse_as_of(when: &str) -> Result<AsOf, String> {
    if let Ok(id) = when.parse::<i64>() {
        return Ok(AsOf::Snapshot(id));
    }
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(when) {
        return Ok(AsOf::Time(t.timestamp_millis()));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(when, format) {
            return Ok(AsOf::Time(t.and_utc().timestamp_millis()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(when, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(AsOf::Time(t.and_utc().timestamp_millis()));
    }
    Err(format!(
        "`@{when}` is neither a snapshot id nor a time like 2026-11-20T10:00:00Z"
    ))
}

/// The snapshot of `table` to read for `as_of`; `Ok(None)` when the table had no snapshot
/// then (or has none at all).
fn resolve(label: &str, table: &iceberg::table::Table, as_of: AsOf) -> DFResult<Option<i64>> {
    let metadata = table.metadata();
    match as_of {
        AsOf::Current => Ok(metadata.current_snapshot().map(|s| s.snapshot_id())),
        AsOf::Snapshot(id) => match metadata.snapshot_by_id(id) {
            Some(_) => Ok(Some(id)),
            None => Err(DataFusionError::Plan(format!(
                "{label} has no snapshot {id} (never existed, or expired)"
            ))),
        },
        AsOf::Time(ms) => {
            let entry = metadata
                .history()
                .iter()
                .rfind(|e| e.timestamp_ms <= ms)
                .map(|e| e.snapshot_id);
            match entry {
                Some(id) if metadata.snapshot_by_id(id).is_some() => Ok(Some(id)),
                Some(id) => Err(DataFusionError::Plan(format!(
                    "{label}: snapshot {id}, current at that time, has expired"
                ))),
                None => Ok(None),
            }
        }
    }
}

/// One namespace of the catalog as a DataFusion schema.
#[derive(Debug)]
pub struct NamespaceSchema {
    catalog: Arc<Catalog>,
    namespace: Namespace,
    options: ScanOptions,
    /// What the session may see (None: everything).
    scope: Option<Arc<dyn Scope>>,
    /// iceberg tables by metadata location, kept across queries.
    tables: Arc<TableCache>,
    /// Table names from the last listing (for `SHOW TABLES`); listed on first use.
    names: Mutex<Vec<String>>,
}

impl NamespaceSchema {
    /// A schema over `namespace`; its tables are listed by [`Self::list`] or a fleet view.
    pub fn new(
        catalog: Arc<Catalog>,
        namespace: Namespace,
        options: ScanOptions,
        scope: Option<Arc<dyn Scope>>,
        tables: Arc<TableCache>,
    ) -> Self {
        Self {
            catalog,
            namespace,
            options,
            scope,
            tables,
            names: Mutex::new(Vec::new()),
        }
    }

    /// List the namespace's tables (for `SHOW TABLES` and `information_schema`).
    pub async fn list(&self) -> crate::Result<()> {
        let idents = self.catalog.list_tables(&self.namespace).await?;
        let names = self
            .readable(idents)
            .into_iter()
            .map(|t| t.name().to_string())
            .collect();
        if let Ok(mut n) = self.names.lock() {
            *n = names;
        }
        Ok(())
    }

    /// The tables of a listing the scope lets the session read.
    fn readable(&self, idents: Vec<TableIdent>) -> Vec<TableIdent> {
        match &self.scope {
            None => idents,
            Some(scope) => idents.into_iter().filter(|t| scope.reads(t)).collect(),
        }
    }

    /// Refuse a name the scope does not let the session read, existing or not.
    fn check_readable(&self, name: &str) -> DFResult<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        match TableIdent::new(self.namespace.clone(), name) {
            Ok(ident) if scope.reads(&ident) => Ok(()),
            _ => Err(DataFusionError::Plan(format!(
                "permission denied for table {}",
                self.label(name)
            ))),
        }
    }

    fn label(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    async fn load(&self, name: &str) -> DFResult<Option<iceberg::table::Table>> {
        load_table(&self.catalog, &self.tables, &self.namespace, name).await
    }

    async fn fleet(&self, as_of: AsOf) -> DFResult<Arc<dyn TableProvider>> {
        if let AsOf::Snapshot(_) = as_of {
            return Err(DataFusionError::Plan(format!(
                "{}: a fleet view can be read as of a time, not a snapshot id",
                self.label(ALL_DEVICES)
            )));
        }
        // The index gives each table's schema without reading the table: those tables are
        // loaded by the scan, and only if its filters on `device` keep them. Time travel
        // needs each table's history, so it loads them all here.
        let listed: Vec<(TableIdent, Option<Arc<iceberg::spec::Schema>>)> = self
            .catalog
            .list_tables_indexed(&self.namespace)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .into_iter()
            .filter(|(t, _)| self.scope.as_ref().is_none_or(|s| s.reads(t)))
            .collect();
        if let Ok(mut names) = self.names.lock() {
            *names = listed.iter().map(|(t, _)| t.name().to_string()).collect();
        }
        let members: Vec<Option<FleetMember>> = stream::iter(listed)
            .map(|(ident, indexed)| async move {
                let name = ident.name().to_string();
                if let (AsOf::Current, Some(schema)) = (as_of, indexed) {
                    let schema = iceberg::arrow::schema_to_arrow_schema(&schema)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    return Ok(Some(FleetMember {
                        name: name.into(),
                        table: None,
                        snapshot_id: None,
                        schema: Arc::new(schema),
                    }));
                }
                let Some(table) = self.load(&name).await? else {
                    return Ok(None); // dropped since the listing
                };
                let label = self.label(&name);
                let Some(snapshot_id) = resolve(&label, &table, as_of)? else {
                    return Ok(None); // no data (yet, or at that time)
                };
                let provider = FloeTableProvider::try_new(
                    label,
                    table.clone(),
                    Some(snapshot_id),
                    self.options,
                )?;
                Ok::<_, DataFusionError>(Some(FleetMember {
                    name: name.into(),
                    table: Some(table),
                    snapshot_id: Some(snapshot_id),
                    schema: provider.schema(),
                }))
            })
            .buffered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        let loader = Arc::new(Loader {
            catalog: self.catalog.clone(),
            tables: self.tables.clone(),
            namespace: self.namespace.clone(),
        });
        Ok(Arc::new(FleetProvider::try_new(
            self.label(ALL_DEVICES),
            members.into_iter().flatten().collect(),
            self.options,
            Some(loader),
        )?))
    }
}

/// Load `namespace.name` as an iceberg table; None when it does not exist.
async fn load_table(
    catalog: &Catalog,
    tables: &TableCache,
    namespace: &Namespace,
    name: &str,
) -> DFResult<Option<iceberg::table::Table>> {
    let Ok(ident) = TableIdent::new(namespace.clone(), name) else {
        return Ok(None);
    };
    match catalog.load_table(&ident).await {
        Ok(t) => Ok(Some(
            tables
                .get_or_open(t.metadata_location(), || t.iceberg())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        )),
        Err(floe_catalog::Error::Table(floe_table_format::Error::TableNotFound { .. })) => Ok(None),
        Err(e) => Err(DataFusionError::External(
            format!("load {namespace}.{name}: {e}").into(),
        )),
    }
}

/// Loads the fleet members a scan keeps (see [`MemberLoader`]).
#[derive(Debug)]
struct Loader {
    catalog: Arc<Catalog>,
    tables: Arc<TableCache>,
    namespace: Namespace,
}

#[async_trait]
impl MemberLoader for Loader {
    async fn load(&self, name: &str) -> DFResult<Option<(iceberg::table::Table, i64)>> {
        let Some(table) = load_table(&self.catalog, &self.tables, &self.namespace, name).await?
        else {
            return Ok(None);
        };
        let snapshot = table.metadata().current_snapshot().map(|s| s.snapshot_id());
        Ok(snapshot.map(|id| (table, id)))
    }
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        names.push(ALL_DEVICES.to_string());
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let parsed = TableName::parse(name).map_err(DataFusionError::Plan)?;
        if parsed.base == ALL_DEVICES {
            if parsed.metadata.is_some() {
                return Err(DataFusionError::Plan(format!(
                    "{}: metadata tables are per device table",
                    self.label(name)
                )));
            }
            return self.fleet(parsed.as_of).await.map(Some);
        }
        self.check_readable(&parsed.base)?;
        let Some(table) = self.load(&parsed.base).await? else {
            return Ok(None);
        };
        let label = self.label(&parsed.base);
        let snapshot_id = match parsed.as_of {
            AsOf::Current => None,
            other => Some(resolve(&label, &table, other)?.ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{label} had no snapshot at {}",
                    name.split_once('@').map_or(name, |(_, when)| when)
                ))
            })?),
        };
        let label = match parsed.as_of {
            AsOf::Current => label,
            _ => format!("{label}@{}", snapshot_id.unwrap_or_default()),
        };
        if let Some(kind) = parsed.metadata {
            return metadata_table(&label, &table, snapshot_id, kind)
                .await
                .map(Some);
        }
        Ok(Some(Arc::new(FloeTableProvider::try_new(
            label,
            table,
            snapshot_id,
            self.options,
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        let base = TableName::parse(name).map(|n| n.base).unwrap_or_default();
        base == ALL_DEVICES
            || self
                .names
                .lock()
                .map(|n| n.contains(&base))
                .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_table_time_and_metadata() {
        let n = TableName::parse("dev_1@123$files").unwrap();
        assert_eq!(n.base, "dev_1");
        assert_eq!(n.as_of, AsOf::Snapshot(123));
        assert_eq!(n.metadata, Some(MetadataTable::Files));
        let n = TableName::parse("all_devices@2026-11-20T10:00:00Z").unwrap();
        assert_eq!(n.as_of, AsOf::Time(1_795_168_800_000));
        assert_eq!(
            TableName::parse("dev_1@2026-11-20").unwrap().as_of,
            AsOf::Time(1_795_132_800_000)
        );
        assert!(TableName::parse("dev_1$nope").is_err());
        assert!(TableName::parse("dev_1@yesterday").is_err());
    }
}
