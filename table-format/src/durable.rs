//! Durable writes on a local disk: object_store's `LocalFileSystem` writes a staging file
//! and links or renames it into place, but syncs nothing, so a power cut after an
//! acknowledged commit could lose it. [`DurableLocal`] wraps it: every put, completed
//! multipart upload and copy returns only after the file's data and its folder entry (and
//! the entries of any folders the write created) are synced. A commit is acknowledged
//! after its version object's put returns, so an acknowledged local commit is durable,
//! and a version a crash cuts short can only be one nobody was told about (the empty
//! "torn" version that loading skips, see [`crate::table`]).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// The files most recently synced by any [`DurableLocal`] of this process (for tests: a
/// write path that stopped syncing would drop out of it).
static RECENTLY_SYNCED: Mutex<VecDeque<PathBuf>> = Mutex::new(VecDeque::new());
const RECENT: usize = 4096;

/// Whether `file` is among the last few thousand files synced in this process.
pub fn recently_synced(file: &FsPath) -> bool {
    RECENTLY_SYNCED
        .lock()
        .map(|r| r.iter().any(|f| f == file))
        .unwrap_or(false)
}

/// A local file system rooted at `/` whose writes are durable when they return.
#[derive(Debug)]
pub struct DurableLocal {
    inner: LocalFileSystem,
}

impl DurableLocal {
    /// The local file system, rooted at `/`.
    pub fn new() -> Self {
        Self {
            inner: LocalFileSystem::new(),
        }
    }
}

impl Default for DurableLocal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableLocal({})", self.inner)
    }
}

/// The file a key names (the store is rooted at `/`).
fn file_of(location: &Path) -> PathBuf {
    PathBuf::from(format!("/{location}"))
}

/// The ancestors of `file` that do not exist yet (deepest first), before a write creates
/// them.
fn missing_folders(file: &FsPath) -> Vec<PathBuf> {
    file.ancestors()
        .skip(1)
        .take_while(|d| !d.exists())
        .map(FsPath::to_path_buf)
        .collect()
}

/// Sync `file`'s data, then the folder entries that make it reachable: its folder, and
/// for every folder the write created, that folder's parent.
fn sync_path(file: &FsPath, created: &[PathBuf]) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut folders: Vec<&FsPath> = file.parent().into_iter().collect();
    folders.extend(created.iter().filter_map(|d| d.parent()));
    for folder in folders {
        std::fs::File::open(folder)?.sync_all()?;
    }
    if let Ok(mut recent) = RECENTLY_SYNCED.lock() {
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(file.to_path_buf());
    }
    Ok(())
}

async fn sync(location: &Path, created: Vec<PathBuf>) -> Result<()> {
    let file = file_of(location);
    tokio::task::spawn_blocking(move || sync_path(&file, &created))
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocal",
            source: Box::new(e),
        })?
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocal",
            source: Box::new(e),
        })
}

#[async_trait]
impl ObjectStore for DurableLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let created = missing_folders(&file_of(location));
        let result = self.inner.put_opts(location, payload, opts).await?;
        sync(location, created).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let created = missing_folders(&file_of(location));
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            inner,
            location: location.clone(),
            created,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let created = missing_folders(&file_of(to));
        self.inner.copy_opts(from, to, options).await?;
        sync(to, created).await
    }
}

/// A local multipart upload whose completion syncs the file it makes.
#[derive(Debug)]
struct DurableUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    created: Vec<PathBuf>,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await?;
        sync(&self.location, std::mem::take(&mut self.created)).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// The store for a local warehouse.
pub(crate) fn local_store() -> Arc<dyn ObjectStore> {
    Arc::new(DurableLocal::new())
}
