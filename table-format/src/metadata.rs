//! Table metadata objects: reading and parsing them (refusing tombstones and gzip),
//! writing them, the rules every committed metadata must keep, and the commit-id record.

use iceberg::spec::TableMetadata;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::version;
use crate::warehouse::Warehouse;

/// Snapshot-summary key holding the id of the commit that produced the snapshot.
pub const COMMIT_ID_KEY: &str = "floe.commit-id";

/// Properties that would place a table's files outside its prefix: refused at creation,
/// registration and in every commit.
pub(crate) const FORBIDDEN_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.folder-storage.path",
    "write.object-storage.path",
    "write.metadata.path",
    "write.object-storage.enabled",
];

/// Whether a table property moves where files are written: any of
/// [`FORBIDDEN_PROPERTIES`], or any `write.*.path` (engines add new ones over time).
pub fn is_location_property(key: &str) -> bool {
    FORBIDDEN_PROPERTIES.contains(&key)
        || (key.starts_with("write.") && key.ends_with(".path"))
        || key == "location"
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Read and parse one metadata object; None when it does not exist.
pub(crate) async fn read(warehouse: &Warehouse, location: &str) -> Result<Option<TableMetadata>> {
    match read_bytes(warehouse, location).await? {
        Some(bytes) => parse(&bytes, location).map(Some),
        None => Ok(None),
    }
}

/// The largest table metadata object read (a table with Floe's default cap of 100
/// snapshots has well under 1 MiB; a registered foreign table with a long history a few).
pub const MAX_METADATA_BYTES: u64 = 32 << 20;

/// One metadata object's bytes; None when it does not exist. An object over
/// [`MAX_METADATA_BYTES`] is refused before its body is read.
pub(crate) async fn read_bytes(
    warehouse: &Warehouse,
    location: &str,
) -> Result<Option<bytes::Bytes>> {
    let path = warehouse.object_path(location)?;
    let bytes = match warehouse.store().get(&path).await {
        Ok(r) if r.meta.size > MAX_METADATA_BYTES => {
            return Err(Error::TooLarge {
                location: location.to_string(),
                what: "table metadata object".into(),
                size: r.meta.size,
                limit: MAX_METADATA_BYTES,
            })
        }
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
    Ok(Some(bytes))
}

/// Parse a metadata object's bytes.
pub(crate) fn parse(bytes: &[u8], location: &str) -> Result<TableMetadata> {
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

/// Serialize metadata that will be written at `location`.
pub(crate) fn to_bytes(metadata: &TableMetadata, location: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(metadata).map_err(|e| Error::CorruptMetadata {
        location: location.to_string(),
        reason: e.to_string(),
    })
}

/// Whether `metadata` sits at `table_location` (compared as object keys).
pub(crate) fn is_at(warehouse: &Warehouse, metadata: &TableMetadata, table_location: &str) -> bool {
    match (
        warehouse.object_path(metadata.location().trim_end_matches('/')),
        warehouse.object_path(table_location),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuse properties that would place files outside the table's prefix.
pub(crate) fn check_properties<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    owner: &str,
) -> Result<()> {
    match keys.find(|k| is_location_property(k)) {
        Some(key) => Err(Error::InvalidArgument {
            argument: format!("property '{key}'{owner}"),
            reason: "a Floe table keeps all its files under its own prefix".into(),
        }),
        None => Ok(()),
    }
}

/// A commit id is 1 to 256 characters without control characters.
pub(crate) fn validate_commit_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidArgument {
            argument: format!("commit id '{}'", id.escape_debug()),
            reason: "a commit id is 1 to 256 characters without control characters".into(),
        });
    }
    Ok(())
}

/// The table property that keeps the commit ids of the newest expired snapshots, so that
/// a rerun of a commit is recognised after its snapshot expired: a JSON array of
/// `[commit id, snapshot id]`, oldest first.
pub const EXPIRED_COMMITS_KEY: &str = "floe.expired-commits";

/// How many expired commits the ledger keeps (about 5 KiB of metadata).
pub const EXPIRED_COMMITS_KEPT: usize = 100;

/// The ledger of expired commits; an unreadable one (a hostile property) counts as empty,
/// with a warning, and the next commit that expires snapshots writes a fresh one.
fn expired_commits(metadata: &TableMetadata) -> Vec<(String, i64)> {
    let Some(v) = metadata.properties().get(EXPIRED_COMMITS_KEY) else {
        return Vec::new();
    };
    serde_json::from_str(v).unwrap_or_else(|e| {
        tracing::warn!(
            property = EXPIRED_COMMITS_KEY,
            value = clip(v),
            error = %e,
            "unreadable table property {EXPIRED_COMMITS_KEY}; treated as an empty ledger"
        );
        Vec::new()
    })
}

/// A property value from storage, shortened for a message (it may be megabytes long).
pub(crate) fn clip(value: &str) -> &str {
    value
        .char_indices()
        .nth(64)
        .map_or(value, |(i, _)| &value[..i])
}

/// The snapshot that carries `commit_id`: a live snapshot whose summary names it, or an
/// expired one the ledger remembers.
pub fn find_commit(metadata: &TableMetadata, commit_id: &str) -> Option<i64> {
    metadata
        .snapshots()
        .find(|s| {
            s.summary()
                .additional_properties
                .get(COMMIT_ID_KEY)
                .is_some_and(|c| c == commit_id)
        })
        .map(|s| s.snapshot_id())
        .or_else(|| {
            expired_commits(metadata)
                .into_iter()
                .rev()
                .find(|(c, _)| c == commit_id)
                .map(|(_, s)| s)
        })
}

/// `next` with the commit ids of the snapshots it expires from `base` added to the ledger
/// (the newest [`EXPIRED_COMMITS_KEPT`] kept); `next` itself when it expires none.
pub(crate) fn record_expired_commits(
    base: &TableMetadata,
    next: TableMetadata,
) -> Result<TableMetadata> {
    let mut expired: Vec<(i64, String, i64)> = base
        .snapshots()
        .filter(|s| next.snapshot_by_id(s.snapshot_id()).is_none())
        .filter_map(|s| {
            s.summary()
                .additional_properties
                .get(COMMIT_ID_KEY)
                .map(|c| (s.sequence_number(), c.clone(), s.snapshot_id()))
        })
        .collect();
    if expired.is_empty() {
        return Ok(next);
    }
    expired.sort();
    let mut ledger = expired_commits(&next);
    ledger.extend(expired.into_iter().map(|(_, c, s)| (c, s)));
    let keep_from = ledger.len().saturating_sub(EXPIRED_COMMITS_KEPT);
    let ledger = &ledger[keep_from..];
    let invalid = |e: serde_json::Error| Error::CorruptMetadata {
        location: next.location().to_string(),
        reason: format!("cannot record expired commits: {e}"),
    };
    let mut json = serde_json::to_value(&next).map_err(invalid)?;
    json["properties"][EXPIRED_COMMITS_KEY] =
        serde_json::Value::String(serde_json::to_string(ledger).map_err(invalid)?);
    serde_json::from_value(json).map_err(invalid)
}
