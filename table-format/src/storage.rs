//! iceberg's [`Storage`] trait served by the warehouse's `object_store`, so data files,
//! manifests and metadata all go through one `Arc<dyn ObjectStore>` (and through any
//! wrapper a test puts around it).
//!
//! Reads are ranged (`get_range`); writes stream through a multipart upload
//! ([`BufWriter`]), so no whole data file is held in memory.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::warehouse::{StoreSpec, Warehouse};

/// Part size of streamed uploads to S3: its minimum part size. A writer holds at most one
/// part filling and [`UPLOAD_PARTS_IN_FLIGHT`] uploading.
pub const UPLOAD_PART_SIZE: usize = 5 * 1024 * 1024;

/// Part size of streamed writes to local files (and memory), which have no minimum: a local
/// part is written as soon as it fills, so a small part keeps a gateway's append small
/// (a 1M-row append's heap peaked near 25 MB with 5 MiB parts, 19 MB with 1 MiB parts;
/// 256 KiB, the gateway's row-group size, took another 2 MiB off, BENCHMARKS.md issue 19).
pub const LOCAL_PART_SIZE: usize = 256 * 1024;

/// Parts of one streamed upload in flight at once. object_store's default (8) would let a
/// writer hold 8 parts (40 MiB) of a large file while a slow link drains them; a gateway
/// has tens of megabytes in all. Two keep the link busy while the next part fills.
pub const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// What a serialized [`ObjectStoreStorage`] carries: enough to find or rebuild the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StorageSpec {
    url: String,
    store: StoreSpec,
    injected_id: Option<String>,
}

/// iceberg [`Storage`] over a [`Warehouse`]'s object store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StorageSpec", into = "StorageSpec")]
pub struct ObjectStoreStorage {
    warehouse: Warehouse,
}

impl TryFrom<StorageSpec> for ObjectStoreStorage {
    type Error = crate::Error;
    fn try_from(s: StorageSpec) -> crate::Result<Self> {
        Ok(Self {
            warehouse: Warehouse::from_parts(&s.url, s.store, s.injected_id.as_deref())?,
        })
    }
}

impl From<ObjectStoreStorage> for StorageSpec {
    fn from(s: ObjectStoreStorage) -> Self {
        StorageSpec {
            url: s.warehouse.url().to_string(),
            store: s.warehouse.spec().clone(),
            injected_id: s.warehouse.injected_id().map(str::to_string),
        }
    }
}

/// The largest object read whole through [`FileIO`] (manifests target 8 MiB).
pub const MAX_WHOLE_READ_BYTES: u64 = 64 << 20;

/// The factory iceberg asks for when it builds a [`FileIO`]; it hands out the same store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreStorageFactory {
    storage: ObjectStoreStorage,
}

impl ObjectStoreStorageFactory {
    /// A factory whose storage is `warehouse`'s store (for iceberg clients, such as a REST
    /// catalog client, that build their own [`FileIO`]).
    pub fn new(warehouse: &Warehouse) -> Self {
        Self {
            storage: ObjectStoreStorage {
                warehouse: warehouse.clone(),
            },
        }
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage.clone()))
    }
}

/// A [`FileIO`] whose every read and write goes to the warehouse's store.
pub fn file_io(warehouse: &Warehouse) -> FileIO {
    FileIOBuilder::new(Arc::new(ObjectStoreStorageFactory::new(warehouse))).build()
}

fn to_iceberg(op: &str, location: &str, e: object_store::Error) -> iceberg::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => iceberg::ErrorKind::DataInvalid,
        _ => iceberg::ErrorKind::Unexpected,
    };
    let retryable = crate::error::is_transient(&e);
    let err = iceberg::Error::new(kind, format!("{op} {location}: {e}")).with_source(e);
    if retryable {
        err.with_retryable(true)
    } else {
        err
    }
}

impl ObjectStoreStorage {
    fn path(&self, location: &str) -> iceberg::Result<Path> {
        self.warehouse
            .object_path(location)
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.warehouse.store()
    }
}

struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| to_iceberg("read", &self.location, e))
    }
}

struct ObjectWrite {
    writer: Option<BufWriter>,
    location: String,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let w = self.writer.as_mut().ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!("write to {} after close", self.location),
            )
        })?;
        if let Err(e) = w.put(bs).await {
            let _ = w.abort().await;
            self.writer = None;
            return Err(to_iceberg("write", &self.location, e));
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let mut w = self.writer.take().ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!("{} closed twice", self.location),
            )
        })?;
        // A failed shutdown leaves the writer unusable (object_store panics on a later
        // abort); an incomplete multipart upload is cleaned by the store's lifecycle rules.
        if let Err(e) = w.shutdown().await {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!("complete upload of {}: {e}", self.location),
            )
            .with_retryable(true));
        }
        Ok(())
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        match self.store().head(&self.path(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(to_iceberg("head", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let meta = self
            .store()
            .head(&self.path(path)?)
            .await
            .map_err(|e| to_iceberg("head", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    /// A whole-object read (iceberg reads manifests, manifest lists and metadata this way;
    /// data files through `reader`, by ranges). An object over [`MAX_WHOLE_READ_BYTES`] is
    /// refused before its body is read, so a hostile object cannot exhaust a gateway's
    /// memory.
    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let result = self
            .store()
            .get(&self.path(path)?)
            .await
            .map_err(|e| to_iceberg("read", path, e))?;
        if result.meta.size > MAX_WHOLE_READ_BYTES {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!(
                    "read {path}: {} bytes, over the {MAX_WHOLE_READ_BYTES} bytes Floe reads of a manifest or manifest list; refusing to load it",
                    result.meta.size
                ),
            ));
        }
        result
            .bytes()
            .await
            .map_err(|e| to_iceberg("read", path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        Ok(Box::new(ObjectRead {
            store: self.store().clone(),
            path: self.path(path)?,
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        self.store()
            .put(&self.path(path)?, bs.into())
            .await
            .map(|_| ())
            .map_err(|e| to_iceberg("write", path, e))
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let part_size = match self.warehouse.spec() {
            StoreSpec::S3 { .. } => UPLOAD_PART_SIZE,
            StoreSpec::Local | StoreSpec::Memory => LOCAL_PART_SIZE,
        };
        let writer = BufWriter::with_capacity(self.store().clone(), self.path(path)?, part_size)
            .with_max_concurrency(UPLOAD_PARTS_IN_FLIGHT);
        Ok(Box::new(ObjectWrite {
            writer: Some(writer),
            location: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        match self.store().delete(&self.path(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_iceberg("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let prefix = self.path(path)?;
        let store = self.store().clone();
        let listed = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        store
            .delete_stream(listed)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| to_iceberg("delete prefix", path, e))
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let this = self.clone();
        let keys = paths
            .map(move |p| {
                this.warehouse
                    .object_path(&p)
                    .map_err(|e| object_store::Error::Generic {
                        store: "floe",
                        source: Box::new(e),
                    })
            })
            .boxed();
        self.store()
            .delete_stream(keys)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| to_iceberg("delete", "stream", e))
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_through_file_io() {
        let wh = Warehouse::open("memory://storage-test").unwrap();
        let io = file_io(&wh);
        let loc = wh.location("a/b.bin");
        let out = io.new_output(&loc).unwrap();
        let mut w = out.writer().await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        w.write(Bytes::from_static(b"world")).await.unwrap();
        w.close().await.unwrap();
        let input = io.new_input(&loc).unwrap();
        assert_eq!(input.metadata().await.unwrap().size, 11);
        let r = input.reader().await.unwrap();
        assert_eq!(&r.read(6..11).await.unwrap()[..], b"world");
        assert!(io.exists(&loc).await.unwrap());
        io.delete(&loc).await.unwrap();
        assert!(!io.exists(&loc).await.unwrap());
    }

    #[test]
    fn serialized_storage_finds_an_injected_store() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let wh = Warehouse::with_store("memory://inj", store.clone()).unwrap();
        let s = ObjectStoreStorage { warehouse: wh };
        let json = serde_json::to_string(&s).unwrap();
        let back: ObjectStoreStorage = serde_json::from_str(&json).unwrap();
        assert!(Arc::ptr_eq(back.store(), &store));
    }
}
