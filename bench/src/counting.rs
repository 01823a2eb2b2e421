//! An `ObjectStore` wrapper that counts requests by kind: what a commit costs in requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use object_store::ObjectStore;

/// Counts requests by kind on the way to the real store.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    counts: [AtomicU64; 5],
    /// Requests on data files (keys ending in `.parquet`).
    data: AtomicU64,
    /// Bytes sent by single PUTs (multipart uploads are not counted).
    bytes: AtomicU64,
}

/// The kinds, in the order of [`Counting::snapshot`].
pub const KINDS: [&str; 5] = ["PUT", "GET", "HEAD", "LIST", "DELETE"];

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl Counting {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counts: Default::default(),
            data: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
    /// Requests of every kind so far.
    pub fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }
    fn bump(&self, k: usize) {
        self.counts[k].fetch_add(1, Ordering::Relaxed);
    }
    fn note(&self, location: &object_store::path::Path) {
        if location.as_ref().ends_with(".parquet") {
            self.data.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Requests on data files (keys ending in `.parquet`) so far.
    pub fn data_requests(&self) -> u64 {
        self.data.load(Ordering::Relaxed)
    }
    /// Bytes sent by single PUTs so far.
    pub fn bytes_put(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Requests of each kind so far, in the order of [`KINDS`].
    pub fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.bump(0);
        self.note(location);
        self.bytes
            .fetch_add(payload.content_length() as u64, Ordering::Relaxed);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.bump(0);
        self.note(location);
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.bump(if options.head { 2 } else { 1 });
        self.note(location);
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.bump(4);
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.bump(3);
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.bump(3);
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.bump(0);
        self.inner.copy_opts(from, to, options).await
    }
}
