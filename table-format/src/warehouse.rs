//! Warehouses: a root URL and the one object store that serves everything under it.
//!
//! Accepted URLs:
//! - a plain path (`./warehouse`, `/var/lib/floe`) or `file:///abs/path`: the local file
//!   system; create-only puts are atomic create-if-absent.
//! - `memory://name`: an in-process store shared by everything in the process.
//! - `s3://bucket/prefix`: S3 or an S3-compatible server, configured from the standard
//!   `AWS_*` variables plus `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP`.
//!
//! Every location Floe writes into table metadata is an absolute URL under the warehouse
//! URL (`file:///…`, `memory://…`, `s3://bucket/…`), which is what other Iceberg readers
//! expect. [`Warehouse::object_path`] maps such a location back to a key of the store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which kind of store a warehouse lives on, with what is needed to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreSpec {
    /// The local file system, rooted at `/`.
    Local,
    /// The process-wide in-memory store.
    Memory,
    /// One S3 bucket. Credentials are read from the environment when the store is built;
    /// they are never serialized.
    S3 {
        /// The bucket.
        bucket: String,
    },
}

static MEMORY_STORE: LazyLock<Arc<InMemory>> = LazyLock::new(|| Arc::new(InMemory::new()));

/// Stores handed in by callers (for example a fault-injecting wrapper), so a serialized
/// [`crate::storage::ObjectStoreStorage`] can find the same instance again in this process.
static INJECTED: LazyLock<Mutex<HashMap<String, Weak<dyn ObjectStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A warehouse root and its store. Cheap to clone.
#[derive(Clone)]
pub struct Warehouse {
    url: String,
    spec: StoreSpec,
    store: Arc<dyn ObjectStore>,
    /// The same store's multipart API, when it has one (S3): uploads that resume part by
    /// part after a kill (sync's copies).
    multipart: Option<Arc<dyn MultipartStore>>,
    injected_id: Option<String>,
}

impl fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warehouse").field("url", &self.url).finish()
    }
}

impl Warehouse {
    /// Open the warehouse at `url` (see the module docs for the accepted forms).
    pub fn open(url: &str) -> Result<Self> {
        let (url, spec) = normalize(url)?;
        let (store, multipart) = build_store(&spec, &url)?;
        Ok(Self {
            url,
            spec,
            store,
            multipart,
            injected_id: None,
        })
    }

    /// Use a caller-supplied store for the warehouse at `url` (tests wrap a real store to
    /// inject faults or count requests). `url` decides how locations map to keys.
    pub fn with_store(url: &str, store: Arc<dyn ObjectStore>) -> Result<Self> {
        let (url, spec) = normalize(url)?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut injected = INJECTED.lock().expect("injected-store registry poisoned");
        injected.retain(|_, w| w.strong_count() > 0);
        injected.insert(id.clone(), Arc::downgrade(&store));
        Ok(Self {
            url,
            spec,
            store,
            multipart: None,
            injected_id: Some(id),
        })
    }

    /// Rebuild a warehouse from its serialized parts (see [`crate::storage`]).
    pub(crate) fn from_parts(
        url: &str,
        spec: StoreSpec,
        injected_id: Option<&str>,
    ) -> Result<Self> {
        if let Some(id) = injected_id {
            let injected = INJECTED.lock().expect("injected-store registry poisoned");
            if let Some(store) = injected.get(id).and_then(Weak::upgrade) {
                return Ok(Self {
                    url: url.to_string(),
                    spec,
                    store,
                    multipart: None,
                    injected_id: Some(id.to_string()),
                });
            }
        }
        let (store, multipart) = build_store(&spec, url)?;
        Ok(Self {
            url: url.to_string(),
            spec,
            store,
            multipart,
            injected_id: None,
        })
    }

    /// The normalized root URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store kind.
    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    pub(crate) fn injected_id(&self) -> Option<&str> {
        self.injected_id.as_deref()
    }

    /// The store's multipart API (S3 only), for uploads that resume part by part.
    pub fn multipart(&self) -> Option<&Arc<dyn MultipartStore>> {
        self.multipart.as_ref()
    }

    /// This warehouse with `multipart` as its store's multipart API (the same store, seen
    /// through [`MultipartStore`]).
    pub fn with_multipart(mut self, multipart: Arc<dyn MultipartStore>) -> Self {
        self.multipart = Some(multipart);
        self
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The absolute location of a path relative to the warehouse root.
    pub fn location(&self, relative: &str) -> String {
        if relative.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{}", self.url, relative)
        }
    }

    /// Every object under `location` (recursive).
    pub async fn list_all(&self, location: &str) -> Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = self.object_path(location)?;
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::List {
                location: location.to_string(),
                source,
            })
    }

    /// Map an absolute location (as written in Iceberg metadata) to a key of this store.
    pub fn object_path(&self, location: &str) -> Result<Path> {
        let foreign = || Error::ForeignLocation {
            location: location.to_string(),
            store: self.url.clone(),
        };
        let key = match &self.spec {
            StoreSpec::Local => {
                let rest = location
                    .strip_prefix("file://")
                    .or_else(|| location.strip_prefix("file:"))
                    .unwrap_or(location);
                if !rest.starts_with('/') {
                    return Err(foreign());
                }
                rest
            }
            StoreSpec::Memory => location.strip_prefix("memory://").ok_or_else(foreign)?,
            StoreSpec::S3 { bucket } => {
                let rest = ["s3://", "s3a://", "s3n://"]
                    .iter()
                    .find_map(|p| location.strip_prefix(p))
                    .ok_or_else(foreign)?;
                let (b, key) = rest.split_once('/').unwrap_or((rest, ""));
                if b != bucket {
                    return Err(foreign());
                }
                key
            }
        };
        Path::parse(key.trim_start_matches('/')).map_err(|e| Error::InvalidArgument {
            argument: format!("location '{location}'"),
            reason: e.to_string(),
        })
    }
}

/// Normalize a warehouse URL and decide its store kind.
fn normalize(url: &str) -> Result<(String, StoreSpec)> {
    let invalid = |reason: &str| Error::InvalidWarehouse {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let url_trimmed = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("memory://") {
        let rest = rest.trim_matches('/');
        check_segments(rest).map_err(|r| invalid(&r))?;
        let url = if rest.is_empty() {
            "memory://".to_string()
        } else {
            format!("memory://{rest}")
        };
        return Ok((url, StoreSpec::Memory));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("an s3 URL names a bucket: s3://bucket/prefix"));
        }
        check_segments(prefix).map_err(|r| invalid(&r))?;
        return Ok((
            format!("s3://{}", rest),
            StoreSpec::S3 {
                bucket: bucket.to_string(),
            },
        ));
    }
    let path = if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(invalid("a file URL is absolute: file:///path"));
        }
        std::path::PathBuf::from(rest)
    } else if url.contains("://") {
        return Err(invalid(
            "unsupported scheme (use a path, file://, memory:// or s3://)",
        ));
    } else if url_trimmed.is_empty() {
        return Err(invalid("empty warehouse"));
    } else {
        std::path::absolute(url).map_err(|e| invalid(&e.to_string()))?
    };
    let text = path
        .to_str()
        .ok_or_else(|| invalid("the path is not valid UTF-8"))?
        .trim_end_matches('/');
    // `absolute` keeps `..`; resolve lexically so keys are canonical.
    let mut parts: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    Ok((format!("file:///{}", parts.join("/")), StoreSpec::Local))
}

fn check_segments(prefix: &str) -> std::result::Result<(), String> {
    for seg in prefix.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err("'.' and '..' are not allowed in a warehouse prefix".into());
        }
    }
    Ok(())
}

/// The store for `spec`, and its multipart API when it has one.
type Stores = (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>);

fn build_store(spec: &StoreSpec, url: &str) -> Result<Stores> {
    match spec {
        // Durable: a local write is synced (data and folder entries) before it returns.
        StoreSpec::Local => Ok((crate::durable::local_store(), None)),
        StoreSpec::Memory => Ok((MEMORY_STORE.clone(), None)),
        StoreSpec::S3 { bucket } => {
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var_os("AWS_ENDPOINT_URL").is_some()
                || std::env::var_os("AWS_ENDPOINT").is_some()
            {
                // S3-compatible servers are addressed by path, not by virtual host.
                builder = builder.with_virtual_hosted_style_request(false);
            }
            let client = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(30));
            let client = match std::env::var("AWS_ALLOW_HTTP") {
                Ok(v) if matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes") => {
                    client.with_allow_http(true)
                }
                _ => client,
            };
            // The store's own retries cover 5xx, 429 (SlowDown) and dropped connections;
            // a commit's outcome is still verified by Floe, so a retried create-only put
            // that reports "already exists" after it won is settled by the commit id.
            let retry = RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            };
            let store = builder
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(|e| Error::InvalidWarehouse {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_urls() {
        let w = Warehouse::open("memory://wh/").unwrap();
        assert_eq!(w.url(), "memory://wh");
        assert_eq!(
            w.object_path("memory://wh/fleet/t/metadata/v1.metadata.json")
                .unwrap()
                .as_ref(),
            "wh/fleet/t/metadata/v1.metadata.json"
        );
        let w = Warehouse::open("/tmp/a/../b/").unwrap();
        assert_eq!(w.url(), "file:///tmp/b");
        assert_eq!(
            w.object_path("file:///tmp/b/x").unwrap().as_ref(),
            "tmp/b/x"
        );
        assert_eq!(w.object_path("/tmp/b/x").unwrap().as_ref(), "tmp/b/x");
        assert_eq!(w.object_path("file:/tmp/b/x").unwrap().as_ref(), "tmp/b/x");
        assert!(w.object_path("s3://b/x").is_err());
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in ["", "gs://x", "file://relative", "s3://", "memory://a/../b"] {
            assert!(Warehouse::open(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn s3_locations_must_match_the_bucket() {
        let (url, spec) = normalize("s3://bucket/pre/fix/").unwrap();
        assert_eq!(url, "s3://bucket/pre/fix");
        assert_eq!(
            spec,
            StoreSpec::S3 {
                bucket: "bucket".into()
            }
        );
    }
}
