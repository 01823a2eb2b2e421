//! Moving data files' bytes from the local warehouse to the cloud: streamed copies (one
//! PUT, or a multipart upload for large files) that skip what the cloud already holds, a
//! shared bandwidth cap, and the progress sink they report to.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, WriteMultipart};

use floe_table_format::{Error as TableError, Warehouse};

use crate::error::Result;

/// Objects up to this size are copied with one PUT; larger ones as a multipart upload.
pub(crate) const MULTIPART_THRESHOLD: u64 = 8 << 20;

/// Part size of multipart copies: the streamed-upload part size (S3's minimum). A copy
/// waits for each part before filling the next, so it holds about two parts (10 MiB).
pub(crate) const PART_SIZE: usize = floe_table_format::storage::UPLOAD_PART_SIZE;

/// Reports progress of a sync (a progress bar in the CLI). All methods default to no-ops.
pub trait SyncProgress: Send + Sync {
    /// Files and bytes planned for copying (called once per table, before its copies).
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// Bytes copied.
    fn copied(&self, _bytes: u64) {}
    /// One file done (copied, or skipped because the cloud had it).
    fn file_done(&self, _skipped: bool, _bytes: u64) {}
}

/// No progress reporting.
#[derive(Debug, Default)]
pub struct NoProgress;
impl SyncProgress for NoProgress {}

/// A bandwidth cap shared by every copy of a run (`--max-bytes-per-sec`): a bucket of
/// virtual time; each chunk waits until the bytes before it have had their share of time,
/// so at most `rate` bytes per second go out on average.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec.max(1),
            next: Mutex::new(None),
        }
    }

    /// Wait until `n` more bytes may go out.
    pub async fn take(&self, n: u64) {
        let wait = {
            let mut next = self.next.lock().expect("rate limiter poisoned");
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let end = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *next = Some(end);
            end.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What every copy of a run shares: the bandwidth cap and the progress sink.
#[derive(Clone, Copy)]
pub(crate) struct Copier<'a> {
    /// Optional bandwidth cap.
    pub(crate) limiter: Option<&'a RateLimiter>,
    /// Where copied bytes are reported.
    pub(crate) progress: &'a dyn SyncProgress,
}

impl Copier<'_> {
    /// Copy one object from `src` to `dst` unless `dst` already holds `size` bytes there.
    /// Streams: one PUT for small objects, a multipart upload for large ones. With
    /// `resume_at` (a location in `src`) and a `dst` store with a multipart API, a large
    /// upload records its parts there as they complete, and a later call after a kill
    /// sends only the parts still missing. Returns the bytes sent, or None when `dst`
    /// already held the object.
    pub(crate) async fn copy_object(
        &self,
        src: &Warehouse,
        src_location: &str,
        dst: &Warehouse,
        dst_location: &str,
        size: u64,
        resume_at: Option<&str>,
    ) -> Result<Option<u64>> {
        let dst_path = dst.object_path(dst_location)?;
        match dst.store().head(&dst_path).await {
            Ok(meta) if meta.size == size => return Ok(None),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(TableError::Read {
                    location: dst_location.to_string(),
                    source,
                }
                .into())
            }
        }
        if let (Some(at), Some(multipart)) = (resume_at, dst.multipart()) {
            if size > MULTIPART_THRESHOLD {
                let upload = Resumable {
                    src,
                    src_location,
                    multipart: multipart.as_ref(),
                    dst_path: &dst_path,
                    dst_location,
                    size,
                    journal: at,
                };
                return self.copy_resumable(&upload).await.map(Some);
            }
        }
        let read_err = |source| TableError::Read {
            location: src_location.to_string(),
            source,
        };
        let write_err = |source| TableError::Write {
            location: dst_location.to_string(),
            source,
        };
        let got = src
            .store()
            .get(&src.object_path(src_location)?)
            .await
            .map_err(read_err)?;
        check_size(src_location, got.meta.size, size)?;
        let mut stream = got.into_stream();
        if size <= MULTIPART_THRESHOLD {
            let mut buf = Vec::with_capacity(size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_err)?;
                if let Some(l) = self.limiter {
                    l.take(chunk.len() as u64).await;
                }
                buf.extend_from_slice(&chunk);
            }
            dst.store()
                .put(&dst_path, buf.into())
                .await
                .map_err(write_err)?;
            self.progress.copied(size);
            return Ok(Some(size));
        }
        let upload = dst
            .store()
            .put_multipart(&dst_path)
            .await
            .map_err(write_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let result: Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_err)?;
                if let Some(l) = self.limiter {
                    l.take(chunk.len() as u64).await;
                }
                writer.wait_for_capacity(1).await.map_err(write_err)?;
                self.progress.copied(chunk.len() as u64);
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                writer.finish().await.map_err(write_err)?;
                Ok(Some(size))
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(object = dst_location, error = %abort, "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// A source file must hold the bytes its manifest records, or nothing is copied.
fn check_size(location: &str, holds: u64, records: u64) -> Result<()> {
    if holds == records {
        return Ok(());
    }
    Err(TableError::CorruptMetadata {
        location: location.to_string(),
        reason: format!("the file holds {holds} bytes but its manifest records {records}"),
    }
    .into())
}

/// A large copy that survives a kill: the upload id and the parts sent so far are kept in
/// a small journal in the source warehouse, rewritten after each part.
struct Resumable<'a> {
    src: &'a Warehouse,
    src_location: &'a str,
    multipart: &'a dyn MultipartStore,
    dst_path: &'a object_store::path::Path,
    dst_location: &'a str,
    size: u64,
    journal: &'a str,
}

/// The journal of a resumable upload.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UploadJournal {
    target: String,
    size: u64,
    part_size: usize,
    upload_id: String,
    parts: Vec<String>,
}

impl Copier<'_> {
    async fn copy_resumable(&self, u: &Resumable<'_>) -> Result<u64> {
        let src_path = u.src.object_path(u.src_location)?;
        let read_err = |source| TableError::Read {
            location: u.src_location.to_string(),
            source,
        };
        let write_err = |source| TableError::Write {
            location: u.dst_location.to_string(),
            source,
        };
        let meta = u.src.store().head(&src_path).await.map_err(read_err)?;
        check_size(u.src_location, meta.size, u.size)?;
        let journal_path = u.src.object_path(u.journal)?;
        let mut sent = 0;
        // A journal of another target, size or part size is not this upload's.
        let mut state = read_upload_journal(u.src, &journal_path)
            .await
            .filter(|j| j.target == u.dst_location && j.size == u.size && j.part_size == PART_SIZE);
        for _ in 0..2 {
            let resumed = state.is_some();
            let mut j = match state.take() {
                Some(j) => j,
                None => {
                    let id = u
                        .multipart
                        .create_multipart(u.dst_path)
                        .await
                        .map_err(write_err)?;
                    let j = UploadJournal {
                        target: u.dst_location.to_string(),
                        size: u.size,
                        part_size: PART_SIZE,
                        upload_id: id,
                        parts: Vec::new(),
                    };
                    write_upload_journal(u.src, &journal_path, u.journal, &j).await?;
                    j
                }
            };
            let parts = u.size.div_ceil(PART_SIZE as u64) as usize;
            let mut gone = false;
            while j.parts.len() < parts {
                let i = j.parts.len();
                let start = (i * PART_SIZE) as u64;
                let end = (start + PART_SIZE as u64).min(u.size);
                let bytes = u
                    .src
                    .store()
                    .get_range(&src_path, start..end)
                    .await
                    .map_err(read_err)?;
                if let Some(l) = self.limiter {
                    l.take(end - start).await;
                }
                match u
                    .multipart
                    .put_part(u.dst_path, &j.upload_id, i, bytes.into())
                    .await
                {
                    Ok(part) => j.parts.push(part.content_id),
                    // The upload a journal names was aborted or expired: start over once.
                    Err(object_store::Error::NotFound { .. }) if resumed => {
                        gone = true;
                        break;
                    }
                    Err(e) => return Err(write_err(e).into()),
                }
                self.progress.copied(end - start);
                sent += end - start;
                write_upload_journal(u.src, &journal_path, u.journal, &j).await?;
            }
            if gone {
                continue;
            }
            let ids = j
                .parts
                .iter()
                .map(|c| PartId {
                    content_id: c.clone(),
                })
                .collect();
            match u
                .multipart
                .complete_multipart(u.dst_path, &j.upload_id, ids)
                .await
            {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) if resumed => continue,
                Err(e) => return Err(write_err(e).into()),
            }
            if let Err(e) = u.src.store().delete(&journal_path).await {
                tracing::warn!(journal = u.journal, error = %e, "could not remove an upload journal");
            }
            return Ok(sent);
        }
        Err(TableError::Write {
            location: u.dst_location.to_string(),
            source: object_store::Error::Generic {
                store: "multipart",
                source: "the upload was lost twice".into(),
            },
        }
        .into())
    }
}

async fn read_upload_journal(
    src: &Warehouse,
    path: &object_store::path::Path,
) -> Option<UploadJournal> {
    let body = src.store().get(path).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&body).ok()
}

async fn write_upload_journal(
    src: &Warehouse,
    path: &object_store::path::Path,
    location: &str,
    j: &UploadJournal,
) -> Result<()> {
    let body = serde_json::to_vec(j).expect("a journal serializes");
    src.store()
        .put(path, body.into())
        .await
        .map_err(|source| TableError::Write {
            location: location.to_string(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_limiter_holds_the_average_rate() {
        let limiter = RateLimiter::new(100_000);
        let started = Instant::now();
        for _ in 0..4 {
            limiter.take(25_000).await;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(950), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn copies_stream_small_and_multipart_objects_and_skip_what_is_there() {
        let src = Warehouse::open(&format!("memory://copy-src-{}", uuid::Uuid::new_v4())).unwrap();
        let dst = Warehouse::open(&format!("memory://copy-dst-{}", uuid::Uuid::new_v4())).unwrap();
        let copier = Copier {
            limiter: None,
            progress: &NoProgress,
        };
        for size in [
            1_000usize,
            (MULTIPART_THRESHOLD as usize) + 3 * PART_SIZE / 2,
        ] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let from = src.location(&format!("t/data/f{size}.parquet"));
            let to = dst.location(&format!("t/data/f{size}.parquet"));
            src.store()
                .put(&src.object_path(&from).unwrap(), body.clone().into())
                .await
                .unwrap();
            let n = size as u64;
            assert!(copier
                .copy_object(&src, &from, &dst, &to, n, None)
                .await
                .unwrap()
                .is_some());
            let got = dst
                .store()
                .get(&dst.object_path(&to).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(got.as_ref(), body.as_slice(), "{size}");
            // Present with the same size: skipped.
            assert!(copier
                .copy_object(&src, &from, &dst, &to, n, None)
                .await
                .unwrap()
                .is_none());
            // A size the manifest does not record: refused, nothing written.
            let other = dst.location("t/data/other.parquet");
            assert!(copier
                .copy_object(&src, &from, &dst, &other, n + 1, None)
                .await
                .is_err());
        }
        // A leftover of another size is replaced.
        let from = src.location("t/data/f1000.parquet");
        let to = dst.location("t/data/f1000.parquet");
        dst.store()
            .put(&dst.object_path(&to).unwrap(), vec![0u8; 10].into())
            .await
            .unwrap();
        assert!(copier
            .copy_object(&src, &from, &dst, &to, 1_000, None)
            .await
            .unwrap()
            .is_some());
    }
}
