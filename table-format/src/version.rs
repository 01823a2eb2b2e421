//! Metadata versions: `metadata/v{N}.metadata.json`, the version hint, and finding the head.
//!
//! Versions start at 1 and are gap-free; each is created once, create-only, by the writer
//! that claims it. `metadata/version-hint.text` holds the last version a writer won, as a
//! bare number without a newline. The hint is a shortcut, never the truth: the head is the
//! highest `N` such that `v{N}` exists, found by probing forward from the hint (or from a
//! LIST of `metadata/` when the hint is missing, unreadable or ahead of the versions).

use std::fmt;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

/// A metadata version number (`v{N}.metadata.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl Version {
    /// The version after this one; `None` after `u64::MAX` (a name from storage may be
    /// anything, so a caller must not assume there is a next version).
    pub fn next(self) -> Option<Version> {
        self.0.checked_add(1).map(Version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// `{table}/metadata/v{N}.metadata.json`.
pub fn metadata_location(table_location: &str, v: Version) -> String {
    format!("{table_location}/metadata/v{}.metadata.json", v.0)
}

/// `{table}/metadata/version-hint.text`.
pub fn hint_location(table_location: &str) -> String {
    format!("{table_location}/metadata/version-hint.text")
}

/// Parse a metadata file name `v{N}.metadata.json` (N ≥ 1, no sign, no leading zeros).
pub fn parse_metadata_file_name(name: &str) -> Option<Version> {
    let digits = name.strip_prefix('v')?.strip_suffix(".metadata.json")?;
    parse_number(digits).map(Version)
}

/// Parse the content of a version hint. Surrounding whitespace is tolerated on read (Floe
/// never writes any).
pub fn parse_hint(content: &[u8]) -> Option<Version> {
    let s = std::str::from_utf8(content).ok()?;
    parse_number(s.trim()).map(Version)
}

/// Parse a version number: decimal, at least 1, no sign, no leading zeros.
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok().filter(|n| *n >= 1)
}

async fn exists(store: &dyn ObjectStore, path: &Path, location: &str) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(source) => Err(Error::Read {
            location: location.to_string(),
            source,
        }),
    }
}

/// Whether version `v` of the table exists (a HEAD).
pub async fn version_exists(
    warehouse: &Warehouse,
    table_location: &str,
    v: Version,
) -> Result<bool> {
    let loc = metadata_location(table_location, v);
    let path = warehouse.object_path(&loc)?;
    exists(warehouse.store().as_ref(), &path, &loc).await
}

/// Whether a metadata object is a tombstone left by metadata cleanup (an expired version
/// whose name stays taken so no stale writer can claim it again).
pub fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.len() < 256 && bytes.windows(14).any(|w| w == b"floe-tombstone")
}

/// The hint's version, if the hint exists and holds a number.
pub async fn read_hint(warehouse: &Warehouse, table_location: &str) -> Result<Option<Version>> {
    let location = hint_location(table_location);
    let path = warehouse.object_path(&location)?;
    match warehouse.store().get(&path).await {
        // A hint is a number: anything larger is junk, ignored unread like a garbage hint.
        Ok(r) if r.meta.size > 64 => Ok(None),
        Ok(r) => match r.bytes().await {
            Ok(bytes) => Ok(parse_hint(&bytes)),
            // The hint is never trusted alone: one that cannot be read (a store that kept
            // a put cut short by a kill) is no hint, and the versions are listed instead.
            Err(e) => {
                tracing::warn!(object = %location, error = %e, "unreadable version hint; listing the versions");
                Ok(None)
            }
        },
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Read { location, source }),
    }
}

/// Write the hint (best effort is the caller's choice: the hint is never trusted alone).
pub async fn write_hint(warehouse: &Warehouse, table_location: &str, v: Version) -> Result<()> {
    let location = hint_location(table_location);
    let path = warehouse.object_path(&location)?;
    warehouse
        .store()
        .put(&path, v.0.to_string().into_bytes().into())
        .await
        .map_err(|source| Error::Write { location, source })?;
    Ok(())
}

/// Every version listed under `metadata/`, sorted ascending.
pub async fn list_versions(warehouse: &Warehouse, table_location: &str) -> Result<Vec<Version>> {
    let location = format!("{table_location}/metadata");
    let prefix = warehouse.object_path(&location)?;
    let metas: Vec<_> = warehouse
        .store()
        .list_with_delimiter(Some(&prefix))
        .await
        .map(|r| r.objects)
        .map_err(|source| Error::List {
            location: location.clone(),
            source,
        })?;
    let mut versions: Vec<Version> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(parse_metadata_file_name))
        .collect();
    versions.sort();
    Ok(versions)
}

/// Probe forward from `from` (which exists) while the next version exists.
pub async fn probe_forward(
    warehouse: &Warehouse,
    table_location: &str,
    from: Version,
) -> Result<Version> {
    let mut v = from;
    while let Some(next) = v.next() {
        let loc = metadata_location(table_location, next);
        let path = warehouse.object_path(&loc)?;
        if !exists(warehouse.store().as_ref(), &path, &loc).await? {
            break;
        }
        v = next;
    }
    Ok(v)
}

/// Find the head version of a table, or `None` if it has no metadata at all.
pub async fn find_head(warehouse: &Warehouse, table_location: &str) -> Result<Option<Version>> {
    if let Some(h) = read_hint(warehouse, table_location).await? {
        let loc = metadata_location(table_location, h);
        let path = warehouse.object_path(&loc)?;
        if exists(warehouse.store().as_ref(), &path, &loc).await? {
            return probe_forward(warehouse, table_location, h).await.map(Some);
        }
        tracing::debug!(
            table = table_location,
            hint = h.0,
            "hint ahead of versions; listing"
        );
    }
    match list_versions(warehouse, table_location).await?.last() {
        Some(&v) => probe_forward(warehouse, table_location, v).await.map(Some),
        None => Ok(None),
    }
}

/// Whether anything at all exists under a prefix (used to tell an empty folder from a table).
pub async fn any_object_under(warehouse: &Warehouse, location: &str) -> Result<bool> {
    let prefix = warehouse.object_path(location)?;
    let first = warehouse
        .store()
        .list(Some(&prefix))
        .try_next()
        .await
        .map_err(|source| Error::List {
            location: location.to_string(),
            source,
        })?;
    Ok(first.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_hints() {
        assert_eq!(
            parse_metadata_file_name("v12.metadata.json"),
            Some(Version(12))
        );
        for bad in [
            "v0.metadata.json",
            "v012.metadata.json",
            "v-1.metadata.json",
            "v.metadata.json",
            "12.metadata.json",
            "v1.gz.metadata.json",
            "v1.metadata.json.tmp",
            "00001-abc.metadata.json",
        ] {
            assert_eq!(parse_metadata_file_name(bad), None, "{bad}");
        }
        let last = parse_metadata_file_name("v18446744073709551615.metadata.json");
        assert_eq!(last, Some(Version(u64::MAX)));
        assert_eq!(
            last.and_then(Version::next),
            None,
            "no version after u64::MAX"
        );
        assert_eq!(
            parse_metadata_file_name("v18446744073709551616.metadata.json"),
            None
        );
        assert_eq!(parse_hint(b"7"), Some(Version(7)));
        assert_eq!(parse_hint(b"7\n"), Some(Version(7)));
        assert_eq!(parse_hint(b"x"), None);
        assert_eq!(parse_hint(b""), None);
    }

    async fn put(wh: &Warehouse, loc: &str, body: &str) {
        let p = wh.object_path(loc).unwrap();
        wh.store()
            .put(&p, body.to_string().into_bytes().into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn head_is_found_from_stale_missing_or_wrong_hints() {
        let wh = Warehouse::open(&format!("memory://ver-{}", uuid::Uuid::new_v4())).unwrap();
        let t = wh.location("ns/t");
        assert_eq!(find_head(&wh, &t).await.unwrap(), None);
        for v in 1..=5 {
            put(&wh, &metadata_location(&t, Version(v)), "{}").await;
        }
        // No hint: LIST.
        assert_eq!(find_head(&wh, &t).await.unwrap(), Some(Version(5)));
        // Stale hint: probe forward.
        write_hint(&wh, &t, Version(2)).await.unwrap();
        assert_eq!(find_head(&wh, &t).await.unwrap(), Some(Version(5)));
        // Hint past the head: LIST.
        write_hint(&wh, &t, Version(9)).await.unwrap();
        assert_eq!(find_head(&wh, &t).await.unwrap(), Some(Version(5)));
        // Garbage hint and junk objects are ignored.
        put(&wh, &hint_location(&t), "garbage").await;
        put(&wh, &format!("{t}/metadata/v77.metadata.json.tmp"), "x").await;
        put(&wh, &format!("{t}/metadata/snap-1.avro"), "x").await;
        assert_eq!(find_head(&wh, &t).await.unwrap(), Some(Version(5)));
        // The hint is written without a trailing newline.
        write_hint(&wh, &t, Version(5)).await.unwrap();
        let p = wh.object_path(&hint_location(&t)).unwrap();
        let b = wh.store().get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(&b[..], b"5");
    }
}
