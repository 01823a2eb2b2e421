//! Head stores: where a table's current version is recorded and how the next one is
//! claimed. The commit driver ([`crate::driver`]) speaks only this trait, so the two
//! layouts differ in one place:
//!
//! - [`HadoopHead`]: the Hadoop layout, `metadata/v{N}.metadata.json` claimed create-only
//!   (`If-None-Match: *`), with `version-hint.text` as a hint that is never trusted alone;
//! - [`PointerHead`]: a catalog's pointer (the SQL catalog's `metadata_location` column),
//!   a uniquely named metadata file written first and then a compare-and-swap of the
//!   pointer from the base it was built on.
//!
//! A read-only table (opened from one metadata file) has no head store at all: it is a
//! [`crate::table::TableView`], which cannot commit.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::spec::TableMetadata;
use object_store::{ObjectStoreExt, PutMode, PutOptions};

use crate::commit::{PutOutcome, ReadBack};
use crate::error::{is_transient, Error, Result};
use crate::pointer::{self, MetadataPointer};
use crate::version::{self, Version};
use crate::warehouse::Warehouse;

/// A table's head: its version number and the metadata object that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The version (for a pointer table, the sequence number in its file name).
    pub version: Version,
    /// The metadata object.
    pub metadata_location: String,
}

/// One claim of the next version: what the driver built, on what.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The head the next metadata was built on.
    pub base: &'a Head,
    /// The metadata of `base`.
    pub base_metadata: &'a TableMetadata,
    /// The next metadata.
    pub next: &'a TableMetadata,
    /// Where the next metadata is written ([`HeadStore::next_location`]).
    pub location: &'a str,
    /// The next metadata as written there.
    pub body: &'a [u8],
}

/// Where a table's head is recorded, and how the next version is claimed.
///
/// Contract: [`HeadStore::claim`] makes `location` the head only if `base` still is
/// (atomically); it answers `Won`, `Lost` (another writer's version is the head), or
/// `Unknown` (no clear answer: the claim may or may not have taken effect, settled by
/// [`HeadStore::read_back`]). An `Err` means the claim took no effect.
#[async_trait]
pub trait HeadStore: Send + Sync + fmt::Debug {
    /// A short name of the layout, for messages ("version sequence", "catalog pointer").
    fn layout(&self) -> &'static str;

    /// The current head. `known` is a head this handle saw earlier (the search starts
    /// there); `None` looks from scratch. `Ok(None)`: there is no table.
    async fn current(&self, known: Option<&Head>) -> Result<Option<Head>>;

    /// The metadata location a claim of version `target` writes.
    fn next_location(&self, target: Version) -> String;

    /// Claim the next version over `claim.base` with `claim.body` at `claim.location`.
    async fn claim(&self, claim: &Claim<'_>) -> Result<PutOutcome>;

    /// After an unclear claim: is `claim.location` (holding exactly `claim.body`) the head
    /// over `claim.base`?
    async fn read_back(&self, claim: &Claim<'_>) -> ReadBack;

    /// Best-effort bookkeeping once `head` was won (the Hadoop hint); never fails a commit.
    async fn after_win(&self, head: &Head);

    /// Before a claim on a base this writer has not seen for a while: is the base still
    /// this table's? [`Error::TableReplaced`] when it is gone or belongs to another table
    /// (a drop and a recreate in between). Layouts whose claim already compares the base
    /// (a pointer swap, a REST requirement on the uuid) need not check.
    async fn confirm_base(&self, _claim: &Claim<'_>) -> Result<()> {
        Ok(())
    }

    /// After a won claim of `location`: the head and metadata the store made current, when
    /// they are not the claimed ones (a REST catalog writes its own metadata file from the
    /// changes it was sent). `None`, the default: exactly what was claimed.
    fn landed(&self, _location: &str) -> Option<(Head, TableMetadata)> {
        None
    }

    /// Whether the writer cleans up after its own commits (tombstones of expired versions,
    /// expired manifest lists). A REST catalog does that itself for the commits it applies,
    /// and its writers may not delete.
    fn cleans_up(&self) -> bool {
        true
    }
}

/// The Hadoop layout: create-only `v{N}.metadata.json` plus `version-hint.text`.
#[derive(Debug, Clone)]
pub struct HadoopHead {
    warehouse: Warehouse,
    location: String,
}

impl HadoopHead {
    /// The head store of the table at `location` (its root, without `/metadata`).
    pub fn new(warehouse: &Warehouse, location: &str) -> Self {
        Self {
            warehouse: warehouse.clone(),
            location: location.to_string(),
        }
    }

    fn head(&self, v: Version) -> Head {
        Head {
            version: v,
            metadata_location: version::metadata_location(&self.location, v),
        }
    }
}

/// The layout name of [`HadoopHead`].
pub const HADOOP_LAYOUT: &str = "version sequence";

#[async_trait]
impl HeadStore for HadoopHead {
    fn layout(&self) -> &'static str {
        HADOOP_LAYOUT
    }

    async fn current(&self, known: Option<&Head>) -> Result<Option<Head>> {
        let (wh, loc) = (&self.warehouse, self.location.as_str());
        let Some(known) = known else {
            return Ok(version::find_head(wh, loc).await?.map(|v| self.head(v)));
        };
        // Start from the hint when it is ahead (a writer that fell far behind would
        // otherwise probe every version in between).
        let start = match version::read_hint(wh, loc).await? {
            Some(h) if h > known.version && version::version_exists(wh, loc, h).await? => h,
            _ => known.version,
        };
        Ok(Some(
            self.head(version::probe_forward(wh, loc, start).await?),
        ))
    }

    fn next_location(&self, target: Version) -> String {
        version::metadata_location(&self.location, target)
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<PutOutcome> {
        let location = claim.location;
        let path = self.warehouse.object_path(location)?;
        match self
            .warehouse
            .store()
            .put_opts(
                &path,
                claim.body.to_vec().into(),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(PutOutcome::Won),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Lost),
            Err(e) if is_transient(&e) => {
                tracing::warn!(object = location, error = %e, "claim had no clear answer");
                Ok(PutOutcome::Unknown)
            }
            Err(source) => Err(Error::Write {
                location: location.to_string(),
                source,
            }),
        }
    }

    async fn read_back(&self, claim: &Claim<'_>) -> ReadBack {
        let (location, body) = (claim.location, claim.body);
        let Ok(path) = self.warehouse.object_path(location) else {
            return ReadBack::Failed;
        };
        match self.warehouse.store().get(&path).await {
            Ok(r) => match r.bytes().await {
                Ok(b) if b.as_ref() == body => ReadBack::Ours,
                Ok(_) => ReadBack::Theirs,
                Err(e) => {
                    tracing::warn!(error = %e, "read-back failed");
                    ReadBack::Failed
                }
            },
            Err(object_store::Error::NotFound { .. }) => ReadBack::Missing,
            Err(e) => {
                tracing::warn!(error = %e, "read-back failed");
                ReadBack::Failed
            }
        }
    }

    async fn after_win(&self, head: &Head) {
        if let Err(e) = version::write_hint(&self.warehouse, &self.location, head.version).await {
            tracing::warn!(error = %e, "could not write the version hint");
        }
    }

    /// A create-only claim of `v{N+1}` cannot tell a recreated table's folder from the one
    /// it built on: read `v{N}` back and compare its table uuid. A tombstone there is this
    /// or a later history moving on (a tombstone is written only below a won version, so
    /// `v{N+1}` exists and the claim will lose and refresh, which compares the uuid).
    async fn confirm_base(&self, claim: &Claim<'_>) -> Result<()> {
        let location = &claim.base.metadata_location;
        let replaced = || Error::TableReplaced {
            table: self.location.clone(),
            location: location.clone(),
        };
        let path = self.warehouse.object_path(location)?;
        let bytes = match self.warehouse.store().get(&path).await {
            Ok(r) => r.bytes().await.map_err(|source| Error::Read {
                location: location.clone(),
                source,
            })?,
            Err(object_store::Error::NotFound { .. }) => return Err(replaced()),
            Err(source) => {
                return Err(Error::Read {
                    location: location.clone(),
                    source,
                })
            }
        };
        if version::is_tombstone(&bytes) {
            return Ok(());
        }
        match crate::metadata::parse(&bytes, location) {
            Ok(m) if m.uuid() == claim.base_metadata.uuid() => Ok(()),
            _ => Err(replaced()),
        }
    }
}

/// A catalog's pointer: a fresh `{NNNNN}-{uuid}.metadata.json`, then a CAS of the pointer.
#[derive(Debug, Clone)]
pub struct PointerHead {
    warehouse: Warehouse,
    location: String,
    pointer: Arc<dyn MetadataPointer>,
}

impl PointerHead {
    /// The head store of the table at `location` whose head `pointer` records.
    pub fn new(warehouse: &Warehouse, location: &str, pointer: Arc<dyn MetadataPointer>) -> Self {
        Self {
            warehouse: warehouse.clone(),
            location: location.to_string(),
            pointer,
        }
    }

    /// The head `pointer` records now, if any (before the table's location is known).
    pub(crate) async fn read(pointer: &dyn MetadataPointer) -> Result<Option<Head>> {
        Ok(pointer.current().await?.map(|l| Head {
            version: Version(pointer::sequence_of(&l)),
            metadata_location: l,
        }))
    }
}

#[async_trait]
impl HeadStore for PointerHead {
    fn layout(&self) -> &'static str {
        "catalog pointer"
    }

    async fn current(&self, _known: Option<&Head>) -> Result<Option<Head>> {
        Self::read(self.pointer.as_ref()).await
    }

    fn next_location(&self, target: Version) -> String {
        pointer::new_metadata_location(&self.location, target.0)
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<PutOutcome> {
        let (base, location) = (claim.base, claim.location);
        // The file's name is unique, so writing it decides nothing; the swap does.
        self.warehouse
            .store()
            .put(
                &self.warehouse.object_path(location)?,
                claim.body.to_vec().into(),
            )
            .await
            .map_err(|source| Error::Write {
                location: location.to_string(),
                source,
            })?;
        match self.pointer.swap(&base.metadata_location, location).await {
            Ok(true) => Ok(PutOutcome::Won),
            Ok(false) => Ok(PutOutcome::Lost),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "pointer swap had no clear answer");
                Ok(PutOutcome::Unknown)
            }
            Err(e) => Err(e),
        }
    }

    async fn read_back(&self, claim: &Claim<'_>) -> ReadBack {
        let (base, location) = (claim.base, claim.location);
        match self.pointer.current().await {
            Ok(Some(cur)) if cur == location => ReadBack::Ours,
            Ok(Some(cur)) if cur == base.metadata_location => ReadBack::Missing,
            Ok(_) => ReadBack::Theirs,
            Err(e) => {
                tracing::warn!(error = %e, "read-back failed");
                ReadBack::Failed
            }
        }
    }

    async fn after_win(&self, _head: &Head) {}
}
