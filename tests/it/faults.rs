//! A fault-injecting `ObjectStore` wrapper driven by rules: "fail the 1st create of a
//! path containing `v3.metadata.json` after it took effect".

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Which operation a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A create-only put (`PutMode::Create`).
    Create,
    /// Any other put, including multipart uploads.
    Put,
    /// A read of an object's content (not a HEAD).
    Get,
    /// A HEAD request.
    Head,
}

/// What happens when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail without sending: nothing changes.
    FailBefore,
    /// Perform the operation, then report a transport error (the ambiguous case).
    FailAfter,
    /// Perform the create, then report "already exists" (what an S3 client's internal retry
    /// of a create that won reports).
    ExistsAfter,
    /// Add latency, then perform it.
    Delay(Duration),
    /// Refuse with S3's `503 SlowDown` (as it surfaces once the client's own retries are
    /// spent): nothing changes.
    SlowDown,
    /// Stop before the operation until the test releases the store's [`Gate`], then perform
    /// it (an interleaving chosen by the test: another process acts meanwhile).
    Pause,
}

/// Where a [`Fault::Pause`] stops: the test waits until an operation reached it, acts, and
/// releases it.
#[derive(Debug)]
pub struct Gate {
    reached: tokio::sync::Semaphore,
    release: tokio::sync::Semaphore,
}

impl Gate {
    fn new() -> Self {
        Self {
            reached: tokio::sync::Semaphore::new(0),
            release: tokio::sync::Semaphore::new(0),
        }
    }

    /// Wait until an operation stopped at the gate.
    pub async fn reached(&self) {
        self.reached.acquire().await.unwrap().forget();
    }

    /// Let one stopped operation go on.
    pub fn release(&self) {
        self.release.add_permits(1);
    }

    async fn pass(&self) {
        self.reached.add_permits(1);
        self.release.acquire().await.unwrap().forget();
    }
}

/// One rule: the `nth` (1-based) matching operation on a path containing `path` gets `fault`.
#[derive(Debug)]
pub struct Rule {
    pub op: Op,
    pub path: String,
    pub nth: usize,
    pub times: usize,
    pub fault: Fault,
    seen: AtomicUsize,
}

impl Rule {
    pub fn new(op: Op, path: &str, nth: usize, fault: Fault) -> Self {
        Self {
            op,
            path: path.to_string(),
            nth,
            times: 1,
            fault,
            seen: AtomicUsize::new(0),
        }
    }

    /// Fire on `times` consecutive matches from the `nth` on.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }
}

/// The wrapper.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<Arc<Rule>>>,
    pub fired: AtomicUsize,
    /// Where [`Fault::Pause`] stops.
    pub gate: Gate,
    /// Every request, as (kind, key or prefix), when made by [`FaultyStore::recording`].
    log: Option<Mutex<Vec<(&'static str, String)>>>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

fn slow_down(path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: format!("injected: 503 SlowDown: Please reduce your request rate ({path})").into(),
    }
}

fn transport_error(path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: format!("injected: connection reset while writing {path}").into(),
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, rules: Vec<Rule>) -> Self {
        Self {
            inner,
            rules: Mutex::new(rules.into_iter().map(Arc::new).collect()),
            fired: AtomicUsize::new(0),
            gate: Gate::new(),
            log: None,
        }
    }

    /// A store with no rules that records every request (see [`FaultyStore::take_log`]).
    pub fn recording(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            log: Some(Mutex::new(Vec::new())),
            ..Self::new(inner, Vec::new())
        }
    }

    /// The requests recorded since the last call: (PUT, GET, HEAD, LIST or DELETE, key).
    pub fn take_log(&self) -> Vec<(&'static str, String)> {
        self.log
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().unwrap()))
            .unwrap_or_default()
    }

    fn note(&self, kind: &'static str, path: Option<&Path>) {
        if let Some(log) = &self.log {
            let key = path.map(|p| p.to_string()).unwrap_or_default();
            log.lock().unwrap().push((kind, key));
        }
    }

    fn fault_for(&self, op: Op, path: &Path) -> Option<Fault> {
        let rules = self.rules.lock().unwrap();
        let mut fault = None;
        for r in rules.iter() {
            if r.op == op && path.as_ref().contains(&r.path) {
                let n = r.seen.fetch_add(1, Ordering::SeqCst) + 1;
                if fault.is_none() && n >= r.nth && n < r.nth + r.times {
                    self.fired.fetch_add(1, Ordering::SeqCst);
                    fault = Some(r.fault);
                }
            }
        }
        fault
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.note("PUT", Some(location));
        let op = if matches!(opts.mode, PutMode::Create) {
            Op::Create
        } else {
            Op::Put
        };
        match self.fault_for(op, location) {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(Fault::FailBefore) => Err(transport_error(location)),
            Some(Fault::SlowDown) => Err(slow_down(location)),
            Some(Fault::FailAfter) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(transport_error(location))
            }
            Some(Fault::ExistsAfter) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "injected: retried create found its own object".into(),
                })
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                self.inner.put_opts(location, payload, opts).await
            }
            Some(Fault::Pause) => {
                self.gate.pass().await;
                self.inner.put_opts(location, payload, opts).await
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.note("PUT", Some(location));
        match self.fault_for(Op::Put, location) {
            Some(Fault::FailBefore) | Some(Fault::FailAfter) | Some(Fault::ExistsAfter) => {
                Err(transport_error(location))
            }
            Some(Fault::SlowDown) => Err(slow_down(location)),
            Some(Fault::Pause) => {
                self.gate.pass().await;
                self.inner.put_multipart_opts(location, opts).await
            }
            _ => self.inner.put_multipart_opts(location, opts).await,
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.note(if options.head { "HEAD" } else { "GET" }, Some(location));
        match self.fault_for(op, location) {
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Pause) => self.gate.pass().await,
            Some(_) => return Err(transport_error(location)),
            None => {}
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.note("GET", Some(location));
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.note("DELETE", None);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.note("LIST", prefix);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.note("LIST", prefix);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.note("PUT", Some(to));
        self.inner.copy_opts(from, to, options).await
    }
}
