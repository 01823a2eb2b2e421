//! Keeping per-commit cost flat: manifest merging and snapshot expiry on the commit path,
//! and deletion of what a commit made unreachable (old metadata versions, expired
//! snapshots' manifest lists), all driven by the standard Iceberg table properties.
//!
//! | property | default here |
//! |---|---|
//! | `commit.manifest-merge.enabled` | true |
//! | `commit.manifest.min-count-to-merge` | 100 |
//! | `commit.manifest.target-size-bytes` | 8 MiB |
//! | `history.expire.max-snapshot-age-ms` | 5 days (Iceberg's default) |
//! | `history.expire.min-snapshots-to-keep` | 1 (Iceberg's default) |
//! | `floe.history.max-snapshots` | 100 (a cap, so the metadata JSON stays small however fast a device commits; each commit rewrites the whole JSON) |
//! | `write.metadata.delete-after-commit.enabled` | false (Iceberg's default; when true, expired versions are tombstoned after the commit, one PUT each) |
//! | `write.metadata.previous-versions-max` | 100 |
//!
//! A table synced to a cloud warehouse carries [`LOCAL_WATERMARK`]
//! (`floe.sync.projected-sequence-number`): snapshots newer than it are never expired (see
//! [`unprojected_floor`]).
//!
//! Data files are never deleted here: an append-only table's later snapshots still list
//! every file, and merged manifests list the same files. Manifests replaced by a merge stay
//! referenced by older snapshots; once those expire they are orphans for `floe vacuum`.

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use iceberg::io::FileIO;
use iceberg::spec::{Manifest, ManifestContentType, ManifestFile, ManifestStatus, TableMetadata};

use crate::error::{Error, Result};

/// Manifests read at once.
const LOAD_CONCURRENCY: usize = 16;

/// Local table property: the sequence number of the newest local snapshot a cloud
/// warehouse holds (written by `floe sync`, the `floe-sync` crate). Its presence marks the
/// table as synced; snapshots above it are never expired (see [`unprojected_floor`]).
/// Defined here, below sync, because expiry reads it.
pub const LOCAL_WATERMARK: &str = "floe.sync.projected-sequence-number";

/// Load manifests concurrently, in order, each with its list entry (inherited values such
/// as sequence numbers filled in).
pub async fn load_manifests(
    file_io: &FileIO,
    manifests: Vec<ManifestFile>,
) -> Result<Vec<(ManifestFile, Manifest)>> {
    stream::iter(manifests)
        .map(|m| {
            let file_io = file_io.clone();
            async move {
                match m.load_manifest(&file_io).await {
                    Ok(manifest) => Ok((m, manifest)),
                    Err(e) => Err(Error::iceberg(
                        format!("read manifest {}", m.manifest_path),
                        e,
                    )),
                }
            }
        })
        .buffered(LOAD_CONCURRENCY)
        .try_collect()
        .await
}

/// Maintenance settings read from a table's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Merge small manifests when there are this many or more.
    pub merge_enabled: bool,
    /// See `commit.manifest.min-count-to-merge`.
    pub min_count_to_merge: usize,
    /// See `commit.manifest.target-size-bytes`.
    pub target_manifest_bytes: i64,
    /// See `history.expire.max-snapshot-age-ms`.
    pub max_snapshot_age_ms: i64,
    /// See `history.expire.min-snapshots-to-keep`.
    pub min_snapshots_to_keep: usize,
    /// See `floe.history.max-snapshots`.
    pub max_snapshots: usize,
    /// See `write.metadata.delete-after-commit.enabled`.
    pub delete_after_commit: bool,
}

/// Property `key` of `props`: absent → `default`; a value that does not parse, or that
/// `valid` refuses (a hostile or mistyped property from storage) → `default`, with a
/// warning naming the property. Never an error: a bad setting must not stop commits.
fn prop<T: std::str::FromStr>(
    props: &HashMap<String, String>,
    key: &str,
    default: T,
    valid: impl Fn(&T) -> bool,
) -> T {
    let Some(v) = props.get(key) else {
        return default;
    };
    match v.trim().parse::<T>() {
        Ok(x) if valid(&x) => x,
        _ => {
            tracing::warn!(
                property = key,
                value = crate::metadata::clip(v),
                "unusable value of table property {key}; using the default"
            );
            default
        }
    }
}

/// Any value that parses will do.
fn any<T>(_: &T) -> bool {
    true
}

impl Settings {
    /// Read the settings of a table. Each value comes from storage: one that does not
    /// parse or is out of range (a negative age or size, a count of 0) is replaced by the
    /// default, with a warning naming the property.
    pub fn of(metadata: &TableMetadata) -> Self {
        let p = metadata.properties();
        Self {
            merge_enabled: prop(p, "commit.manifest-merge.enabled", true, any),
            min_count_to_merge: prop(p, "commit.manifest.min-count-to-merge", 100usize, any).max(2),
            target_manifest_bytes: prop(p, "commit.manifest.target-size-bytes", 8i64 << 20, |n| {
                *n > 0
            }),
            max_snapshot_age_ms: prop(
                p,
                "history.expire.max-snapshot-age-ms",
                5 * 24 * 3_600_000i64,
                |n| *n >= 0,
            ),
            min_snapshots_to_keep: prop(p, "history.expire.min-snapshots-to-keep", 1usize, |n| {
                *n >= 1
            }),
            max_snapshots: prop(p, "floe.history.max-snapshots", 100usize, |n| *n >= 1),
            delete_after_commit: prop(p, "write.metadata.delete-after-commit.enabled", false, any),
        }
    }
}

/// Which existing manifests to merge, as groups of indexes into `manifests` (each group
/// becomes one manifest). Only data manifests of `spec_id` smaller than the target size are
/// candidates, packed greedily up to the target; nothing is merged until the candidates
/// reach `min_count_to_merge`.
pub fn plan_merge(manifests: &[ManifestFile], spec_id: i32, s: &Settings) -> Vec<Vec<usize>> {
    if !s.merge_enabled {
        return Vec::new();
    }
    let candidates: Vec<usize> = manifests
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.content == ManifestContentType::Data
                && m.partition_spec_id == spec_id
                && m.manifest_length < s.target_manifest_bytes
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.len() < s.min_count_to_merge {
        return Vec::new();
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut size = 0i64;
    for i in candidates {
        let len = manifests[i].manifest_length;
        if !current.is_empty() && size.saturating_add(len) > s.target_manifest_bytes {
            groups.push(std::mem::take(&mut current));
            size = 0;
        }
        current.push(i);
        size = size.saturating_add(len);
    }
    groups.push(current);
    groups.retain(|g| g.len() > 1);
    groups
}

/// Whether a manifest entry survives a merge (deleted entries are history: they belong to
/// the snapshot that deleted them, not to later manifests).
pub fn keep_entry(status: ManifestStatus) -> bool {
    status != ManifestStatus::Deleted
}

/// Snapshots to expire from `metadata` (which already holds the new snapshot): those older
/// than the maximum age, or beyond the newest `max_snapshots`, but never the newest
/// `min_snapshots_to_keep`, the current snapshot, or one a branch or tag points at.
///
/// The count cap has 10% slack: nothing is expired until the table holds more than
/// `max_snapshots` + 10%, then it goes back to `max_snapshots` at once, so the manifest
/// lists to delete go out in one batch every so often rather than one per commit.
pub fn snapshots_to_expire(metadata: &TableMetadata, s: &Settings, now_ms: i64) -> Vec<i64> {
    // Saturating throughout: the settings and the timestamps come from storage.
    let slack = (s.max_snapshots / 10).max(1);
    let over_cap = metadata.snapshots().len() > s.max_snapshots.saturating_add(slack);
    let age_with_slack = s
        .max_snapshot_age_ms
        .saturating_add(s.max_snapshot_age_ms / 10);
    let oldest_too_old = metadata
        .snapshots()
        .map(|snap| snap.timestamp_ms())
        .min()
        .is_some_and(|t| now_ms.saturating_sub(t) > age_with_slack);
    if !over_cap && !oldest_too_old {
        return Vec::new();
    }
    let mut snaps: Vec<_> = metadata.snapshots().collect();
    snaps.sort_by_key(|snap| std::cmp::Reverse((snap.timestamp_ms(), snap.sequence_number())));
    let protected: Vec<i64> = referenced_snapshots(metadata)
        .into_iter()
        .chain(metadata.current_snapshot_id())
        .collect();
    let floor = unprojected_floor(metadata);
    snaps
        .iter()
        .enumerate()
        .filter(|(rank, snap)| {
            *rank >= s.min_snapshots_to_keep
                && (*rank >= s.max_snapshots
                    || now_ms.saturating_sub(snap.timestamp_ms()) > s.max_snapshot_age_ms)
                && !protected.contains(&snap.snapshot_id())
                && floor.is_none_or(|w| snap.sequence_number() <= w)
        })
        .map(|(_, snap)| snap.snapshot_id())
        .collect()
}

/// The projection watermark of a table that is synced to a cloud warehouse (the local
/// table property [`LOCAL_WATERMARK`]): snapshots with a higher sequence
/// number have not been projected yet and MUST NOT be expired, by the automatic expiry of
/// an append or by `floe expire`. None when the table is not synced (nothing protected).
///
/// The value comes from storage: one that is not a sequence number this table can have
/// (unparsable, negative, above its `last-sequence-number`) counts as 0, nothing projected
/// (every snapshot protected), with a warning; the next sync writes the true value.
pub fn unprojected_floor(metadata: &TableMetadata) -> Option<i64> {
    let v = metadata.properties().get(LOCAL_WATERMARK)?;
    match v.trim().parse::<i64>() {
        Ok(w) if (0..=metadata.last_sequence_number()).contains(&w) => Some(w),
        _ => {
            tracing::warn!(
                property = LOCAL_WATERMARK,
                value = crate::metadata::clip(v),
                "table property {LOCAL_WATERMARK} is no sequence number of this table; nothing counts as projected"
            );
            Some(0)
        }
    }
}

/// Snapshot ids that branches and tags point at. iceberg 0.10 has no public accessor for
/// `refs`, so they are read from the metadata's JSON form.
pub fn referenced_snapshots(metadata: &TableMetadata) -> Vec<i64> {
    serde_json::to_value(metadata)
        .ok()
        .and_then(|v| v.get("refs").cloned())
        .and_then(|refs| refs.as_object().cloned())
        .map(|refs| {
            refs.values()
                .filter_map(|r| r.get("snapshot-id").and_then(|id| id.as_i64()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(len: i64, content: ManifestContentType, spec: i32) -> ManifestFile {
        ManifestFile {
            manifest_path: format!("m{len}"),
            manifest_length: len,
            partition_spec_id: spec,
            content,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(1),
            existing_files_count: Some(0),
            deleted_files_count: Some(0),
            added_rows_count: Some(1),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: None,
            key_metadata: None,
            first_row_id: None,
        }
    }

    fn settings(min: usize, target: i64) -> Settings {
        Settings {
            merge_enabled: true,
            min_count_to_merge: min,
            target_manifest_bytes: target,
            max_snapshot_age_ms: i64::MAX,
            min_snapshots_to_keep: 1,
            max_snapshots: usize::MAX,
            delete_after_commit: true,
        }
    }

    #[test]
    fn merges_small_data_manifests_of_the_spec_once_enough_accumulate() {
        let ms: Vec<_> = (0..5)
            .map(|_| manifest(10, ManifestContentType::Data, 0))
            .collect();
        assert!(
            plan_merge(&ms, 0, &settings(6, 100)).is_empty(),
            "below the count"
        );
        assert_eq!(
            plan_merge(&ms, 0, &settings(5, 100)),
            vec![vec![0, 1, 2, 3, 4]]
        );
        // Packed up to the target size; a lone leftover is not rewritten.
        assert_eq!(
            plan_merge(&ms, 0, &settings(2, 20)),
            vec![vec![0, 1], vec![2, 3]]
        );
        // Big manifests, delete manifests and other specs are left alone.
        let mut mixed = ms.clone();
        mixed.push(manifest(500, ManifestContentType::Data, 0));
        mixed.push(manifest(10, ManifestContentType::Deletes, 0));
        mixed.push(manifest(10, ManifestContentType::Data, 1));
        assert_eq!(
            plan_merge(&mixed, 0, &settings(5, 100)),
            vec![vec![0, 1, 2, 3, 4]]
        );
        let off = Settings {
            merge_enabled: false,
            ..settings(2, 100)
        };
        assert!(plan_merge(&ms, 0, &off).is_empty());
        assert!(!keep_entry(ManifestStatus::Deleted));
        assert!(keep_entry(ManifestStatus::Existing) && keep_entry(ManifestStatus::Added));
    }
}
