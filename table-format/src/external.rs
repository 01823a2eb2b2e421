//! The action for changes built by another engine: iceberg `TableRequirement`s and
//! `TableUpdate`s, as iceberg's `Catalog::update_table` (and an Iceberg REST commit) sends
//! them. The driver re-checks the requirements against every head it builds on and
//! re-applies the updates there, so a commit that lost a race to an unrelated writer
//! lands without a round trip to the client, and one whose requirements no longer hold
//! fails with [`Error::RequirementFailed`], committing nothing.

use std::collections::HashSet;

use std::sync::Arc;

use iceberg::spec::TableMetadata;
use iceberg::{TableRequirement, TableUpdate};

use crate::driver::{Action, Applied};
use crate::error::{Error, Result};
use crate::table::Table;

/// Requirements and updates from another engine, applied by [`Table::commit`].
#[derive(Debug, Clone)]
pub struct ApplyUpdates {
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
    /// Whether the files the updates add were found inside the table (checked once: the
    /// table's location cannot change between attempts).
    files_confined: bool,
}

impl ApplyUpdates {
    /// The change a client asked for.
    pub fn new(requirements: Vec<TableRequirement>, updates: Vec<TableUpdate>) -> Self {
        Self {
            requirements,
            updates,
            files_confined: false,
        }
    }

    /// Refuse a snapshot whose manifest list, manifests or data files lie outside the
    /// table's own `metadata/` and `data/` folders, naming the first such path. Only
    /// manifests the parent snapshot does not already list are opened; nothing outside
    /// the table is ever read.
    async fn confine_files(&self, table: &Table) -> Result<()> {
        let root = table.location().trim_end_matches('/').to_string();
        let base = table.metadata().as_ref();
        for update in &self.updates {
            let TableUpdate::AddSnapshot { snapshot } = update else {
                continue;
            };
            let list = snapshot.manifest_list();
            inside(table, &root, "metadata", "manifest list", list)?;
            let manifests = table
                .read_manifest_list(&Arc::new(snapshot.clone()))
                .await?;
            let parent: HashSet<String> = match snapshot
                .parent_snapshot_id()
                .and_then(|id| base.snapshot_by_id(id))
            {
                Some(parent) => table
                    .read_manifest_list(parent)
                    .await?
                    .into_iter()
                    .map(|m| m.manifest_path)
                    .collect(),
                None => HashSet::new(),
            };
            for m in manifests {
                if parent.contains(&m.manifest_path) {
                    continue;
                }
                inside(table, &root, "metadata", "manifest", &m.manifest_path)?;
                let manifest = m
                    .load_manifest(table.file_io())
                    .await
                    .map_err(|e| Error::iceberg(format!("read manifest {}", m.manifest_path), e))?;
                for entry in manifest.entries() {
                    inside(table, &root, "data", "data file", entry.file_path())?;
                }
            }
        }
        Ok(())
    }

    /// Snapshot ids the updates add.
    fn added_snapshots(&self) -> impl Iterator<Item = i64> + '_ {
        self.updates.iter().filter_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
            _ => None,
        })
    }
}

#[async_trait::async_trait]
impl Action for ApplyUpdates {
    fn kind(&self) -> &'static str {
        "apply-updates"
    }

    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>> {
        let base = table.metadata().as_ref();
        for requirement in &self.requirements {
            if let Err(e) = requirement.check(Some(base)) {
                return Err(Error::RequirementFailed {
                    table: table.name().to_string(),
                    reason: e.message().to_string(),
                    after_rebase: attempt > 0,
                });
            }
        }
        if !self.files_confined {
            self.confine_files(table).await?;
            self.files_confined = true;
        }
        let mut builder = base
            .clone()
            .into_builder(Some(table.metadata_location().to_string()));
        for update in self.updates.iter().cloned() {
            builder = update
                .apply(builder)
                .map_err(|e| Error::iceberg(format!("apply an update to {}", table.name()), e))?;
        }
        let built = builder
            .build()
            .map_err(|e| Error::iceberg(format!("build next metadata of {}", table.name()), e))?;
        Ok(Some(Applied::new(built.metadata)))
    }

    /// A client wrote its files before the server loaded the table: every vacuum intent in
    /// the log is checked.
    fn reuses_objects(&self) -> bool {
        true
    }

    /// A head holds this commit when it holds a snapshot the updates add (snapshot ids are
    /// chosen by the client, once per change), so a lost response is not applied twice.
    fn is_in(&self, metadata: &TableMetadata, _commit_id: &str) -> bool {
        let mut added = self.added_snapshots().peekable();
        added.peek().is_some() && added.all(|id| metadata.snapshot_by_id(id).is_some())
    }
}

/// Whether `path` lies under `{root}/{folder}/`, with no empty, `.` or `..` segment after
/// the root (so no path can climb out of the folder).
fn is_inside(root: &str, folder: &str, path: &str) -> bool {
    path.strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_prefix(folder))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        })
}

/// Refuse `path` unless it lies under `{root}/{folder}/`, naming it.
fn inside(table: &Table, root: &str, folder: &str, what: &str, path: &str) -> Result<()> {
    if is_inside(root, folder, path) {
        return Ok(());
    }
    Err(Error::OutsideTable {
        table: table.name().to_string(),
        what: what.to_string(),
        location: path.to_string(),
        folder: format!("{root}/{folder}/"),
    })
}

#[cfg(test)]
mod tests {
    use super::is_inside;

    #[test]
    fn only_plain_paths_under_the_folder_are_inside() {
        let root = "s3://b/fleet/dev_1";
        assert!(is_inside(
            root,
            "data",
            "s3://b/fleet/dev_1/data/day=1/f.parquet"
        ));
        assert!(is_inside(
            root,
            "metadata",
            "s3://b/fleet/dev_1/metadata/snap-1.avro"
        ));
        for outside in [
            "s3://b/fleet/dev_2/data/f.parquet",
            "s3://b/fleet/dev_10/data/f.parquet",
            "s3://b/fleet/dev_1/metadata/f.parquet",
            "s3://b/fleet/dev_1/data/../../dev_2/data/f.parquet",
            "s3://b/fleet/dev_1/data/./f.parquet",
            "s3://b/fleet/dev_1/data//f.parquet",
            "s3://b/fleet/dev_1/data/",
            "s3://b/fleet/dev_1data/f.parquet",
            "s3://other/fleet/dev_1/data/f.parquet",
            "file:///fleet/dev_1/data/f.parquet",
        ] {
            assert!(!is_inside(root, "data", outside), "{outside}");
        }
    }
}
