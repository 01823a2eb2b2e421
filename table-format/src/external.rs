//! The action for changes built by another engine: iceberg `TableRequirement`s and
//! `TableUpdate`s, as iceberg's `Catalog::update_table` (and an Iceberg REST commit) sends
//! them. The driver re-checks the requirements against every head it builds on and
//! re-applies the updates there, so a commit that lost a race to an unrelated writer
//! lands without a round trip to the client, and one whose requirements no longer hold
//! fails with [`Error::RequirementFailed`], committing nothing.

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
}

impl ApplyUpdates {
    /// The change a client asked for.
    pub fn new(requirements: Vec<TableRequirement>, updates: Vec<TableUpdate>) -> Self {
        Self {
            requirements,
            updates,
        }
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

    /// A head holds this commit when it holds a snapshot the updates add (snapshot ids are
    /// chosen by the client, once per change), so a lost response is not applied twice.
    fn is_in(&self, metadata: &TableMetadata, _commit_id: &str) -> bool {
        let mut added = self.added_snapshots().peekable();
        added.peek().is_some() && added.all(|id| metadata.snapshot_by_id(id).is_some())
    }
}
