//! The change between two metadata versions, as the Iceberg `TableUpdate`s and
//! `TableRequirement`s a REST catalog applies. A table whose head is a REST catalog
//! ([`crate::head::HeadStore`] implementations outside this crate) builds its next metadata
//! like any other (the same actions, the same driver) and sends this diff instead of a
//! metadata file.
//!
//! Every difference Floe's actions can make is expressed; any other difference (a change
//! of uuid or location, statistics, encryption keys, refs other than `main`) is refused
//! with [`Error::InvalidArgument`], never dropped silently.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{SnapshotReference, TableMetadata};
use iceberg::{TableRequirement, TableUpdate};

use crate::error::{Error, Result};

/// The branch Floe commits to.
const MAIN: &str = "main";

/// What `next` requires of the head it is applied to: the same table (uuid) whose `main`
/// is still where `base` had it, with the same schema, spec and field-id counters.
pub fn requirements(base: &TableMetadata) -> Vec<TableRequirement> {
    vec![
        TableRequirement::UuidMatch { uuid: base.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN.to_string(),
            snapshot_id: base.current_snapshot_id(),
        },
        TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: base.current_schema_id(),
        },
        TableRequirement::LastAssignedFieldIdMatch {
            last_assigned_field_id: base.last_column_id(),
        },
        TableRequirement::DefaultSpecIdMatch {
            default_spec_id: base.default_partition_spec_id(),
        },
    ]
}

fn refs(m: &TableMetadata) -> Result<HashMap<String, SnapshotReference>> {
    let v = serde_json::to_value(m).map_err(|e| Error::InvalidArgument {
        argument: "table metadata".into(),
        reason: format!("cannot serialize: {e}"),
    })?;
    Ok(match v.get("refs") {
        Some(r) => serde_json::from_value(r.clone()).map_err(|e| Error::InvalidArgument {
            argument: "table metadata refs".into(),
            reason: e.to_string(),
        })?,
        None => HashMap::new(),
    })
}

/// The updates that turn `base` into `next`.
pub fn updates(base: &TableMetadata, next: &TableMetadata) -> Result<Vec<TableUpdate>> {
    let refuse = |what: &str| {
        Err(Error::InvalidArgument {
            argument: "commit through a REST catalog".into(),
            reason: format!("it cannot express a change of {what}"),
        })
    };
    if base.uuid() != next.uuid() {
        return refuse("table uuid");
    }
    if base.location() != next.location() {
        return refuse("location");
    }
    if base.statistics_iter().len() != next.statistics_iter().len()
        || base.partition_statistics_iter().len() != next.partition_statistics_iter().len()
        || base.encryption_keys_iter().len() != next.encryption_keys_iter().len()
    {
        return refuse("statistics or encryption keys");
    }
    let mut out = Vec::new();
    if next.format_version() != base.format_version() {
        out.push(TableUpdate::UpgradeFormatVersion {
            format_version: next.format_version(),
        });
    }
    let base_schemas: HashSet<i32> = base.schemas_iter().map(|s| s.schema_id()).collect();
    for s in next.schemas_iter() {
        if !base_schemas.contains(&s.schema_id()) {
            out.push(TableUpdate::AddSchema {
                schema: s.as_ref().clone(),
            });
        }
    }
    if next.current_schema_id() != base.current_schema_id() {
        out.push(TableUpdate::SetCurrentSchema {
            schema_id: next.current_schema_id(),
        });
    }
    let base_specs: HashSet<i32> = base.partition_specs_iter().map(|s| s.spec_id()).collect();
    for s in next.partition_specs_iter() {
        if !base_specs.contains(&s.spec_id()) {
            out.push(TableUpdate::AddSpec {
                spec: s.as_ref().clone().into_unbound(),
            });
        }
    }
    if next.default_partition_spec_id() != base.default_partition_spec_id() {
        out.push(TableUpdate::SetDefaultSpec {
            spec_id: next.default_partition_spec_id(),
        });
    }
    let base_orders: HashSet<i64> = base.sort_orders_iter().map(|o| o.order_id).collect();
    for o in next.sort_orders_iter() {
        if !base_orders.contains(&o.order_id) {
            out.push(TableUpdate::AddSortOrder {
                sort_order: o.as_ref().clone(),
            });
        }
    }
    if next.default_sort_order_id() != base.default_sort_order_id() {
        out.push(TableUpdate::SetDefaultSortOrder {
            sort_order_id: next.default_sort_order_id(),
        });
    }
    // Snapshots: added in sequence order, then the refs, then the removed ones.
    let mut added: Vec<_> = next
        .snapshots()
        .filter(|s| base.snapshot_by_id(s.snapshot_id()).is_none())
        .collect();
    added.sort_by_key(|s| s.sequence_number());
    for s in added {
        out.push(TableUpdate::AddSnapshot {
            snapshot: s.as_ref().clone(),
        });
    }
    let (base_refs, next_refs) = (refs(base)?, refs(next)?);
    for (name, r) in &next_refs {
        if base_refs.get(name) != Some(r) {
            if name != MAIN {
                return refuse(&format!("ref '{name}'"));
            }
            out.push(TableUpdate::SetSnapshotRef {
                ref_name: name.clone(),
                reference: r.clone(),
            });
        }
    }
    for name in base_refs.keys() {
        if !next_refs.contains_key(name) {
            out.push(TableUpdate::RemoveSnapshotRef {
                ref_name: name.clone(),
            });
        }
    }
    let removed: Vec<i64> = base
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| next.snapshot_by_id(*id).is_none())
        .collect();
    if !removed.is_empty() {
        out.push(TableUpdate::RemoveSnapshots {
            snapshot_ids: removed,
        });
    }
    let set: HashMap<String, String> = next
        .properties()
        .iter()
        .filter(|(k, v)| base.properties().get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !set.is_empty() {
        out.push(TableUpdate::SetProperties { updates: set });
    }
    let mut removals: Vec<String> = base
        .properties()
        .keys()
        .filter(|k| !next.properties().contains_key(*k))
        .cloned()
        .collect();
    if !removals.is_empty() {
        removals.sort();
        out.push(TableUpdate::RemoveProperties { removals });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{self, DEFAULT_PARTITION};
    use crate::table::{Table, TableDefinition};

    fn base() -> TableMetadata {
        let s = schema::default_iot_schema();
        let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &s).unwrap();
        let definition = TableDefinition {
            schema: s,
            partition,
            properties: HashMap::from([
                ("keep".to_string(), "1".to_string()),
                ("drop".to_string(), "2".to_string()),
            ]),
        };
        Table::first_metadata("memory://diff/fleet/dev_1", definition).unwrap()
    }

    fn apply(base: &TableMetadata, updates: Vec<TableUpdate>) -> TableMetadata {
        let mut builder = base.clone().into_builder(None);
        for u in updates {
            builder = u.apply(builder).unwrap();
        }
        builder.build().unwrap().metadata
    }

    #[test]
    fn applying_the_updates_to_the_base_gives_the_next_properties() {
        let b = base();
        let next = b
            .clone()
            .into_builder(None)
            .set_properties(HashMap::from([
                ("keep".to_string(), "1".to_string()),
                ("new".to_string(), "3".to_string()),
            ]))
            .unwrap()
            .remove_properties(&["drop".to_string()])
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        let updates = updates(&b, &next).unwrap();
        assert_eq!(updates.len(), 2, "{updates:?}");
        assert_eq!(apply(&b, updates).properties(), next.properties());
        assert!(
            super::updates(&b, &b).unwrap().is_empty(),
            "no change, no update"
        );
    }

    #[test]
    fn a_change_it_cannot_express_is_refused_not_dropped() {
        let b = base();
        let other_uuid = b
            .clone()
            .into_builder(None)
            .assign_uuid(uuid::Uuid::new_v4())
            .build()
            .unwrap()
            .metadata;
        assert!(updates(&b, &other_uuid).is_err());
        let moved = b
            .clone()
            .into_builder(None)
            .set_location("memory://diff/fleet/dev_2".into())
            .build()
            .unwrap()
            .metadata;
        assert!(updates(&b, &moved).is_err());
    }

    #[test]
    fn requirements_pin_the_base() {
        let b = base();
        let reqs = requirements(&b);
        assert!(reqs.contains(&TableRequirement::UuidMatch { uuid: b.uuid() }));
        assert!(reqs.contains(&TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN.into(),
            snapshot_id: None
        }));
    }
}
