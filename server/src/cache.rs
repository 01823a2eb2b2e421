//! The SQL endpoint's warm cache: reads of objects that never change, kept across queries
//! by location (and byte range), within a byte bound, least recently used first out.
//!
//! What never changes in a Floe warehouse: metadata versions (`metadata/*.metadata.json`,
//! create-only; an expired one may later become a tombstone, but no query reads an expired
//! version), manifest lists and manifests (`*.avro`), and data files (`*.parquet`, read
//! as footers, page indexes and pages). Everything else is read through: the version
//! hint and listings (so each query still finds each table's newest head), namespace and
//! principal documents, HEAD requests. A commit is therefore visible to the very next
//! query, and a dashboard refresh reads only the new objects.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Counters of a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Cacheable reads that went to the store.
    pub misses: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Entries held.
    pub entries: u64,
    /// The byte bound.
    pub capacity: u64,
}

/// What a read of a whole object (or a `GetOptions` range) answered with, beside its bytes.
type Answer = (ObjectMeta, Range<u64>);

struct Entry {
    bytes: Bytes,
    /// None for a range of `get_ranges`.
    meta: Option<Answer>,
    tick: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<String, Entry>,
    order: BTreeMap<u64, String>,
    bytes: u64,
    tick: u64,
}

/// An `ObjectStore` in front of another that caches reads of immutable objects.
pub struct CachingStore {
    inner: Arc<dyn ObjectStore>,
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachingStore({}, {} bytes)", self.inner, self.capacity)
    }
}

impl fmt::Display for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachingStore({})", self.inner)
    }
}

/// Whether the object at `path` never changes once written.
fn immutable(path: &Path) -> bool {
    let p = path.as_ref();
    p.ends_with(".parquet")
        || p.ends_with(".avro")
        || (p.ends_with(".metadata.json") && p.contains("/metadata/"))
        // The table index's schemas are named by the digest of their content.
        || (p.ends_with(".json") && p.contains("/.floe/schemas/"))
}

impl CachingStore {
    /// A cache of at most `capacity` bytes in front of `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: u64) -> Self {
        Self {
            inner,
            capacity,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let s = self.state.lock().expect("never poisoned");
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: s.bytes,
            entries: s.map.len() as u64,
            capacity: self.capacity,
        }
    }

    fn lookup(&self, key: &str) -> Option<(Bytes, Option<Answer>)> {
        let mut s = self.state.lock().expect("never poisoned");
        s.tick += 1;
        let tick = s.tick;
        let e = s.map.get_mut(key)?;
        let old = std::mem::replace(&mut e.tick, tick);
        let found = (e.bytes.clone(), e.meta.clone());
        s.order.remove(&old);
        s.order.insert(tick, key.to_string());
        Some(found)
    }

    fn insert(&self, key: String, bytes: Bytes, meta: Option<Answer>) {
        let size = bytes.len() as u64;
        if size > self.capacity / 4 {
            return; // one object never crowds out the rest
        }
        let mut s = self.state.lock().expect("never poisoned");
        s.tick += 1;
        let tick = s.tick;
        if let Some(old) = s.map.remove(&key) {
            s.order.remove(&old.tick);
            s.bytes -= old.bytes.len() as u64;
        }
        while s.bytes + size > self.capacity {
            let Some((_, victim)) = s.order.pop_first() else {
                break;
            };
            if let Some(e) = s.map.remove(&victim) {
                s.bytes -= e.bytes.len() as u64;
            }
        }
        s.bytes += size;
        s.order.insert(tick, key.clone());
        s.map.insert(key, Entry { bytes, meta, tick });
    }
}

/// A read's answer from bytes in hand.
fn answer(
    bytes: Bytes,
    meta: ObjectMeta,
    range: Range<u64>,
    attributes: object_store::Attributes,
) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
        meta,
        range,
        attributes,
    }
}

/// A plain read (no conditions, not a HEAD) of `location`, keyed by its range.
fn cache_key(location: &Path, options: &GetOptions) -> Option<String> {
    let plain = !options.head
        && options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none();
    (plain && immutable(location)).then(|| format!("{location}\n{:?}", options.range))
}

#[async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(key) = cache_key(location, &options) else {
            return self.inner.get_opts(location, options).await;
        };
        if let Some((bytes, Some((meta, range)))) = self.lookup(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(answer(bytes, meta, range, Default::default()));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let got = self.inner.get_opts(location, options).await?;
        let (meta, range, attributes) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone());
        let bytes = got.bytes().await?;
        self.insert(key, bytes.clone(), Some((meta.clone(), range.clone())));
        Ok(answer(bytes, meta, range, attributes))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !immutable(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        let key = |r: &Range<u64>| format!("{location}\n{r:?}");
        let mut out: Vec<Option<Bytes>> = ranges
            .iter()
            .map(|r| self.lookup(&key(r)).map(|(b, _)| b))
            .collect();
        let missing: Vec<Range<u64>> = ranges
            .iter()
            .zip(&out)
            .filter(|(_, b)| b.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        self.hits
            .fetch_add((ranges.len() - missing.len()) as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            self.misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            let fetched = self.inner.get_ranges(location, &missing).await?;
            let mut fetched = missing.into_iter().zip(fetched);
            for slot in out.iter_mut().filter(|b| b.is_none()) {
                if let Some((r, b)) = fetched.next() {
                    self.insert(key(&r), b.clone(), None);
                    *slot = Some(b);
                }
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
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
        self.inner.copy_opts(from, to, options).await
    }
}

/// `floe_cache()`: the cache's counters as a one-row table.
#[derive(Debug)]
pub struct CacheTable(pub Arc<CachingStore>);

impl TableFunctionImpl for CacheTable {
    fn call(&self, _args: &[Expr]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let s = self.0.stats();
        let names = ["hits", "misses", "bytes", "entries", "capacity"];
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::UInt64, false))
                .collect::<Vec<_>>(),
        ));
        let values = [s.hits, s.misses, s.bytes, s.entries, s.capacity];
        let batch = RecordBatch::try_new(
            schema.clone(),
            values
                .iter()
                .map(|v| Arc::new(UInt64Array::from(vec![*v])) as _)
                .collect(),
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
