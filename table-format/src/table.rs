//! Table handles. A [`Table`] is a table loaded by name with a head store
//! ([`crate::head`]): it can refresh and commit (through the one commit driver,
//! [`crate::driver`]). A [`TableView`] is any table's metadata opened from one metadata
//! file (whatever engine wrote it): read-only by type. A `Table` derefs to its view, so
//! every reader takes `&TableView`.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, ManifestFile, Schema, SortOrder, TableMetadata, TableMetadataBuilder,
    UnboundPartitionSpec,
};
use object_store::{ObjectStoreExt, PutMode, PutOptions};

use crate::error::{Error, Result};
use crate::head::{HadoopHead, Head, HeadStore, PointerHead};
use crate::ident::TableIdent;
use crate::metadata;
use crate::pointer::MetadataPointer;
use crate::storage;
use crate::version::{self, Version};
use crate::warehouse::Warehouse;

/// What a new table looks like.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    /// Its schema (field ids are reassigned fresh on creation).
    pub schema: Schema,
    /// Its partition spec, bound to `schema`'s field ids.
    pub partition: UnboundPartitionSpec,
    /// Table properties.
    pub properties: HashMap<String, String>,
}

/// A table's metadata and file access, read-only: what every reader needs.
#[derive(Debug, Clone)]
pub struct TableView {
    pub(crate) warehouse: Warehouse,
    pub(crate) ident: Option<TableIdent>,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) metadata_location: String,
    pub(crate) metadata: Arc<TableMetadata>,
    pub(crate) file_io: FileIO,
}

/// A table loaded by name: its view at the head it knows, and the store of that head.
#[derive(Debug, Clone)]
pub struct Table {
    pub(crate) view: TableView,
    pub(crate) head: Arc<dyn HeadStore>,
    pub(crate) version: Version,
    /// The manifest list this handle last committed (snapshot id, its manifests with their
    /// sequence numbers as written), so the next append on top of it needs no GET.
    pub(crate) list_cache: Option<(i64, Arc<Vec<ManifestFile>>)>,
    /// When the head was last seen to be this table's (loaded, refreshed or won): a claim
    /// on an older base confirms it first ([`HeadStore::confirm_base`]).
    pub(crate) confirmed_at: std::time::Instant,
}

impl Deref for Table {
    type Target = TableView;
    fn deref(&self) -> &TableView {
        &self.view
    }
}

/// Read the metadata `head` names, checking it belongs to the table at `table_location`.
///
/// In the version sequence, an empty version object is a torn claim: a crash (a power cut
/// on a local disk) after its name was created and before its bytes were synced. It was
/// never acknowledged (a commit is acknowledged only once its version object is durable),
/// so the head's metadata is the newest intact version below it, while the head's
/// version stays the torn one: the next claim goes above it and the name is never reused.
/// The returned head names the metadata actually read.
async fn read_head(
    warehouse: &Warehouse,
    table_location: &str,
    head: &Head,
    layout: &str,
) -> Result<(Head, TableMetadata)> {
    let sequence =
        head.metadata_location == version::metadata_location(table_location, head.version);
    let mut location = head.metadata_location.clone();
    let mut v = head.version;
    let metadata = loop {
        let bytes = metadata::read_bytes(warehouse, &location)
            .await?
            .ok_or_else(|| Error::CorruptMetadata {
                location: location.clone(),
                reason: format!("the head named by the {layout} does not exist (it disappeared while it was being loaded, or the record is stale)"),
            })?;
        if bytes.is_empty() && sequence && v.0 > 1 {
            tracing::warn!(object = %location, "torn (empty) version: a claim a crash cut short, never acknowledged; reading the version below it");
            v = Version(v.0 - 1);
            location = version::metadata_location(table_location, v);
            continue;
        }
        break metadata::parse(&bytes, &location)?;
    };
    if !metadata::is_at(warehouse, &metadata, table_location) {
        return Err(Error::CorruptMetadata {
            location: location.clone(),
            reason: format!(
                "it describes a table located at '{}', not '{}' (a foreign or moved table)",
                metadata.location(),
                table_location
            ),
        });
    }
    let read = Head {
        version: head.version,
        metadata_location: location,
    };
    Ok((read, metadata))
}

/// Refuse to create `ident` unless its folder is free: no versions, no ancestor that is a
/// table, no other objects (a namespace, a dropped table's remains).
async fn check_free(warehouse: &Warehouse, ident: &TableIdent, location: &str) -> Result<()> {
    let location = location.to_string();
    if version::find_head(warehouse, &location).await?.is_some() {
        return Err(Error::TableExists {
            table: ident.to_string(),
            location,
        });
    }
    // A table never nests inside another table, and never takes over a folder that
    // holds something else (a namespace, foreign files).
    let parts = ident.namespace().parts();
    for depth in 1..=parts.len() {
        let ancestor = warehouse.location(&parts[..depth].join("/"));
        if !version::list_versions(warehouse, &ancestor)
            .await?
            .is_empty()
        {
            return Err(Error::InvalidName {
                name: ident.to_string(),
                reason: format!("{} is a table, not a namespace", parts[..depth].join(".")),
            });
        }
    }
    if version::any_object_under(warehouse, &location).await? {
        // A concurrent creator may just have claimed v1.
        if version::find_head(warehouse, &location).await?.is_some() {
            return Err(Error::TableExists {
                table: ident.to_string(),
                location,
            });
        }
        return Err(Error::InvalidName {
                name: ident.to_string(),
                reason: format!(
                    "{location} already holds objects that are not a Floe table: a namespace, or the remains of a dropped table (`floe drop {ident} --purge` removes those)"
                ),
            });
    }
    Ok(())
}

/// Claim `v1` create-only with `metadata`, write the hint, and return the table. (Table
/// creation is not a commit of the driver: there is no base to rebase on, and a lost race
/// is the answer [`Error::TableExists`].)
async fn claim_first(
    warehouse: &Warehouse,
    ident: &TableIdent,
    location: String,
    metadata: TableMetadata,
) -> Result<Table> {
    let v1 = Version(1);
    let metadata_location = version::metadata_location(&location, v1);
    let body = metadata::to_bytes(&metadata, &metadata_location)?;
    let path = warehouse.object_path(&metadata_location)?;
    match warehouse
        .store()
        .put_opts(&path, body.into(), PutOptions::from(PutMode::Create))
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(Error::TableExists {
                table: ident.to_string(),
                location,
            })
        }
        Err(source) => {
            return Err(Error::Write {
                location: metadata_location,
                source,
            })
        }
    }
    let head = HadoopHead::new(warehouse, &location);
    let table = Table::assemble(
        warehouse,
        ident,
        location,
        Arc::new(head),
        v1,
        metadata_location,
        metadata,
    );
    table
        .head
        .after_win(&Head {
            version: v1,
            metadata_location: table.metadata_location.clone(),
        })
        .await;
    crate::index::record_quietly(warehouse, ident, table.metadata.current_schema()).await;
    Ok(table)
}

impl TableView {
    /// Open a table read-only from one metadata file (any Iceberg table, whatever wrote it).
    pub async fn open(warehouse: &Warehouse, metadata_location: &str) -> Result<TableView> {
        let metadata = metadata::read(warehouse, metadata_location)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: metadata_location.to_string(),
                location: metadata_location.to_string(),
            })?;
        Ok(TableView {
            warehouse: warehouse.clone(),
            ident: None,
            name: metadata_location.to_string(),
            location: metadata.location().trim_end_matches('/').to_string(),
            metadata_location: metadata_location.to_string(),
            metadata: Arc::new(metadata),
            file_io: storage::file_io(warehouse),
        })
    }

    /// The table's name (or its metadata location when opened from one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's identifier, if it was loaded by name.
    pub fn ident(&self) -> Option<&TableIdent> {
        self.ident.as_ref()
    }

    /// The table's root location.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The metadata file a third party would open.
    pub fn metadata_location(&self) -> &str {
        &self.metadata_location
    }

    /// The loaded metadata.
    pub fn metadata(&self) -> &Arc<TableMetadata> {
        &self.metadata
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The FileIO serving this table.
    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// The snapshot holding `commit_id`, if the loaded metadata has one.
    pub fn find_commit(&self, commit_id: &str) -> Option<i64> {
        metadata::find_commit(&self.metadata, commit_id)
    }

    /// The table as iceberg's type, for scans.
    pub fn iceberg(&self) -> Result<iceberg::table::Table> {
        let ident = match &self.ident {
            Some(i) => i.to_iceberg(),
            None => iceberg::TableIdent::from_strs(["external", "table"])
                .map_err(|e| Error::iceberg("name external table", e))?,
        };
        iceberg::table::Table::builder()
            .metadata(self.metadata.clone())
            .metadata_location(self.metadata_location.clone())
            .identifier(ident)
            .file_io(self.file_io.clone())
            .readonly(self.ident.is_none())
            .runtime(
                iceberg::Runtime::try_current()
                    .map_err(|e| Error::iceberg("find the tokio runtime", e))?,
            )
            .build()
            .map_err(|e| Error::iceberg(format!("open {}", self.name), e))
    }

    /// The manifests `snapshot`'s manifest list names (one GET), an error naming the list.
    pub async fn read_manifest_list(
        &self,
        snapshot: &iceberg::spec::SnapshotRef,
    ) -> Result<Vec<ManifestFile>> {
        Ok(self
            .iceberg()?
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| {
                Error::iceberg(
                    format!("read manifest list {}", snapshot.manifest_list()),
                    e,
                )
            })?
            .consume_entries()
            .into_iter()
            .collect())
    }

    /// A random positive snapshot id not used by any snapshot of the loaded metadata.
    pub(crate) fn fresh_snapshot_id(&self) -> i64 {
        loop {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            let id = ((a ^ b) & (i64::MAX as u64)) as i64;
            if id != 0 && self.metadata.snapshot_by_id(id).is_none() {
                return id;
            }
        }
    }

    /// Delete objects in one batch (a bulk request on S3), best effort: what fails stays
    /// for the next vacuum. Returns how many were deleted (or already gone).
    pub(crate) async fn delete_objects(&self, locations: &[String]) -> usize {
        use futures::StreamExt;
        let keys: Vec<_> = locations
            .iter()
            .filter_map(|l| self.warehouse.object_path(l).ok())
            .collect();
        if keys.is_empty() {
            return 0;
        }
        let n = keys.len();
        let results: Vec<_> = self
            .warehouse
            .store()
            .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        let failed = results
            .iter()
            .filter(|r| matches!(r, Err(e) if !matches!(e, object_store::Error::NotFound { .. })))
            .count();
        if failed > 0 {
            tracing::warn!(table = %self.name, failed, "some objects could not be deleted");
        }
        n - failed
    }
}

impl Table {
    fn assemble(
        warehouse: &Warehouse,
        ident: &TableIdent,
        location: String,
        head: Arc<dyn HeadStore>,
        version: Version,
        metadata_location: String,
        metadata: TableMetadata,
    ) -> Table {
        Table {
            view: TableView {
                warehouse: warehouse.clone(),
                ident: Some(ident.clone()),
                name: ident.to_string(),
                location,
                metadata_location,
                metadata: Arc::new(metadata),
                file_io: storage::file_io(warehouse),
            },
            head,
            version,
            list_cache: None,
            confirmed_at: std::time::Instant::now(),
        }
    }

    /// Create a table at its Hadoop-style location; fails with [`Error::TableExists`] if any
    /// version of it exists (or another writer creates it first).
    pub async fn create(
        warehouse: &Warehouse,
        ident: &TableIdent,
        definition: TableDefinition,
    ) -> Result<Table> {
        let location = warehouse.location(&ident.path());
        // Validate the definition before touching the store.
        let metadata = Table::first_metadata(&location, definition)?;
        check_free(warehouse, ident, &location).await?;
        claim_first(warehouse, ident, location, metadata).await
    }

    /// Adopt an existing Iceberg table (written by any engine) under `ident`: its metadata
    /// becomes `v1` of a Floe table, keeping its uuid, schema history, snapshots and the
    /// absolute paths of its files; only `location` moves to the Floe folder, so new files
    /// land under the Floe prefix. The source must be readable through this warehouse's
    /// store.
    pub async fn register(
        warehouse: &Warehouse,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<Table> {
        let source = metadata::read(warehouse, metadata_location)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: metadata_location.to_string(),
                location: metadata_location.to_string(),
            })?;
        metadata::check_properties(
            source.properties().keys(),
            &format!(" of {metadata_location}"),
        )?;
        let location = warehouse.location(&ident.path());
        check_free(warehouse, ident, &location).await?;
        let metadata =
            TableMetadataBuilder::new_from_metadata(source, Some(metadata_location.to_string()))
                .set_location(location.clone())
                .build()
                .map_err(|e| Error::iceberg(format!("adopt {metadata_location}"), e))?
                .metadata;
        claim_first(warehouse, ident, location, metadata).await
    }

    /// Create the table, or load it if it exists already (two devices creating the same
    /// table at once: one creates, the other uses it).
    pub async fn create_or_load(
        warehouse: &Warehouse,
        ident: &TableIdent,
        definition: TableDefinition,
    ) -> Result<Table> {
        match Table::create(warehouse, ident, definition).await {
            Err(Error::TableExists { .. }) => Table::load(warehouse, ident).await,
            other => other,
        }
    }

    /// Load the head version of a table.
    pub async fn load(warehouse: &Warehouse, ident: &TableIdent) -> Result<Table> {
        let location = warehouse.location(&ident.path());
        let store = HadoopHead::new(warehouse, &location);
        // Fast path: the hint, the probe past it, and the GET of the head, which proves the
        // hinted version exists (versions are contiguous): no HEAD of an object then read.
        let mut found = None;
        if let Some(hinted) = version::read_hint(warehouse, &location).await? {
            let v = version::probe_forward(warehouse, &location, hinted).await?;
            let head = Head {
                version: v,
                metadata_location: version::metadata_location(&location, v),
            };
            match read_head(warehouse, &location, &head, store.layout()).await {
                Ok(read) => found = Some(read),
                // A hint ahead of the versions (its version is missing): look closer.
                Err(Error::CorruptMetadata { .. }) if v == hinted => {}
                Err(e) => return Err(e),
            }
        }
        let (head, metadata) = match found {
            Some(read) => read,
            None => {
                let head = store
                    .current(None)
                    .await?
                    .ok_or_else(|| Error::TableNotFound {
                        table: ident.to_string(),
                        location: format!("{location}/metadata"),
                    })?;
                read_head(warehouse, &location, &head, store.layout()).await?
            }
        };
        Ok(Table::assemble(
            warehouse,
            ident,
            location,
            Arc::new(store),
            head.version,
            head.metadata_location,
            metadata,
        ))
    }

    /// Open a table read-only from one metadata file (see [`TableView::open`]).
    pub async fn open_metadata(
        warehouse: &Warehouse,
        metadata_location: &str,
    ) -> Result<TableView> {
        TableView::open(warehouse, metadata_location).await
    }

    /// Load a table whose head `head` records (a head store of another crate, such as a REST
    /// catalog's); its files are read and written through `warehouse`.
    pub async fn load_with_head(
        warehouse: &Warehouse,
        ident: &TableIdent,
        head: Arc<dyn HeadStore>,
    ) -> Result<Table> {
        let now = head
            .current(None)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: ident.to_string(),
                location: format!("the {}", head.layout()),
            })?;
        let metadata = metadata::read(warehouse, &now.metadata_location)
            .await?
            .ok_or_else(|| Error::CorruptMetadata {
                location: now.metadata_location.clone(),
                reason: format!(
                    "the {} names a metadata file that does not exist",
                    head.layout()
                ),
            })?;
        let location = metadata.location().trim_end_matches('/').to_string();
        Ok(Table::assemble(
            warehouse,
            ident,
            location,
            head,
            now.version,
            now.metadata_location,
            metadata,
        ))
    }

    /// Load a table whose head is recorded by `pointer` (a catalog such as the SQL catalog).
    pub async fn load_pointed(
        warehouse: &Warehouse,
        ident: &TableIdent,
        pointer: Arc<dyn MetadataPointer>,
    ) -> Result<Table> {
        let head =
            PointerHead::read(pointer.as_ref())
                .await?
                .ok_or_else(|| Error::TableNotFound {
                    table: ident.to_string(),
                    location: "the catalog".into(),
                })?;
        let metadata = metadata::read(warehouse, &head.metadata_location)
            .await?
            .ok_or_else(|| Error::CorruptMetadata {
                location: head.metadata_location.clone(),
                reason: "the catalog points at a metadata file that does not exist".into(),
            })?;
        let location = metadata.location().trim_end_matches('/').to_string();
        let store = PointerHead::new(warehouse, &location, pointer);
        Ok(Table::assemble(
            warehouse,
            ident,
            location,
            Arc::new(store),
            head.version,
            head.metadata_location,
            metadata,
        ))
    }

    /// The first metadata of a new table at `location` (for catalogs that create tables
    /// their own way).
    pub fn first_metadata(location: &str, definition: TableDefinition) -> Result<TableMetadata> {
        metadata::check_properties(definition.properties.keys(), "")?;
        let mut properties = definition.properties;
        properties
            .entry("write.parquet.compression-codec".into())
            .or_insert_with(|| "zstd".into());
        Ok(TableMetadataBuilder::new(
            definition.schema,
            definition.partition,
            SortOrder::unsorted_order(),
            location.to_string(),
            FormatVersion::V2,
            properties,
        )
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(format!("build first metadata at {location}"), e))?
        .metadata)
    }

    /// Write a metadata file at a fresh location (a plain put: the name is unique).
    pub async fn write_metadata_file(
        warehouse: &Warehouse,
        location: &str,
        metadata: &TableMetadata,
    ) -> Result<()> {
        let body = metadata::to_bytes(metadata, location)?;
        warehouse
            .store()
            .put(&warehouse.object_path(location)?, body.into())
            .await
            .map_err(|source| Error::Write {
                location: location.to_string(),
                source,
            })?;
        Ok(())
    }

    /// The loaded head version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The loaded head.
    pub(crate) fn head_now(&self) -> Head {
        Head {
            version: self.version,
            metadata_location: self.metadata_location.clone(),
        }
    }

    /// Make `head` (with its `metadata`) this handle's head.
    pub(crate) fn adopt(&mut self, head: Head, metadata: TableMetadata) {
        self.confirmed_at = std::time::Instant::now();
        self.version = head.version;
        self.view.metadata_location = head.metadata_location;
        self.view.metadata = Arc::new(metadata);
    }

    /// Reload the head (for the Hadoop layout, probing forward from the version we know).
    pub async fn refresh(&mut self) -> Result<()> {
        let head = self
            .head
            .current(Some(&self.head_now()))
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: self.name.clone(),
                location: "the catalog".into(),
            })?;
        if head.metadata_location == self.metadata_location {
            self.confirmed_at = std::time::Instant::now();
            return Ok(());
        }
        let (head, metadata) =
            read_head(&self.warehouse, &self.location, &head, self.head.layout()).await?;
        if metadata.uuid() != self.metadata.uuid() {
            return Err(Error::CorruptMetadata {
                location: head.metadata_location,
                reason: format!(
                    "table uuid changed from {} to {} (the table was dropped and recreated)",
                    self.metadata.uuid(),
                    metadata.uuid()
                ),
            });
        }
        self.adopt(head, metadata);
        Ok(())
    }

    /// The manifest list this handle last committed, if it is cached (for tests).
    pub fn cached_manifest_list(&self) -> Option<(i64, Vec<ManifestFile>)> {
        self.list_cache
            .as_ref()
            .map(|(id, l)| (*id, l.as_ref().clone()))
    }
}
