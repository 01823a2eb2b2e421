//! Partition evolution: a metadata-only commit that adds a partition spec and makes it the
//! default (`floe alter NS.T --partition 'hour(ts)'`). New data files are written with the
//! new spec; files written before keep theirs (each manifest names its spec), so nothing is
//! rewritten and readers prune each manifest with its own spec.

use iceberg::spec::{PartitionSpec, TableMetadataBuilder, Transform, UnboundPartitionSpec};

use crate::commit::RetryPolicy;
use crate::driver::{Action, Applied, Committed};
use crate::error::{Error, Result};
use crate::table::Table;

/// The fields of a spec as (source column id, transform), in order: what decides how rows
/// are laid out (names and partition field ids do not).
fn layout(spec: &PartitionSpec) -> Vec<(i32, Transform)> {
    spec.fields()
        .iter()
        .map(|f| (f.source_id, f.transform))
        .collect()
}

/// The action: on each head, parse the expression against its current schema; a head whose
/// default spec already lays rows out that way needs nothing (idempotent by state).
struct AlterPartition<'a> {
    expression: &'a str,
}

#[async_trait::async_trait]
impl Action for AlterPartition<'_> {
    fn kind(&self) -> &'static str {
        "alter-partition"
    }

    async fn apply(&mut self, table: &Table, _attempt: u32) -> Result<Option<Applied>> {
        let head = table.metadata();
        let unbound: UnboundPartitionSpec =
            crate::schema::parse_partition_spec(self.expression, head.current_schema())?;
        let wanted: Vec<(i32, Transform)> = unbound
            .fields()
            .iter()
            .map(|f| (f.source_id, f.transform))
            .collect();
        if layout(head.default_partition_spec()) == wanted {
            return Ok(None);
        }
        let built = TableMetadataBuilder::new_from_metadata(
            head.as_ref().clone(),
            Some(table.metadata_location().to_string()),
        )
        .add_default_partition_spec(unbound)
        .and_then(|b| b.build())
        .map_err(|e| Error::InvalidArgument {
            argument: format!("partition '{}' of {}", self.expression, table.name()),
            reason: e.to_string(),
        })?;
        Ok(Some(Applied::new(built.metadata)))
    }
}

impl Table {
    /// Make `expression` (as in `floe create --partition`, e.g. `hour(ts)`) the table's
    /// partitioning for new data, through the one commit driver. Files already written keep
    /// their spec. A table already partitioned that way commits nothing.
    pub async fn alter_partition(
        &mut self,
        expression: &str,
        policy: &RetryPolicy,
    ) -> Result<Committed> {
        let commit_id = uuid::Uuid::new_v4().to_string();
        self.commit(&commit_id, policy, &mut AlterPartition { expression })
            .await
    }
}
