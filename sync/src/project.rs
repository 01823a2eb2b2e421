//! What the cloud append of a local snapshot is: its commit id and summary keys, the
//! watermarks on both sides (the cloud's per local table, the local copy that protects
//! local history), the files a step projects and where they go in the cloud table, and the
//! checks that the cloud table can take them.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use iceberg::spec::{
    DataFile, DataFileBuilder, ManifestStatus, PartitionField, Schema, SnapshotRef, TableMetadata,
    TableMetadataBuilder, Type,
};
use iceberg::{TableRequirement, TableUpdate};

use floe_table_format::external::ApplyUpdates;
use floe_table_format::maintenance::{self, LOCAL_WATERMARK};
use floe_table_format::{
    Action, Advance, Applied, CommitOptions, Error as TableError, Result as TableResult,
    RetryPolicy, Table, TableDefinition,
};

use crate::error::{Error, Result};

/// Cloud snapshot-summary key: the newest local snapshot a cloud append carries.
pub const SOURCE_SNAPSHOT_KEY: &str = "floe.sync.source-snapshot-id";

/// Cloud snapshot-summary key: the oldest local snapshot a cloud append carries.
pub const SOURCE_FIRST_SNAPSHOT_KEY: &str = "floe.sync.source-first-snapshot-id";

/// Cloud snapshot-summary key: how many local snapshots a cloud append carries.
pub const SOURCE_SNAPSHOTS_KEY: &str = "floe.sync.source-snapshots";

/// Cloud snapshot-summary key: the local sequence numbers a cloud append covers,
/// `<first>-<last>` (inclusive; the watermark moved from first − 1 to last).
pub const SOURCE_RANGE_KEY: &str = "floe.sync.source-sequence-numbers";

/// Cloud snapshot-summary key: the local table (uuid) a cloud append comes from.
pub const SOURCE_TABLE_KEY: &str = "floe.sync.source-table-uuid";

/// The cloud table property holding the watermark of the local table `local_uuid`.
pub fn cloud_watermark_key(local_uuid: &uuid::Uuid) -> String {
    format!("floe.sync.{local_uuid}.sequence-number")
}

/// The commit id of the cloud append that projects local snapshot `snapshot_id`.
pub fn commit_id(local_uuid: &uuid::Uuid, snapshot_id: i64) -> String {
    format!("sync-{local_uuid}-{snapshot_id}")
}

/// The watermark under `key` in `props` (absent or unreadable: 0).
pub(crate) fn parse_watermark(props: &HashMap<String, String>, key: &str) -> i64 {
    props
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .max(0)
}

/// Local snapshot `snapshot_id`, which the plan saw in the metadata.
fn snapshot_of(local: &Table, snapshot_id: i64) -> TableResult<SnapshotRef> {
    local
        .metadata()
        .snapshot_by_id(snapshot_id)
        .cloned()
        .ok_or_else(|| TableError::CorruptMetadata {
            location: local.metadata_location().to_string(),
            reason: format!("snapshot {snapshot_id} vanished"),
        })
}

/// A local file a projection carries, with the id of the partition spec it was written
/// with (from its manifest).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The partition spec of the file's manifest.
    pub(crate) spec_id: i32,
    /// The file.
    pub(crate) file: DataFile,
}

/// The files of local snapshot `snapshot_id`: those it added (entries `ADDED` by it, in
/// manifests it added), or with `all_live` every file alive in it.
pub(crate) async fn files_of(
    local: &Table,
    snapshot_id: i64,
    all_live: bool,
) -> TableResult<Vec<Source>> {
    let snapshot = snapshot_of(local, snapshot_id)?;
    let list = local.read_manifest_list(&snapshot).await?;
    let own: Vec<_> = list
        .into_iter()
        .filter(|m| all_live || m.added_snapshot_id == snapshot_id)
        .collect();
    let loaded = maintenance::load_manifests(local.file_io(), own).await?;
    Ok(loaded
        .into_iter()
        .flat_map(|(list_entry, manifest)| {
            manifest
                .entries()
                .iter()
                .filter(|e| match all_live {
                    true => e.is_alive(),
                    false => {
                        e.status() == ManifestStatus::Added && e.snapshot_id() == Some(snapshot_id)
                    }
                })
                .map(|e| Source {
                    spec_id: list_entry.partition_spec_id,
                    file: e.data_file().clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Where a local data file goes in the cloud table. A plain path under the local table's
/// `data/` folder keeps its path relative to the table location; every other path (a file
/// of a registered table that lies elsewhere, or one a hostile manifest names under the
/// local `metadata/`) goes to `data/external/<hash>-<base name>`, where `<hash>` is the
/// SHA-256 of the full source path (32 hex digits). Two sources never share a target, a
/// source always maps to the same one (a rerun finds its copy), and no target lies under
/// the cloud table's `metadata/`.
pub fn cloud_path(local_location: &str, cloud_location: &str, file_path: &str) -> String {
    let inside = file_path
        .strip_prefix(local_location.trim_end_matches('/'))
        .and_then(|r| r.strip_prefix("/data/"))
        .filter(|r| r.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
    let cloud = cloud_location.trim_end_matches('/');
    match inside {
        Some(relative) => format!("{cloud}/data/{relative}"),
        None => {
            let digest = Sha256::digest(file_path.as_bytes());
            let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            match file_path.rsplit('/').next().unwrap_or_default() {
                "" => format!("{cloud}/data/external/{hash}"),
                name => format!("{cloud}/data/external/{hash}-{name}"),
            }
        }
    }
}

/// The same file at `path`: identical counts, size, partition and column statistics.
pub(crate) fn relocate(file: &DataFile, path: String, spec_id: i32) -> TableResult<DataFile> {
    let mut b = DataFileBuilder::default();
    b.content(file.content_type())
        .file_path(path.clone())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes())
        .column_sizes(file.column_sizes().clone())
        .value_counts(file.value_counts().clone())
        .null_value_counts(file.null_value_counts().clone())
        .nan_value_counts(file.nan_value_counts().clone())
        .lower_bounds(file.lower_bounds().clone())
        .upper_bounds(file.upper_bounds().clone())
        .key_metadata(file.key_metadata().map(|k| k.to_vec()))
        .split_offsets(file.split_offsets().map(|s| s.to_vec()))
        .equality_ids(file.equality_ids())
        .partition_spec_id(spec_id)
        .referenced_data_file(file.referenced_data_file())
        .content_offset(file.content_offset())
        .content_size_in_bytes(file.content_size_in_bytes());
    if let Some(order) = file.sort_order_id() {
        b.sort_order_id(order);
    }
    b.build().map_err(|e| TableError::InvalidArgument {
        argument: format!("data file {path}"),
        reason: e.to_string(),
    })
}

/// The commit id of a squashed cloud append carrying the local appends with sequence
/// numbers in `(from, to]`: the same range always has the same id, whichever run staged it.
pub fn range_commit_id(local_uuid: &uuid::Uuid, from: i64, to: i64) -> String {
    format!("sync-{local_uuid}-seq-{from}-{to}")
}

/// How a cloud append of a sync commits: with `commit_id`, the source keys in its summary
/// (the local table, the newest local snapshot it carries, and the range), and the cloud
/// watermark advanced `from` → `to` in the same version, compare-and-set: a concurrent
/// run's projection of the same range makes this one a no-op, and a plan made from a
/// watermark that moved commits nothing.
pub(crate) fn projection_commit(
    local_uuid: &uuid::Uuid,
    commit_id: &str,
    (first_snapshot_id, last_snapshot_id, snapshots): (i64, i64, usize),
    (from, to): (i64, i64),
    policy: &RetryPolicy,
) -> CommitOptions {
    CommitOptions {
        commit_id: commit_id.to_string(),
        policy: policy.clone(),
        properties: HashMap::from([
            (SOURCE_TABLE_KEY.to_string(), local_uuid.to_string()),
            (
                SOURCE_SNAPSHOT_KEY.to_string(),
                last_snapshot_id.to_string(),
            ),
            (
                SOURCE_FIRST_SNAPSHOT_KEY.to_string(),
                first_snapshot_id.to_string(),
            ),
            (SOURCE_SNAPSHOTS_KEY.to_string(), snapshots.to_string()),
            (
                SOURCE_RANGE_KEY.to_string(),
                format!("{}-{to}", from.saturating_add(1)),
            ),
        ]),
        table_properties: HashMap::new(),
        advance: Some(Advance {
            key: cloud_watermark_key(local_uuid),
            from,
            to,
        }),
        reuses_objects: true,
    }
}

/// The local table as a definition for its cloud twin: schema, partition spec and
/// properties (without the local sync bookkeeping).
pub(crate) fn definition_of(local: &TableMetadata) -> TableDefinition {
    TableDefinition {
        schema: local.current_schema().as_ref().clone(),
        partition: local
            .default_partition_spec()
            .as_ref()
            .clone()
            .into_unbound(),
        properties: local
            .properties()
            .iter()
            .filter(|(k, _)| !k.starts_with("floe.sync."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Whether two specs partition alike: the same source columns, transforms and names, in
/// order. Partition field ids may differ (a table created from an evolved spec numbers
/// them afresh); partition tuples are positional, so they mean the same.
pub(crate) fn same_partitioning(a: &[PartitionField], b: &[PartitionField]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.source_id == y.source_id && x.transform == y.transform && x.name == y.name
        })
}

/// Whether two tables' current schemas are equal (field ids, names, types, required
/// flags), and whether their default specs partition alike.
fn alike(l: &TableMetadata, c: &TableMetadata) -> (bool, bool) {
    (
        l.current_schema().as_struct() == c.current_schema().as_struct(),
        same_partitioning(
            l.default_partition_spec().fields(),
            c.default_partition_spec().fields(),
        ),
    )
}

/// Refuse a cloud table whose columns or partitioning differ from the local table's:
/// column statistics and partition tuples are keyed by field id and must mean the same.
pub(crate) fn check_compatible(local: &Table, cloud: &Table) -> Result<()> {
    let (same_schema, same_spec) = alike(local.metadata(), cloud.metadata());
    if same_schema && same_spec {
        return Ok(());
    }
    Err(Error::SyncMismatch {
        table: local.name().to_string(),
        cloud: cloud.location().to_string(),
        reason: if same_schema {
            "the partition specs differ".into()
        } else {
            "the schemas differ (field ids, names or types)".into()
        },
    })
}

/// Bring the cloud table's schema and default partition spec up to the local table's, in
/// one metadata-only cloud commit, before any data that needs them: the local table
/// evolved (a column added, a type widened, a new partition spec) since the cloud table was
/// made. Only a cloud schema the local one extends is moved: every cloud column must be in
/// the local schema with the same id, name and requiredness, and the same type or one it
/// widens to. Anything else is left for [`check_compatible`] to refuse. Requirements on the
/// cloud's schema and spec ids make a concurrent change a rebase: the comparison is made
/// again on the new head.
pub(crate) async fn evolve_cloud(local: &Table, cloud: &mut Table) -> Result<()> {
    for _ in 0..4 {
        let (l, c) = (local.metadata(), cloud.metadata());
        let (same_schema, same_spec) = alike(l, c);
        if same_schema && same_spec {
            return Ok(());
        }
        if !same_schema && !extends(l.current_schema(), c.current_schema()) {
            return Ok(());
        }
        let mut updates = Vec::new();
        if !same_schema {
            updates.push(TableUpdate::AddSchema {
                schema: l.current_schema().as_ref().clone(),
            });
            updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
        }
        if !same_spec {
            updates.push(TableUpdate::AddSpec {
                spec: l.default_partition_spec().as_ref().clone().into_unbound(),
            });
            updates.push(TableUpdate::SetDefaultSpec { spec_id: -1 });
        }
        let requirements = vec![
            TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: c.current_schema_id(),
            },
            TableRequirement::DefaultSpecIdMatch {
                default_spec_id: c.default_partition_spec_id(),
            },
        ];
        let mut action = ApplyUpdates::new(requirements, updates);
        let id = uuid::Uuid::new_v4().to_string();
        match cloud
            .commit(&id, &RetryPolicy::default(), &mut action)
            .await
        {
            Ok(_) => return Ok(()),
            Err(TableError::RequirementFailed { .. }) => cloud.refresh().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether `newer` extends `older`: every column of `older` is in `newer` with the same
/// id, name and requiredness, and the same type or an Iceberg widening of it (int → long,
/// float → double, decimal precision up at the same scale).
fn extends(newer: &Schema, older: &Schema) -> bool {
    older.as_struct().fields().iter().all(|o| {
        newer.field_by_id(o.id).is_some_and(|n| {
            n.name == o.name && n.required == o.required && widens(&o.field_type, &n.field_type)
        })
    })
}

fn widens(from: &Type, to: &Type) -> bool {
    match (from, to) {
        (a, b) if a == b => true,
        (Type::Primitive(a), Type::Primitive(b)) => floe_table_format::evolve::is_promotion(a, b),
        _ => false,
    }
}

/// Record `watermark` in the local table's [`LOCAL_WATERMARK`] (never lowering it), as a
/// metadata-only commit that rebases over concurrent local appends.
pub async fn set_local_watermark(local: &mut Table, watermark: i64) -> Result<()> {
    let commit_id = uuid::Uuid::new_v4().to_string();
    local
        .commit(
            &commit_id,
            &RetryPolicy::default(),
            &mut RaiseWatermark { watermark },
        )
        .await?;
    Ok(())
}

/// The property-update action behind the local watermark: idempotent by state (a head whose
/// watermark is already at or above the value is no commit), so it never lowers it.
struct RaiseWatermark {
    watermark: i64,
}

#[async_trait::async_trait]
impl Action for RaiseWatermark {
    fn kind(&self) -> &'static str {
        "set-properties"
    }

    async fn apply(&mut self, local: &Table, _attempt: u32) -> TableResult<Option<Applied>> {
        // An impossible value counts as 0, so the true one replaces it.
        let current = maintenance::unprojected_floor(local.metadata());
        if current.is_some_and(|c| c >= self.watermark) {
            return Ok(None);
        }
        let next = TableMetadataBuilder::new_from_metadata(
            local.metadata().as_ref().clone(),
            Some(local.metadata_location().to_string()),
        )
        .set_properties(HashMap::from([(
            LOCAL_WATERMARK.to_string(),
            self.watermark.to_string(),
        )]))
        .and_then(|b| b.build())
        .map_err(|e| TableError::iceberg(format!("set the sync watermark of {}", local.name()), e))?
        .metadata;
        Ok(Some(Applied::new(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_paths_keep_the_relative_path() {
        assert_eq!(
            cloud_path(
                "file:///var/lib/floe/fleet/d1",
                "s3://b/fleet/d1",
                "file:///var/lib/floe/fleet/d1/data/ts_day=2026-01-01/x-00000.parquet"
            ),
            "s3://b/fleet/d1/data/ts_day=2026-01-01/x-00000.parquet"
        );
    }

    /// The external target of `source`: `data/external/<hash>-<base name>`.
    fn external(cloud: &str, source: &str) -> String {
        let t = cloud_path("file:///a/t", cloud, source);
        let rest = t
            .strip_prefix(&format!("{cloud}/data/external/"))
            .unwrap_or_else(|| panic!("{source} -> {t}: not under data/external/"));
        assert!(!rest.contains('/'), "{source} -> {t}: nested");
        t
    }

    #[test]
    fn files_outside_the_data_folder_go_to_external_with_a_hash_of_the_source() {
        let cloud = "s3://b/t";
        let y = external(cloud, "s3://elsewhere/p/y.parquet");
        assert!(y.ends_with("-y.parquet"), "{y}");
        // Two external files of the same base name land apart, each time at the same place.
        let x0 = external(cloud, "file:///a/x/part-0.parquet");
        let y0 = external(cloud, "file:///a/y/part-0.parquet");
        assert_ne!(x0, y0);
        assert!(x0.ends_with("-part-0.parquet") && y0.ends_with("-part-0.parquet"));
        assert_eq!(x0, external(cloud, "file:///a/x/part-0.parquet"));
        // Inside the local table but not a plain path under data/: external, never the
        // cloud's metadata/ (a hostile manifest naming a version object as a data file).
        for source in [
            "file:///a/t/metadata/v3.metadata.json",
            "file:///a/t/metadata/snap-1.avro",
            "file:///a/t/data/../metadata/v3.metadata.json",
            "file:///a/t/data/./x.parquet",
            "file:///a/t/data//x.parquet",
            "file:///a/t/data/",
            "file:///a/t/data",
            "file:///a/t/x.parquet",
            "file:///a/t/",
            "file:///a/tt/data/x.parquet",
        ] {
            let t = external(cloud, source);
            assert!(!t.contains("/metadata/"), "{source} -> {t}");
            assert!(!t.contains("/./") && !t.contains("/../"), "{source} -> {t}");
            assert!(!t.ends_with('/') && !t.ends_with("-"), "{source} -> {t}");
        }
    }

    #[test]
    fn ids_and_keys() {
        let u = uuid::Uuid::nil();
        assert_eq!(
            commit_id(&u, 42),
            "sync-00000000-0000-0000-0000-000000000000-42"
        );
        assert_eq!(
            cloud_watermark_key(&u),
            "floe.sync.00000000-0000-0000-0000-000000000000.sequence-number"
        );
        let props = HashMap::from([("k".to_string(), "7".to_string())]);
        assert_eq!(parse_watermark(&props, "k"), 7);
        assert_eq!(parse_watermark(&props, "other"), 0);
    }
}
