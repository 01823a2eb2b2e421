//! The snapshot producer shared by every action that adds a snapshot (append, replace,
//! delete files, and sync's projection through append): manifest writers, the base's
//! manifests, the manifest list, summary totals and the next metadata. An action decides
//! *which* manifests the new snapshot holds; this module writes them down the same way
//! for all of them.
//!
//! Object names are fresh per action call (`write_id`) and per attempt, never derived
//! from the commit id, so a rerun of a commit can never overwrite an object a committed
//! snapshot references.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    DataFile, ManifestFile, ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation,
    Schema, Snapshot, SnapshotSummaryCollector, Summary, TableMetadataBuilder, MAIN_BRANCH,
    UNASSIGNED_SEQUENCE_NUMBER,
};

use crate::driver::{Applied, Cleanup};
use crate::error::{Error, Result};
use crate::metadata::{now_ms, COMMIT_ID_KEY};
use crate::table::{Table, TableView};

/// Summary totals Floe carries forward from the parent snapshot: (total, added, removed).
const TOTALS: &[(&str, &str, &str)] = &[
    ("total-records", "added-records", "deleted-records"),
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    (
        "total-delete-files",
        "added-delete-files",
        "removed-delete-files",
    ),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
    (
        "total-equality-deletes",
        "added-equality-deletes",
        "removed-equality-deletes",
    ),
];

/// A v2 data-manifest writer at `location` for `snapshot_id`, with the current schema
/// (or `schema`, the one new files were written with) and partition spec `spec_id` (None:
/// the default spec, the one DataWriter writes with; DataFile hides its spec id in iceberg
/// 0.10). A manifest rewritten from another keeps that one's spec: its entries' partition
/// values are tuples of that spec, and under another spec's header readers would prune
/// them by the wrong transforms.
pub(crate) fn manifest_writer(
    table: &TableView,
    location: &str,
    snapshot_id: i64,
    schema: Option<&Schema>,
    spec_id: Option<i32>,
) -> Result<ManifestWriter> {
    let metadata = table.metadata();
    let spec = match spec_id {
        None => metadata.default_partition_spec().as_ref().clone(),
        Some(id) => metadata
            .partition_spec_by_id(id)
            .ok_or_else(|| Error::CorruptMetadata {
                location: table.metadata_location().to_string(),
                reason: format!("a manifest names partition spec {id}, which the table lacks"),
            })?
            .as_ref()
            .clone(),
    };
    let output = table
        .file_io()
        .new_output(location)
        .map_err(|e| Error::iceberg(format!("open manifest {location}"), e))?;
    Ok(ManifestWriterBuilder::new(
        output,
        Some(snapshot_id),
        schema.map_or_else(
            || table.metadata().current_schema().clone(),
            |s| Arc::new(s.clone()),
        ),
        spec,
    )
    .build_v2_data())
}

/// Write `files` as the `ADDED` entries of one manifest of snapshot `snapshot_id`
/// (written once per action call and reused by every attempt: its entries inherit the
/// sequence number of whichever attempt wins). `schema` is the schema the files were
/// written with when it is not the table's current one (schema evolution).
pub(crate) async fn write_added_manifest(
    table: &TableView,
    files: &[DataFile],
    snapshot_id: i64,
    write_id: &str,
    schema: Option<&Schema>,
) -> Result<ManifestFile> {
    let location = format!("{}/metadata/{write_id}-m0.avro", table.location());
    let mut writer = manifest_writer(table, &location, snapshot_id, schema, None)?;
    for f in files {
        writer
            .add_file(f.clone(), -1)
            .map_err(|e| Error::iceberg(format!("add {} to manifest", f.file_path()), e))?;
    }
    writer
        .write_manifest_file()
        .await
        .map_err(|e| Error::iceberg(format!("write manifest {location}"), e))
}

/// What the new snapshot is: its operation, its manifests, and the files it adds and
/// removes (for the summary).
pub(crate) struct NewSnapshot<'a> {
    /// `append`, `replace` or `delete`.
    pub operation: Operation,
    /// Every manifest of the new snapshot.
    pub manifests: Vec<ManifestFile>,
    /// Data files it adds.
    pub added: &'a [DataFile],
    /// Data files it removes.
    pub removed: &'a [DataFile],
    /// Extra summary properties (the `operation` key is ignored).
    pub summary: HashMap<String, String>,
    /// Table properties set in the same version (usually empty).
    pub table_properties: HashMap<String, String>,
    /// A schema to add and make current in the same version, before the snapshot (an
    /// append that evolves the schema; see [`crate::evolve`]).
    pub schema: Option<Schema>,
}

/// One attempt at building a snapshot on the table's loaded head.
pub(crate) struct SnapshotProducer<'a> {
    table: &'a Table,
    snapshot_id: i64,
    write_id: &'a str,
    attempt: u32,
    commit_id: &'a str,
}

impl<'a> SnapshotProducer<'a> {
    /// A producer of snapshot `snapshot_id` (fixed across attempts) for commit `commit_id`.
    pub(crate) fn new(
        table: &'a Table,
        snapshot_id: i64,
        write_id: &'a str,
        attempt: u32,
        commit_id: &'a str,
    ) -> Self {
        Self {
            table,
            snapshot_id,
            write_id,
            attempt,
            commit_id,
        }
    }

    /// The manifests of the head's current snapshot (from the handle's cache when it
    /// wrote that list itself, so an append after an append needs no GET).
    pub(crate) async fn base_manifests(&self) -> Result<Vec<ManifestFile>> {
        let Some(parent) = self.table.metadata().current_snapshot() else {
            return Ok(Vec::new());
        };
        if let Some((id, cached)) = &self.table.list_cache {
            if *id == parent.snapshot_id() {
                return Ok(cached.as_ref().clone());
            }
        }
        Ok(self
            .table
            .iceberg()?
            .manifest_list_reader(parent)
            .load()
            .await
            .map_err(|e| {
                Error::iceberg(format!("read manifest list {}", parent.manifest_list()), e)
            })?
            .consume_entries()
            .into_iter()
            .collect())
    }

    /// A writer for a manifest this attempt rewrites (`tag` tells them apart) from
    /// manifests of partition spec `spec_id`.
    pub(crate) fn manifest_writer(
        &self,
        tag: &str,
        spec_id: i32,
    ) -> Result<(String, ManifestWriter)> {
        let location = format!(
            "{}/metadata/{}-a{}-{tag}.avro",
            self.table.location(),
            self.write_id,
            self.attempt
        );
        let writer = manifest_writer(self.table, &location, self.snapshot_id, None, Some(spec_id))?;
        Ok((location, writer))
    }

    /// Write the manifest list, the summary with its totals, and the next metadata.
    pub(crate) async fn produce(self, new: NewSnapshot<'_>) -> Result<Applied> {
        let table = self.table;
        // A schema change goes in first, so the snapshot records the schema it was
        // written with; the metadata log gets one entry either way.
        let (evolved, previous) = match new.schema {
            Some(schema) => (
                Some(
                    TableMetadataBuilder::new_from_metadata(
                        table.metadata().as_ref().clone(),
                        Some(table.metadata_location().to_string()),
                    )
                    .add_current_schema(schema)
                    .and_then(|b| b.build())
                    .map_err(|e| {
                        Error::iceberg(format!("evolve the schema of {}", table.name()), e)
                    })?
                    .metadata,
                ),
                None,
            ),
            None => (None, Some(table.metadata_location().to_string())),
        };
        let base = evolved.as_ref().unwrap_or(table.metadata().as_ref());
        let parent = base.current_snapshot();
        // From storage: at i64::MAX there is no next one (iceberg would overflow).
        if base.last_sequence_number() == i64::MAX {
            return Err(Error::Exhausted {
                location: table.metadata_location().to_string(),
                what: "last-sequence-number".into(),
                value: i64::MAX.to_string(),
            });
        }
        let sequence_number = base.next_sequence_number();
        let list_location = format!(
            "{}/metadata/snap-{}-{}-{}.avro",
            table.location(),
            self.snapshot_id,
            self.attempt,
            self.write_id
        );
        let out = table
            .file_io()
            .new_output(&list_location)
            .map_err(|e| Error::iceberg(format!("open {list_location}"), e))?
            .writer()
            .await
            .map_err(|e| Error::iceberg(format!("open {list_location}"), e))?;
        let mut list = ManifestListWriter::v2(
            out,
            self.snapshot_id,
            parent.map(|p| p.snapshot_id()),
            sequence_number,
        );
        // The list as readers will load it: unassigned sequence numbers become this
        // snapshot's, exactly as the list writer assigns them.
        let as_written: Vec<ManifestFile> = new
            .manifests
            .iter()
            .cloned()
            .map(|mut m| {
                if m.sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                    m.sequence_number = sequence_number;
                }
                if m.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                    m.min_sequence_number = sequence_number;
                }
                m
            })
            .collect();
        list.add_manifests(new.manifests.into_iter())
            .map_err(|e| Error::iceberg(format!("write {list_location}"), e))?;
        list.close()
            .await
            .map_err(|e| Error::iceberg(format!("write {list_location}"), e))?;

        let mut collector = SnapshotSummaryCollector::default();
        let (schema, spec) = (base.current_schema(), base.default_partition_spec());
        for f in new.added {
            collector.add_file(f, schema.clone(), spec.clone());
        }
        for f in new.removed {
            collector.remove_file(f, schema.clone(), spec.clone());
        }
        let mut props = new.summary;
        props.remove("operation");
        props.extend(collector.build());
        carry_totals(
            &mut props,
            parent.map(|p| &p.summary().additional_properties),
        );
        props.insert(COMMIT_ID_KEY.into(), self.commit_id.to_string());
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_location)
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_summary(Summary {
                operation: new.operation,
                additional_properties: props,
            })
            .with_schema_id(base.current_schema_id())
            .with_timestamp_ms(now_ms().max(base.last_updated_ms().saturating_add(1)))
            .build();
        let built = TableMetadataBuilder::new_from_metadata(base.clone(), previous)
            .set_branch_snapshot(snapshot, MAIN_BRANCH)
            .and_then(|b| {
                if new.table_properties.is_empty() {
                    Ok(b)
                } else {
                    b.set_properties(new.table_properties)
                }
            })
            .and_then(|b| b.build())
            .map_err(|e| Error::iceberg(format!("build next metadata of {}", table.name()), e))?;
        Ok(Applied {
            metadata: built.metadata,
            cleanup: Cleanup {
                written_list: Some((self.snapshot_id, Arc::new(as_written))),
                ..Cleanup::default()
            },
        })
    }
}

/// Set each total to the parent's plus what this snapshot added minus what it removed.
/// A parent that does not record a total (another writer's snapshot), or arithmetic that
/// would go negative or overflow, leaves the total unknown, as Iceberg Java does, rather
/// than restarting the count or recording a wrong one.
fn carry_totals(props: &mut HashMap<String, String>, parent: Option<&HashMap<String, String>>) {
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    for (total, added, removed) in TOTALS {
        let previous = match parent {
            None => Some(0),
            Some(p) => get(p, total),
        };
        let value = previous
            .and_then(|p| p.checked_add(get(props, added).unwrap_or(0)))
            .and_then(|v| v.checked_sub(get(props, removed).unwrap_or(0)));
        match value {
            Some(v) => props.insert(total.to_string(), v.to_string()),
            None => props.remove(*total),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn totals_carry_forward_add_and_subtract() {
        let parent = map(&[("total-records", "10"), ("total-data-files", "2")]);
        let mut props = map(&[
            ("added-records", "5"),
            ("deleted-records", "3"),
            ("added-data-files", "1"),
        ]);
        carry_totals(&mut props, Some(&parent));
        assert_eq!(props["total-records"], "12");
        assert_eq!(props["total-data-files"], "3");
        // The parent does not record it: unknown, not restarted at zero.
        assert!(!props.contains_key("total-files-size"));
    }

    #[test]
    fn the_first_snapshot_counts_from_zero() {
        let mut props = map(&[("added-records", "7")]);
        carry_totals(&mut props, None);
        assert_eq!(props["total-records"], "7");
        assert_eq!(props["total-delete-files"], "0");
    }

    #[test]
    fn impossible_totals_become_unknown() {
        let parent = map(&[
            ("total-records", "2"),
            ("total-data-files", &u64::MAX.to_string()),
        ]);
        let mut props = map(&[("deleted-records", "3"), ("added-data-files", "1")]);
        carry_totals(&mut props, Some(&parent));
        assert!(!props.contains_key("total-records"), "{props:?}");
        assert!(!props.contains_key("total-data-files"), "{props:?}");
    }
}
