//! Listing the warehouse's folders: namespaces and tables (spec: catalog.md, "Tables and
//! namespaces are folders" and "The table index").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use iceberg::spec::Schema;
use object_store::path::Path;
use object_store::ListResult;
use object_store::ObjectStoreExt;

use floe_table_format::ident::validate_name;
use floe_table_format::{index, version};
use floe_table_format::{Namespace, Table, TableIdent};

use crate::{Catalog, Error, FolderKind, Result, LIST_CONCURRENCY};

/// A namespace's table index: each table's schema digests.
type Index = BTreeMap<String, Vec<String>>;

impl Catalog {
    /// Sub-folders of a relative prefix whose names are valid Floe names (anything else in
    /// the warehouse — a `.crc` file, a foreign folder — is not Floe's and is skipped).
    async fn children(&self, relative: &str) -> Result<Vec<String>> {
        let listed = self.list_folder(&self.warehouse.location(relative)).await?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// One delimiter LIST of the folder at `location`.
    async fn list_folder(&self, location: &str) -> Result<ListResult> {
        let prefix: Path = self.warehouse.object_path(location)?;
        Ok(self
            .warehouse
            .store()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|source| floe_table_format::Error::List {
                location: location.to_string(),
                source,
            })?)
    }

    async fn kind(&self, relative: &str) -> Result<FolderKind> {
        let location = self.warehouse.location(relative);
        let store = self.warehouse.store();
        // Fast path, one HEAD: every Floe table has a version hint (a drop deletes it
        // first). Without one, look closer.
        let hint = self
            .warehouse
            .object_path(&version::hint_location(&location))?;
        match store.head(&hint).await {
            Ok(_) => return Ok(FolderKind::Table),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(floe_table_format::Error::Read {
                    location: version::hint_location(&location),
                    source,
                }
                .into())
            }
        }
        let listed = self.list_folder(&location).await?;
        let has = |name: &str| {
            listed
                .common_prefixes
                .iter()
                .any(|p| p.filename() == Some(name))
        };
        if has("metadata") {
            // Versions decide (local file systems keep empty folders after a drop).
            if !version::list_versions(&self.warehouse, &location)
                .await?
                .is_empty()
            {
                return Ok(FolderKind::Table);
            }
            return Ok(FolderKind::Remains);
        }
        if has("data") {
            return Ok(FolderKind::Remains);
        }
        Ok(FolderKind::Namespace)
    }

    /// The index of the namespace at `relative` (empty at the warehouse root, which holds
    /// no tables).
    async fn index_of(&self, relative: &str) -> Result<Index> {
        if relative.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ns = Namespace::new(relative.split('/'))?;
        Ok(index::list(&self.warehouse, &ns).await?)
    }

    /// The children of a folder and what each is: the namespace's table index and a LIST of
    /// its folders, run at once; a folder the index names is a table, and only the others
    /// (sub-namespaces, remains, tables whose marker is missing) are examined one by one.
    async fn classified_children(&self, relative: &str) -> Result<Vec<(String, FolderKind)>> {
        Ok(self.classify(relative).await?.0)
    }

    /// [`Self::classified_children`], and the index it read.
    async fn classify(&self, relative: &str) -> Result<(Vec<(String, FolderKind)>, Index)> {
        let (names, indexed) =
            futures::try_join!(self.children(relative), self.index_of(relative))?;
        let index = &indexed;
        let kinds = stream::iter(names)
            .map(|name| async move {
                if index.contains_key(&name) {
                    return Ok((name, FolderKind::Table));
                }
                let child = if relative.is_empty() {
                    name.clone()
                } else {
                    format!("{relative}/{name}")
                };
                self.kind(&child).await.map(|k| (name, k))
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((kinds, indexed))
    }

    /// The tables of `namespace` with the schema the table index records for each: None
    /// where it records none (a gap, a schema change cut short, or a catalog without an
    /// index: SQL or REST). The fleet view reads these instead of every table's head.
    pub async fn list_tables_indexed(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<(TableIdent, Option<Arc<Schema>>)>> {
        if self.sql.is_some() || self.rest.is_some() {
            return Ok(self
                .list_tables(namespace)
                .await?
                .into_iter()
                .map(|t| (t, None))
                .collect());
        }
        let (kinds, indexed) = self.classify(&namespace.path()).await?;
        let tables: Vec<String> = kinds
            .into_iter()
            .filter(|(_, k)| *k == FolderKind::Table)
            .map(|(name, _)| name)
            .collect();
        // The one schema each table's marker names (a marker alone, without its folder,
        // is stale; a table with two markers is loaded instead).
        let digest_of = |name: &str| match indexed.get(name).map(Vec::as_slice) {
            Some([one]) => Some(one.clone()),
            _ => None,
        };
        let mut digests: Vec<String> = tables.iter().filter_map(|n| digest_of(n)).collect();
        digests.sort_unstable();
        digests.dedup();
        let schemas: HashMap<String, Arc<Schema>> = stream::iter(digests)
            .map(|d| async move {
                // A schema object that cannot be read leaves its tables to be loaded.
                match index::read_schema(&self.warehouse, namespace, &d).await {
                    Ok(schema) => Ok::<_, Error>(Some((d, Arc::new(schema)))),
                    Err(floe_table_format::Error::Read {
                        source: object_store::Error::NotFound { .. },
                        ..
                    }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(tables
            .into_iter()
            .filter_map(|name| {
                let schema = digest_of(&name).and_then(|d| schemas.get(&d).cloned());
                TableIdent::new(namespace.clone(), name)
                    .ok()
                    .map(|t| (t, schema))
            })
            .collect())
    }

    /// Bring the table index of `namespace` in line with its tables (the folders holding
    /// versions): record tables without a marker (a creator that crashed before writing
    /// it), move markers naming an old schema, and remove markers of tables that are gone.
    pub async fn repair_index(&self, namespace: &Namespace) -> Result<index::Repair> {
        self.refuse_over_rest("repairing the table index")?;
        if self.sql.is_some() {
            return Ok(index::Repair::default());
        }
        let relative = namespace.path();
        let mut tables = Vec::new();
        for name in self.children(&relative).await? {
            if self.kind(&format!("{relative}/{name}")).await? == FolderKind::Table {
                let ident = TableIdent::new(namespace.clone(), name)?;
                let table = Table::load(&self.warehouse, &ident).await?;
                tables.push((ident, table.metadata().current_schema().as_ref().clone()));
            }
        }
        Ok(index::repair(&self.warehouse, namespace, &tables).await?)
    }

    /// Namespaces directly under `parent` (or at the root).
    pub async fn list_namespaces(&self, parent: Option<&Namespace>) -> Result<Vec<Namespace>> {
        if let Some(sql) = &self.sql {
            return sql.list_namespaces(parent);
        }
        if let Some(rest) = &self.rest {
            return rest.list_namespaces(parent).await;
        }
        let relative = parent.map(|p| p.path()).unwrap_or_default();
        let mut out = Vec::new();
        for (name, kind) in self.classified_children(&relative).await? {
            if kind == FolderKind::Namespace {
                let mut parts: Vec<String> = parent.map(|p| p.parts().to_vec()).unwrap_or_default();
                parts.push(name);
                out.push(Namespace::new(parts)?);
            }
        }
        Ok(out)
    }

    /// Every namespace, depth first.
    pub async fn list_all_namespaces(&self) -> Result<Vec<Namespace>> {
        let mut out = Vec::new();
        let mut todo = self.list_namespaces(None).await?;
        todo.reverse();
        while let Some(ns) = todo.pop() {
            let mut kids = self.list_namespaces(Some(&ns)).await?;
            out.push(ns);
            kids.reverse();
            todo.extend(kids);
        }
        Ok(out)
    }

    /// Tables directly in `namespace`, sorted by name.
    pub async fn list_tables(&self, namespace: &Namespace) -> Result<Vec<TableIdent>> {
        if let Some(sql) = &self.sql {
            return sql.list_tables(namespace);
        }
        if let Some(rest) = &self.rest {
            return rest.list_tables(namespace).await;
        }
        let mut out = Vec::new();
        for (name, kind) in self.classified_children(&namespace.path()).await? {
            if kind == FolderKind::Table {
                if let Ok(ident) = TableIdent::new(namespace.clone(), name) {
                    out.push(ident);
                }
            }
        }
        Ok(out)
    }

    /// One page of the tables in `namespace`, in name order: at most `limit` tables whose
    /// names sort after `after`, and the name to pass as `after` for the next page (None
    /// on the last page). Only as many folders are examined as the page needs. A `limit`
    /// of 0 is refused: no page could make progress.
    pub async fn list_tables_page(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TableIdent>, Option<String>)> {
        if limit == 0 {
            return Err(floe_table_format::Error::InvalidArgument {
                argument: "page limit".into(),
                reason: "must be at least 1".into(),
            }
            .into());
        }
        if self.sql.is_some() || self.rest.is_some() {
            let all: Vec<TableIdent> = self
                .list_tables(namespace)
                .await?
                .into_iter()
                .filter(|t| after.is_none_or(|a| t.name() > a))
                .collect();
            let next = (all.len() > limit).then(|| all[limit - 1].name().to_string());
            return Ok((all.into_iter().take(limit).collect(), next));
        }
        let relative = namespace.path();
        let (names, indexed) =
            futures::try_join!(self.children(&relative), self.index_of(&relative))?;
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .collect();
        let mut out = Vec::new();
        let mut last_examined = None;
        for chunk in names.chunks(LIST_CONCURRENCY) {
            let kinds: Vec<FolderKind> = stream::iter(chunk)
                .map(|name| async {
                    if indexed.contains_key(name) {
                        return Ok(FolderKind::Table);
                    }
                    self.kind_of(&relative, name).await
                })
                .buffered(LIST_CONCURRENCY)
                .try_collect()
                .await?;
            for (name, kind) in chunk.iter().zip(kinds) {
                if out.len() == limit {
                    return Ok((out, last_examined));
                }
                last_examined = Some(name.clone());
                if kind == FolderKind::Table {
                    if let Ok(ident) = TableIdent::new(namespace.clone(), name.clone()) {
                        out.push(ident);
                    }
                }
            }
        }
        Ok((out, None))
    }

    async fn kind_of(&self, parent: &str, name: &str) -> Result<FolderKind> {
        self.kind(&format!("{parent}/{name}")).await
    }
}
