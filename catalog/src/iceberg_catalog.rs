//! iceberg's [`Catalog`] trait over Floe's catalog, so iceberg's `Transaction` and the
//! DataFusion integration (`IcebergCatalogProvider`, `INSERT INTO`) work unchanged.
//!
//! `update_table` checks the commit's requirements against the head, applies its updates,
//! and commits through the one commit driver ([`Table::commit`] with
//! [`ApplyUpdates`]), which re-checks the requirements on every head it rebases onto. A
//! requirement that fails after a rebase, or a race lost too often, is a retryable
//! `CatalogCommitConflicts` (iceberg's `Transaction` reloads and re-applies); an outcome
//! that cannot be established is a non-retryable error, so no blind retry can commit twice.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use iceberg::spec::SortOrder;
use iceberg::table::Table as IcebergTable;
use iceberg::{
    Catalog as IcebergCatalogTrait, ErrorKind, Namespace as IcebergNamespace, NamespaceIdent,
    TableCommit, TableCreation, TableIdent as IcebergTableIdent,
};
use object_store::ObjectStoreExt;

use floe_table_format::external::ApplyUpdates;
use floe_table_format::{
    Error as TableError, Namespace, RetryPolicy, Table, TableDefinition, TableIdent,
};

use crate::error::Error;
use crate::{Catalog, NamespaceDoc, NamespaceUpdate};

/// Floe's catalog behind iceberg's `Catalog` trait.
#[derive(Debug, Clone)]
pub struct IcebergCatalog {
    catalog: Catalog,
}

impl IcebergCatalog {
    /// Wrap a Floe catalog.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

fn to_iceberg(e: Error) -> iceberg::Error {
    use floe_table_format::Error as T;
    let retryable = e.is_retryable();
    let kind = match &e {
        Error::Table(T::TableNotFound { .. }) => ErrorKind::TableNotFound,
        Error::Table(T::TableExists { .. }) => ErrorKind::TableAlreadyExists,
        Error::NamespaceNotFound { .. } => ErrorKind::NamespaceNotFound,
        Error::NamespaceExists { .. } => ErrorKind::NamespaceAlreadyExists,
        Error::Table(T::InvalidName { .. }) | Error::Table(T::InvalidArgument { .. }) => {
            ErrorKind::DataInvalid
        }
        _ => ErrorKind::Unexpected,
    };
    iceberg::Error::new(kind, e.to_string())
        .with_retryable(retryable)
        .with_source(e)
}

fn table_err(e: floe_table_format::Error) -> iceberg::Error {
    to_iceberg(Error::Table(e))
}

fn namespace(ns: &NamespaceIdent) -> iceberg::Result<Namespace> {
    Namespace::new(ns.as_ref().iter().cloned()).map_err(table_err)
}

fn ident(t: &IcebergTableIdent) -> iceberg::Result<TableIdent> {
    TableIdent::new(namespace(t.namespace())?, t.name()).map_err(table_err)
}

fn ns_ident(ns: &Namespace) -> iceberg::Result<NamespaceIdent> {
    NamespaceIdent::from_strs(ns.parts())
}

#[async_trait]
impl IcebergCatalogTrait for IcebergCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        let parent = parent.map(namespace).transpose()?;
        let list = self
            .catalog
            .list_namespaces(parent.as_ref())
            .await
            .map_err(to_iceberg)?;
        list.iter().map(ns_ident).collect()
    }

    async fn create_namespace(
        &self,
        ns: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<IcebergNamespace> {
        let doc = NamespaceDoc {
            properties: properties.clone().into_iter().collect(),
            ..NamespaceDoc::default()
        };
        self.catalog
            .create_namespace(&namespace(ns)?, doc)
            .await
            .map_err(to_iceberg)?;
        Ok(IcebergNamespace::with_properties(ns.clone(), properties))
    }

    async fn get_namespace(&self, ns: &NamespaceIdent) -> iceberg::Result<IcebergNamespace> {
        let doc = self
            .catalog
            .describe_namespace(&namespace(ns)?)
            .await
            .map_err(to_iceberg)?;
        Ok(IcebergNamespace::with_properties(
            ns.clone(),
            doc.properties.into_iter().collect(),
        ))
    }

    async fn namespace_exists(&self, ns: &NamespaceIdent) -> iceberg::Result<bool> {
        self.catalog
            .namespace_exists(&namespace(ns)?)
            .await
            .map_err(to_iceberg)
    }

    async fn update_namespace(
        &self,
        ns: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        let change = NamespaceUpdate {
            set: properties.into_iter().collect::<BTreeMap<_, _>>(),
            ..NamespaceUpdate::default()
        };
        self.catalog
            .update_namespace(&namespace(ns)?, &change)
            .await
            .map_err(to_iceberg)?;
        Ok(())
    }

    async fn drop_namespace(&self, ns: &NamespaceIdent) -> iceberg::Result<()> {
        self.catalog
            .drop_namespace(&namespace(ns)?)
            .await
            .map_err(to_iceberg)
    }

    async fn list_tables(&self, ns: &NamespaceIdent) -> iceberg::Result<Vec<IcebergTableIdent>> {
        let tables = self
            .catalog
            .list_tables(&namespace(ns)?)
            .await
            .map_err(to_iceberg)?;
        Ok(tables.iter().map(TableIdent::to_iceberg).collect())
    }

    async fn create_table(
        &self,
        ns: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<IcebergTable> {
        let id = TableIdent::new(namespace(ns)?, creation.name.clone()).map_err(table_err)?;
        let expected = self.catalog.warehouse().location(&id.path());
        if let Some(loc) = &creation.location {
            if loc.trim_end_matches('/') != expected {
                return Err(iceberg::Error::new(
                    ErrorKind::DataInvalid,
                    format!("a Floe table lives at {expected}, not {loc}"),
                ));
            }
        }
        if creation
            .sort_order
            .as_ref()
            .is_some_and(|o| !o.is_unsorted() && o != &SortOrder::unsorted_order())
        {
            return Err(iceberg::Error::new(
                ErrorKind::FeatureUnsupported,
                "Floe tables are created unsorted (sort orders are not supported yet)",
            ));
        }
        let definition = TableDefinition {
            schema: creation.schema,
            partition: creation.partition_spec.unwrap_or_default(),
            properties: creation.properties,
        };
        let table = self
            .catalog
            .create_table(&id, definition)
            .await
            .map_err(to_iceberg)?;
        table.iceberg().map_err(table_err)
    }

    async fn load_table(&self, t: &IcebergTableIdent) -> iceberg::Result<IcebergTable> {
        let table = self
            .catalog
            .load_table(&ident(t)?)
            .await
            .map_err(to_iceberg)?;
        table.iceberg().map_err(table_err)
    }

    async fn drop_table(&self, t: &IcebergTableIdent) -> iceberg::Result<()> {
        self.catalog
            .drop_table(&ident(t)?, false)
            .await
            .map(|_| ())
            .map_err(to_iceberg)
    }

    async fn purge_table(&self, t: &IcebergTableIdent) -> iceberg::Result<()> {
        self.catalog
            .drop_table(&ident(t)?, true)
            .await
            .map(|_| ())
            .map_err(to_iceberg)
    }

    async fn table_exists(&self, t: &IcebergTableIdent) -> iceberg::Result<bool> {
        match self.catalog.load_table(&ident(t)?).await {
            Ok(_) => Ok(true),
            Err(Error::Table(floe_table_format::Error::TableNotFound { .. })) => Ok(false),
            Err(e) => Err(to_iceberg(e)),
        }
    }

    async fn rename_table(
        &self,
        src: &IcebergTableIdent,
        dest: &IcebergTableIdent,
    ) -> iceberg::Result<()> {
        self.catalog
            .rename_table(&ident(src)?, &ident(dest)?)
            .await
            .map_err(to_iceberg)
    }

    async fn register_table(
        &self,
        t: &IcebergTableIdent,
        metadata_location: String,
    ) -> iceberg::Result<IcebergTable> {
        let table = self
            .catalog
            .register_table(&ident(t)?, &metadata_location)
            .await
            .map_err(to_iceberg)?;
        table.iceberg().map_err(table_err)
    }

    async fn update_table(&self, mut commit: TableCommit) -> iceberg::Result<IcebergTable> {
        let id = ident(commit.identifier())?;
        let mut table: Table = self.catalog.load_table(&id).await.map_err(to_iceberg)?;
        let mut action = ApplyUpdates::new(commit.take_requirements(), commit.take_updates());
        let commit_id = uuid::Uuid::new_v4().to_string();
        match table
            .commit(&commit_id, &RetryPolicy::default(), &mut action)
            .await
        {
            Ok(_) => table.iceberg().map_err(table_err),
            Err(TableError::RequirementFailed {
                reason,
                after_rebase,
                ..
            }) => Err(if after_rebase {
                iceberg::Error::new(
                    ErrorKind::CatalogCommitConflicts,
                    format!("{id}: another writer committed first ({reason})"),
                )
                .with_retryable(true)
            } else {
                iceberg::Error::new(ErrorKind::DataInvalid, format!("{id}: {reason}"))
            }),
            Err(e @ TableError::CommitConflict { .. }) => Err(iceberg::Error::new(
                ErrorKind::CatalogCommitConflicts,
                e.to_string(),
            )
            .with_retryable(true)),
            // Never blindly retried: iceberg's Transaction would rebuild and could commit twice.
            Err(e @ TableError::CommitUnknown { .. }) => Err(iceberg::Error::new(
                ErrorKind::Unexpected,
                format!("{e}; reload before retrying"),
            )),
            Err(e) => Err(table_err(e)),
        }
    }
}

impl Catalog {
    /// Delete an empty namespace's own object (its properties and template). Refused while
    /// it holds tables or namespaces.
    pub async fn drop_namespace(&self, ns: &Namespace) -> crate::Result<()> {
        if let Some(sql) = self.sql_backend() {
            if !sql.list_tables(ns)?.is_empty() || !sql.list_namespaces(Some(ns))?.is_empty() {
                return Err(floe_table_format::Error::InvalidArgument {
                    argument: format!("namespace {ns}"),
                    reason: "it is not empty (drop its tables and namespaces first)".into(),
                }
                .into());
            }
            return sql.drop_namespace(ns);
        }
        if !self.list_tables(ns).await?.is_empty()
            || !self.list_namespaces(Some(ns)).await?.is_empty()
        {
            return Err(floe_table_format::Error::InvalidArgument {
                argument: format!("namespace {ns}"),
                reason: "it is not empty (drop its tables and namespaces first)".into(),
            }
            .into());
        }
        let dir = self.warehouse.location(&format!("{}/.floe", ns.path()));
        let objects = self.warehouse.list_all(&dir).await?;
        if objects.is_empty() && !self.namespace_exists(ns).await? {
            return Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            });
        }
        for o in objects {
            match self.warehouse.store().delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(floe_table_format::Error::Write {
                        location: o.location.to_string(),
                        source,
                    }
                    .into())
                }
            }
        }
        Ok(())
    }
}
