//! A device table: loading its head, creating it, and committing. Every commit, an
//! append or any other [`Action`], runs through the one commit driver
//! ([`Table::commit`]), whose decisions are the pure state machine of [`crate::commit`].

mod driver;

pub use driver::{Action, Applied, Committed};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestFile, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, Schema, Snapshot, SnapshotSummaryCollector, SortOrder,
    Summary, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec, MAIN_BRANCH,
    UNASSIGNED_SEQUENCE_NUMBER,
};
use object_store::{ObjectStoreExt, PutMode, PutOptions};

use crate::commit::{PutOutcome, RetryPolicy};
use crate::error::{Error, Result};
use crate::ident::TableIdent;
use crate::maintenance;
use crate::pointer::{self, MetadataPointer};
use crate::storage;
use crate::version::{self, Version};
use crate::warehouse::Warehouse;

/// Snapshot-summary key holding the id of the commit that produced the snapshot.
pub const COMMIT_ID_KEY: &str = "floe.commit-id";

/// Summary keys whose totals Floe carries forward from the parent snapshot.
const TOTALS: &[(&str, &str)] = &[
    ("total-records", "added-records"),
    ("total-data-files", "added-data-files"),
    ("total-files-size", "added-files-size"),
    ("total-delete-files", "added-delete-files"),
    ("total-position-deletes", "added-position-deletes"),
    ("total-equality-deletes", "added-equality-deletes"),
];

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

/// How an append commits.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// The id stamped into the snapshot summary. Reusing the id of an earlier attempt makes
    /// the append idempotent: if that attempt landed, nothing is committed again.
    pub commit_id: String,
    /// Retry limits.
    pub policy: RetryPolicy,
    /// Extra snapshot-summary properties.
    pub properties: HashMap<String, String>,
    /// Table properties set in the same version as the snapshot (atomically with it), for
    /// example a projection watermark (`floe sync`'s, see the `floe-sync` crate). Usually empty.
    pub table_properties: HashMap<String, String>,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            commit_id: uuid::Uuid::new_v4().to_string(),
            policy: RetryPolicy::default(),
            properties: HashMap::new(),
            table_properties: HashMap::new(),
        }
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    /// The table's head version after the call (the commit is in this version, or in an
    /// earlier one when `already_committed`).
    pub version: Version,
    /// The snapshot it added.
    pub snapshot_id: i64,
    /// Version puts made (1 without contention).
    pub attempts: u32,
    /// True if the commit had already landed earlier (same commit id) and nothing new was written.
    pub already_committed: bool,
}

/// A loaded table: its head version and metadata.
#[derive(Debug, Clone)]
pub struct Table {
    warehouse: Warehouse,
    ident: Option<TableIdent>,
    name: String,
    location: String,
    version: Option<Version>,
    metadata_location: String,
    metadata: Arc<TableMetadata>,
    file_io: FileIO,
    /// Set for tables whose head is recorded by a catalog (see [`crate::pointer`]);
    /// None for the Hadoop layout.
    pointer: Option<Arc<dyn MetadataPointer>>,
    /// The manifest list this handle last committed (snapshot id, its manifests with their
    /// sequence numbers as written), so the next append on top of it needs no GET.
    list_cache: Option<(i64, Arc<Vec<ManifestFile>>)>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Read and parse one metadata object.
async fn read_metadata(warehouse: &Warehouse, location: &str) -> Result<Option<TableMetadata>> {
    let path = warehouse.object_path(location)?;
    let bytes = match warehouse.store().get(&path).await {
        Ok(r) => r.bytes().await.map_err(|source| Error::Read {
            location: location.to_string(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                location: location.to_string(),
                source,
            })
        }
    };
    parse_metadata(&bytes, location).map(Some)
}

fn parse_metadata(bytes: &[u8], location: &str) -> Result<TableMetadata> {
    if version::is_tombstone(bytes) {
        return Err(Error::CorruptMetadata {
            location: location.to_string(),
            reason: "an expired version (tombstone left by metadata cleanup); load the table's head instead".into(),
        });
    }
    if bytes.len() > 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        return Err(Error::CorruptMetadata {
            location: location.to_string(),
            reason: "gzip-compressed metadata is not supported by Floe; expected plain JSON".into(),
        });
    }
    serde_json::from_slice::<TableMetadata>(bytes).map_err(|e| Error::CorruptMetadata {
        location: location.to_string(),
        reason: e.to_string(),
    })
}

/// Properties that would place a table's files outside its prefix: refused.
const FORBIDDEN_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.folder-storage.path",
    "write.object-storage.path",
    "write.metadata.path",
    "write.object-storage.enabled",
];

fn validate_commit_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidArgument {
            argument: format!("commit id '{}'", id.escape_debug()),
            reason: "a commit id is 1 to 256 characters without control characters".into(),
        });
    }
    Ok(())
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

/// Claim `v1` create-only with `metadata`, write the hint, and return the table.
async fn claim_first(
    warehouse: &Warehouse,
    ident: &TableIdent,
    location: String,
    metadata: TableMetadata,
) -> Result<Table> {
    let v1 = Version(1);
    let metadata_location = version::metadata_location(&location, v1);
    let body = serde_json::to_vec(&metadata).map_err(|e| Error::CorruptMetadata {
        location: metadata_location.clone(),
        reason: e.to_string(),
    })?;
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
    if let Err(e) = version::write_hint(warehouse, &location, v1).await {
        tracing::warn!(table = %ident, error = %e, "could not write the version hint");
    }
    Ok(Table {
        warehouse: warehouse.clone(),
        ident: Some(ident.clone()),
        name: ident.to_string(),
        location,
        version: Some(v1),
        metadata_location,
        metadata: Arc::new(metadata),
        file_io: storage::file_io(warehouse),
        pointer: None,
        list_cache: None,
    })
}

/// Read version `v` of the table at `table_location`, checking it belongs there.
async fn read_version(
    warehouse: &Warehouse,
    table_location: &str,
    v: Version,
) -> Result<(String, TableMetadata)> {
    let location = version::metadata_location(table_location, v);
    let metadata =
        read_metadata(warehouse, &location)
            .await?
            .ok_or_else(|| Error::CorruptMetadata {
                location: location.clone(),
                reason: "the version disappeared while it was being loaded".into(),
            })?;
    let same_place = match (
        warehouse.object_path(metadata.location().trim_end_matches('/')),
        warehouse.object_path(table_location),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_place {
        return Err(Error::CorruptMetadata {
            location,
            reason: format!(
                "it describes a table located at '{}', not '{}' (a foreign or moved table)",
                metadata.location(),
                table_location
            ),
        });
    }
    Ok((location, metadata))
}

fn find_commit(metadata: &TableMetadata, commit_id: &str) -> Option<i64> {
    metadata
        .snapshots()
        .find(|s| {
            s.summary()
                .additional_properties
                .get(COMMIT_ID_KEY)
                .is_some_and(|c| c == commit_id)
        })
        .map(|s| s.snapshot_id())
}

impl Table {
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
        let source = read_metadata(warehouse, metadata_location)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: metadata_location.to_string(),
                location: metadata_location.to_string(),
            })?;
        if let Some(key) = source
            .properties()
            .keys()
            .find(|k| FORBIDDEN_PROPERTIES.contains(&k.as_str()))
        {
            return Err(Error::InvalidArgument {
                argument: format!("property '{key}' of {metadata_location}"),
                reason: "a Floe table keeps all its new files under its own prefix".into(),
            });
        }
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
        let head = version::find_head(warehouse, &location)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: ident.to_string(),
                location: format!("{location}/metadata"),
            })?;
        let (metadata_location, metadata) = read_version(warehouse, &location, head).await?;
        Ok(Table {
            warehouse: warehouse.clone(),
            ident: Some(ident.clone()),
            name: ident.to_string(),
            location,
            version: Some(head),
            metadata_location,
            metadata: Arc::new(metadata),
            file_io: storage::file_io(warehouse),
            pointer: None,
            list_cache: None,
        })
    }

    /// Open a table read-only from one metadata file (any Iceberg table, whatever wrote it).
    pub async fn open_metadata(warehouse: &Warehouse, metadata_location: &str) -> Result<Table> {
        let metadata = read_metadata(warehouse, metadata_location)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: metadata_location.to_string(),
                location: metadata_location.to_string(),
            })?;
        Ok(Table {
            warehouse: warehouse.clone(),
            ident: None,
            name: metadata_location.to_string(),
            location: metadata.location().trim_end_matches('/').to_string(),
            version: None,
            metadata_location: metadata_location.to_string(),
            metadata: Arc::new(metadata),
            file_io: storage::file_io(warehouse),
            pointer: None,
            list_cache: None,
        })
    }

    /// Load a table whose head is recorded by `pointer` (a catalog such as the SQL catalog).
    pub async fn load_pointed(
        warehouse: &Warehouse,
        ident: &TableIdent,
        pointer: Arc<dyn MetadataPointer>,
    ) -> Result<Table> {
        let location_of_metadata =
            pointer
                .current()
                .await?
                .ok_or_else(|| Error::TableNotFound {
                    table: ident.to_string(),
                    location: "the catalog".into(),
                })?;
        let metadata = read_metadata(warehouse, &location_of_metadata)
            .await?
            .ok_or_else(|| Error::CorruptMetadata {
                location: location_of_metadata.clone(),
                reason: "the catalog points at a metadata file that does not exist".into(),
            })?;
        Ok(Table {
            warehouse: warehouse.clone(),
            ident: Some(ident.clone()),
            name: ident.to_string(),
            location: metadata.location().trim_end_matches('/').to_string(),
            version: Some(Version(pointer::sequence_of(&location_of_metadata))),
            metadata_location: location_of_metadata,
            metadata: Arc::new(metadata),
            file_io: storage::file_io(warehouse),
            pointer: Some(pointer),
            list_cache: None,
        })
    }

    /// The first metadata of a new table at `location` (for catalogs that create tables
    /// their own way).
    pub fn first_metadata(location: &str, definition: TableDefinition) -> Result<TableMetadata> {
        if let Some(key) = definition
            .properties
            .keys()
            .find(|k| FORBIDDEN_PROPERTIES.contains(&k.as_str()))
        {
            return Err(Error::InvalidArgument {
                argument: format!("property '{key}'"),
                reason: "a Floe table keeps all its files under its own prefix".into(),
            });
        }
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
        let body = serde_json::to_vec(metadata).map_err(|e| Error::CorruptMetadata {
            location: location.to_string(),
            reason: e.to_string(),
        })?;
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

    /// Claim the next version of this table with `metadata` (serialized as `body`) at
    /// `location`: create-only in the Hadoop layout, or write-then-swap for a pointer table.
    async fn put_next(
        &self,
        location: &str,
        body: Vec<u8>,
    ) -> Result<std::result::Result<PutOutcome, object_store::Error>> {
        let path = self.warehouse.object_path(location)?;
        match &self.pointer {
            None => Ok(
                match self
                    .warehouse
                    .store()
                    .put_opts(&path, body.into(), PutOptions::from(PutMode::Create))
                    .await
                {
                    Ok(_) => Ok(PutOutcome::Won),
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Lost),
                    Err(e) => Err(e),
                },
            ),
            Some(p) => {
                // The file's name is unique, so writing it decides nothing; the swap does.
                self.warehouse
                    .store()
                    .put(&path, body.into())
                    .await
                    .map_err(|source| Error::Write {
                        location: location.to_string(),
                        source,
                    })?;
                match p.swap(&self.metadata_location, location).await {
                    Ok(true) => Ok(Ok(PutOutcome::Won)),
                    Ok(false) => Ok(Ok(PutOutcome::Lost)),
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, "pointer swap had no clear answer");
                        Ok(Ok(PutOutcome::Unknown))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn load_version(&mut self, v: Version) -> Result<()> {
        let (location, metadata) = read_version(&self.warehouse, &self.location, v).await?;
        if metadata.uuid() != self.metadata.uuid() {
            return Err(Error::CorruptMetadata {
                location,
                reason: format!(
                    "table uuid changed from {} to {} (the table was dropped and recreated)",
                    self.metadata.uuid(),
                    metadata.uuid()
                ),
            });
        }
        self.version = Some(v);
        self.metadata_location = location;
        self.metadata = Arc::new(metadata);
        Ok(())
    }

    /// Reload the head (probing forward from the version we know).
    pub async fn refresh(&mut self) -> Result<()> {
        if let Some(p) = &self.pointer {
            let current = p.current().await?.ok_or_else(|| Error::TableNotFound {
                table: self.name.clone(),
                location: "the catalog".into(),
            })?;
            if current != self.metadata_location {
                let metadata =
                    read_metadata(&self.warehouse, &current)
                        .await?
                        .ok_or_else(|| Error::CorruptMetadata {
                            location: current.clone(),
                            reason: "the catalog points at a metadata file that does not exist"
                                .into(),
                        })?;
                if metadata.uuid() != self.metadata.uuid() {
                    return Err(Error::CorruptMetadata {
                        location: current,
                        reason: "table uuid changed (the table was dropped and recreated)".into(),
                    });
                }
                self.version = Some(Version(pointer::sequence_of(&current)));
                self.metadata_location = current;
                self.metadata = Arc::new(metadata);
            }
            return Ok(());
        }
        let Some(known) = self.version else {
            return Ok(());
        };
        // Start from the hint when it is ahead (a writer that fell far behind would
        // otherwise probe every version in between).
        let start = match version::read_hint(&self.warehouse, &self.location).await? {
            Some(h)
                if h > known
                    && version::version_exists(&self.warehouse, &self.location, h).await? =>
            {
                h
            }
            _ => known,
        };
        let head = version::probe_forward(&self.warehouse, &self.location, start).await?;
        if Some(head) != self.version {
            self.load_version(head).await?;
        }
        Ok(())
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

    /// The loaded version (None when opened from a metadata file).
    pub fn version(&self) -> Option<Version> {
        self.version
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

    /// Commit data files (written by [`crate::writer::DataWriter`]) as one append snapshot,
    /// through the one commit driver ([`Table::commit`]).
    pub async fn append(
        &mut self,
        files: Vec<DataFile>,
        options: CommitOptions,
    ) -> Result<CommitReport> {
        // The driver looks for the commit id before the action writes anything, so a
        // rerun of a landed append uploads no manifest.
        let mut action = AppendAction {
            files,
            manifest: None,
            snapshot_id: self.fresh_snapshot_id(),
            write_id: uuid::Uuid::new_v4().to_string(),
            options: &options,
        };
        let done = self
            .commit(&options.commit_id, &options.policy, &mut action)
            .await?;
        Ok(CommitReport {
            version: done.version,
            snapshot_id: self
                .find_commit(&options.commit_id)
                .unwrap_or(action.snapshot_id),
            attempts: done.attempts,
            already_committed: done.already_committed,
        })
    }

    /// The manifest list this handle last committed, if it is cached (for tests).
    pub fn cached_manifest_list(&self) -> Option<(i64, Vec<ManifestFile>)> {
        self.list_cache
            .as_ref()
            .map(|(id, l)| (*id, l.as_ref().clone()))
    }

    /// The snapshot holding `commit_id`, if the loaded metadata has one.
    pub fn find_commit(&self, commit_id: &str) -> Option<i64> {
        find_commit(&self.metadata, commit_id)
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

    /// A v2 data-manifest writer at `location` for `snapshot_id`, with the current schema
    /// and the default partition spec (the spec DataWriter writes with; DataFile hides its
    /// spec id in iceberg 0.10).
    pub(crate) fn new_manifest_writer(
        &self,
        location: &str,
        snapshot_id: i64,
    ) -> Result<ManifestWriter> {
        let output = self
            .file_io
            .new_output(location)
            .map_err(|e| Error::iceberg(format!("open manifest {location}"), e))?;
        Ok(ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            self.metadata.current_schema().clone(),
            self.metadata.default_partition_spec().as_ref().clone(),
        )
        .build_v2_data())
    }

    pub(crate) async fn write_manifest(
        &self,
        files: &[DataFile],
        snapshot_id: i64,
        write_id: &str,
    ) -> Result<ManifestFile> {
        let location = format!("{}/metadata/{write_id}-m0.avro", self.location);
        let mut writer = self.new_manifest_writer(&location, snapshot_id)?;
        for f in files {
            writer
                .add_file(f.clone(), -1)
                .map_err(|e| Error::iceberg(format!("add {} to manifest", f.file_path()), e))?;
        }
        writer
            .write_manifest_file()
            .await
            .map_err(|e| Error::iceberg(format!("write manifest {location}"), e))
    }

    /// Build the metadata of the next version: the base plus one append snapshot whose
    /// manifest list is the base's manifests plus ours.
    async fn apply_append(
        &self,
        files: &[DataFile],
        manifest: &ManifestFile,
        snapshot_id: i64,
        options: &CommitOptions,
        write_id: &str,
        attempt: u32,
    ) -> Result<(TableMetadata, Cleanup)> {
        let base = self.metadata.as_ref();
        let settings = maintenance::Settings::of(base);
        let parent = base.current_snapshot();
        let sequence_number = base.next_sequence_number();
        let mut manifests = match parent {
            Some(p)
                if self
                    .list_cache
                    .as_ref()
                    .is_some_and(|(id, _)| *id == p.snapshot_id()) =>
            {
                let (_, cached) = self.list_cache.as_ref().expect("checked");
                cached.as_ref().clone()
            }
            Some(p) => self
                .iceberg()?
                .manifest_list_reader(p)
                .load()
                .await
                .map_err(|e| {
                    Error::iceberg(format!("read manifest list {}", p.manifest_list()), e)
                })?
                .consume_entries()
                .into_iter()
                .collect::<Vec<_>>(),
            None => Vec::new(),
        };
        // Merge small manifests so the manifest list stays bounded (merge-append).
        let groups =
            maintenance::plan_merge(&manifests, base.default_partition_spec_id(), &settings);
        if !groups.is_empty() {
            let mut merged = Vec::new();
            for (k, group) in groups.iter().enumerate() {
                let sources: Vec<&ManifestFile> = group.iter().map(|i| &manifests[*i]).collect();
                merged.push(
                    self.merge_manifests(
                        &sources,
                        snapshot_id,
                        &format!("{write_id}-a{attempt}-m{}", k + 1),
                    )
                    .await?,
                );
            }
            let drop: std::collections::HashSet<usize> = groups.iter().flatten().copied().collect();
            manifests = manifests
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, m)| m)
                .chain(merged)
                .collect();
        }
        manifests.push(manifest.clone());
        let list_location = format!(
            "{}/metadata/snap-{snapshot_id}-{attempt}-{write_id}.avro",
            self.location
        );
        let out = self
            .file_io
            .new_output(&list_location)
            .map_err(|e| Error::iceberg(format!("open {list_location}"), e))?
            .writer()
            .await
            .map_err(|e| Error::iceberg(format!("open {list_location}"), e))?;
        let mut list = ManifestListWriter::v2(
            out,
            snapshot_id,
            parent.map(|p| p.snapshot_id()),
            sequence_number,
        );
        // The list as readers will load it: unassigned sequence numbers become this
        // snapshot's, exactly as the list writer assigns them.
        let as_written: Vec<ManifestFile> = manifests
            .iter()
            .cloned()
            .map(|mut m| {
                if m.sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                    m.sequence_number = sequence_number;
                }
                if m.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                    m.min_sequence_number = sequence_number;
                }
                m
            })
            .collect();
        list.add_manifests(manifests.into_iter())
            .map_err(|e| Error::iceberg(format!("write {list_location}"), e))?;
        list.close()
            .await
            .map_err(|e| Error::iceberg(format!("write {list_location}"), e))?;

        let mut collector = SnapshotSummaryCollector::default();
        for f in files {
            collector.add_file(
                f,
                base.current_schema().clone(),
                base.default_partition_spec().clone(),
            );
        }
        let mut props = options.properties.clone();
        props.remove("operation");
        props.extend(collector.build());
        let previous = parent.map(|p| &p.summary().additional_properties);
        for (total, added) in TOTALS {
            // A parent that does not record a total (another writer's snapshot) leaves it
            // unknown, as Iceberg Java does, rather than restarting the count at zero.
            let prev: Option<u64> = match previous {
                None => Some(0),
                Some(m) => m.get(*total).and_then(|v| v.parse().ok()),
            };
            let add: u64 = props.get(*added).and_then(|v| v.parse().ok()).unwrap_or(0);
            match prev {
                Some(prev) => props.insert(total.to_string(), (prev + add).to_string()),
                None => props.remove(*total),
            };
        }
        props.insert(COMMIT_ID_KEY.into(), options.commit_id.clone());
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_location)
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_summary(Summary {
                operation: Operation::Append,
                additional_properties: props,
            })
            .with_schema_id(base.current_schema_id())
            .with_timestamp_ms(now_ms().max(base.last_updated_ms() + 1))
            .build();
        let step = || format!("build next metadata of {}", self.name);
        let built = TableMetadataBuilder::new_from_metadata(
            base.clone(),
            Some(self.metadata_location.clone()),
        )
        .set_branch_snapshot(snapshot, MAIN_BRANCH)
        .and_then(|b| {
            if options.table_properties.is_empty() {
                Ok(b)
            } else {
                b.set_properties(options.table_properties.clone())
            }
        })
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(step(), e))?;
        let mut cleanup = Cleanup {
            written_list: Some((snapshot_id, Arc::new(as_written))),
            enabled: settings.delete_after_commit,
            metadata_files: built
                .expired_metadata_logs
                .iter()
                .map(|l| l.metadata_file.clone())
                .collect(),
            manifest_lists: Vec::new(),
        };
        let mut metadata = built.metadata;
        // Expire snapshots so the metadata JSON stays bounded.
        let expired = maintenance::snapshots_to_expire(&metadata, &settings, now_ms());
        if !expired.is_empty() {
            cleanup.manifest_lists = expired
                .iter()
                .filter_map(|id| metadata.snapshot_by_id(*id))
                .map(|s| s.manifest_list().to_string())
                .collect();
            metadata = TableMetadataBuilder::new_from_metadata(metadata, None)
                .remove_snapshots(&expired)
                .build()
                .map_err(|e| Error::iceberg(step(), e))?
                .metadata;
        }
        Ok((metadata, cleanup))
    }

    /// Rewrite several manifests as one whose entries are all `EXISTING` (with their own
    /// snapshot ids and sequence numbers); deleted entries are dropped.
    async fn merge_manifests(
        &self,
        sources: &[&ManifestFile],
        snapshot_id: i64,
        name: &str,
    ) -> Result<ManifestFile> {
        let location = format!("{}/metadata/{name}.avro", self.location);
        let mut writer = self.new_manifest_writer(&location, snapshot_id)?;
        // Read the sources concurrently (a merge reads up to min-count-to-merge manifests).
        let owned: Vec<ManifestFile> = sources.iter().map(|m| (*m).clone()).collect();
        let loaded = maintenance::load_manifests(&self.file_io, owned).await?;
        for (source, manifest) in loaded {
            for entry in manifest.entries() {
                if !maintenance::keep_entry(entry.status()) {
                    continue;
                }
                let (Some(snap), Some(seq)) = (entry.snapshot_id(), entry.sequence_number()) else {
                    return Err(Error::CorruptMetadata {
                        location: source.manifest_path.clone(),
                        reason: "an entry has no snapshot id or sequence number".into(),
                    });
                };
                writer
                    .add_existing_file(
                        entry.data_file().clone(),
                        snap,
                        seq,
                        entry.file_sequence_number,
                    )
                    .map_err(|e| Error::iceberg(format!("merge into {location}"), e))?;
            }
        }
        writer
            .write_manifest_file()
            .await
            .map_err(|e| Error::iceberg(format!("write merged manifest {location}"), e))
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

    /// After a win: tombstone expired metadata versions and delete expired snapshots'
    /// manifest lists (best effort: a failure leaves garbage, never a broken table).
    async fn clean_up(&self, cleanup: Cleanup) {
        let own = format!("{}/metadata/", self.location);
        // Expired metadata versions, when `write.metadata.delete-after-commit.enabled`.
        let expired_versions = if cleanup.enabled {
            cleanup.metadata_files
        } else {
            Vec::new()
        };
        for location in expired_versions {
            let Some(name) = location.strip_prefix(&own) else {
                continue;
            };
            if let Some(v) = version::parse_metadata_file_name(name) {
                // Never delete a version: a stale writer could claim the freed name and fork
                // the history. A tiny tombstone keeps the name taken.
                let body = format!("{{\"floe-tombstone\": true, \"expired-version\": {}}}", v.0);
                let result = match self.warehouse.object_path(&location) {
                    Ok(path) => self
                        .warehouse
                        .store()
                        .put(&path, body.into_bytes().into())
                        .await
                        .map(|_| ()),
                    Err(_) => continue,
                };
                if let Err(e) = result {
                    tracing::warn!(object = %location, error = %e, "could not tombstone an expired version");
                }
            }
        }
        // Expired snapshots' manifest lists: one batched delete (a bulk request on S3).
        let lists: Vec<String> = cleanup
            .manifest_lists
            .into_iter()
            .filter(|l| l.starts_with(&own))
            .collect();
        self.delete_objects(&lists).await;
    }
}

/// What a commit made unreachable, removed once it has won (the driver's post-commit step).
#[derive(Debug, Default)]
pub(crate) struct Cleanup {
    /// The manifest list this commit wrote (cached by the handle once it has won).
    pub(crate) written_list: Option<(i64, Arc<Vec<ManifestFile>>)>,
    /// Whether expired metadata versions are tombstoned.
    pub(crate) enabled: bool,
    /// Metadata versions the commit expired from the metadata log.
    pub(crate) metadata_files: Vec<String>,
    /// Manifest lists of snapshots the commit expired.
    pub(crate) manifest_lists: Vec<String>,
}

/// The append action: one `append` snapshot of files whose manifest is written on the
/// first attempt and reused by every later one (its entries inherit their sequence number,
/// and the snapshot id stays fixed). Object names are fresh per call, never derived from
/// the commit id, so a rerun of the same commit can never overwrite a committed object.
struct AppendAction<'a> {
    files: Vec<DataFile>,
    manifest: Option<ManifestFile>,
    snapshot_id: i64,
    write_id: String,
    options: &'a CommitOptions,
}

#[async_trait::async_trait]
impl Action for AppendAction<'_> {
    fn kind(&self) -> &'static str {
        "append"
    }

    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>> {
        if self.files.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "append".into(),
                reason: "no data files to commit".into(),
            });
        }
        if self.manifest.is_none() {
            self.manifest = Some(
                table
                    .write_manifest(&self.files, self.snapshot_id, &self.write_id)
                    .await?,
            );
        }
        let manifest = self.manifest.as_ref().expect("written above");
        let (metadata, cleanup) = table
            .apply_append(
                &self.files,
                manifest,
                self.snapshot_id,
                self.options,
                &self.write_id,
                attempt,
            )
            .await?;
        Ok(Some(Applied { metadata, cleanup }))
    }
}

/// How long [`Table::append`] may take at most, for documentation and CLI defaults.
pub fn default_commit_timeout() -> Duration {
    RetryPolicy::default().max_elapsed
}
