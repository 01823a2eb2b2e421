//! Which local snapshots a sync projects, and how: the pure planning step of
//! `spec/sync.md` ("Which local snapshots are projected"). No IO.

use iceberg::spec::{Operation, Snapshot, TableMetadata};

use floe_table_format::Error as TableError;

use crate::error::{Error, Result};

/// What to do with one local snapshot, in the order of [`plan_steps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Project the files this append added as one cloud append.
    Append {
        /// The local snapshot.
        snapshot_id: i64,
        /// Its sequence number (the new watermark once committed).
        sequence_number: i64,
    },
    /// The local history before this snapshot was expired before any projection: project
    /// every file live in it as one cloud append (the table's state as of that snapshot).
    CatchUp {
        /// The oldest local snapshot still known.
        snapshot_id: i64,
        /// Its sequence number.
        sequence_number: i64,
    },
    /// Local maintenance (`replace`, `delete`): not projected.
    Skip {
        /// The local snapshot.
        snapshot_id: i64,
        /// Its operation.
        operation: String,
    },
}

/// The local snapshots after `watermark`, oldest first, as steps. Walks back from the
/// current snapshot along parent ids until a snapshot at or below the watermark, or the
/// first snapshot. If the walk hits an expired parent above the watermark, the history
/// has a gap: with watermark 0 (nothing projected yet) the oldest known snapshot becomes a
/// [`Step::CatchUp`]; otherwise it is [`Error::SyncGap`], since the cloud's share of the
/// missing snapshots cannot be told apart.
pub fn plan_steps(table: &str, metadata: &TableMetadata, watermark: i64) -> Result<Vec<Step>> {
    let mut chain: Vec<&Snapshot> = Vec::new();
    let mut gap = false;
    let mut cur = metadata.current_snapshot().map(|s| s.as_ref());
    while let Some(s) = cur {
        if s.sequence_number() <= watermark {
            break;
        }
        chain.push(s);
        cur = match s.parent_snapshot_id() {
            None => None,
            Some(p) => match metadata.snapshot_by_id(p) {
                // From storage: a parent not below its child would let the walk loop.
                Some(parent) if parent.sequence_number() >= s.sequence_number() => {
                    return Err(TableError::CorruptMetadata {
                        location: table.to_string(),
                        reason: format!(
                            "snapshot {} (sequence number {}) has parent {} with sequence number {}, not below it",
                            s.snapshot_id(),
                            s.sequence_number(),
                            parent.snapshot_id(),
                            parent.sequence_number()
                        ),
                    }
                    .into());
                }
                Some(parent) => Some(parent.as_ref()),
                None => {
                    // The parent's sequence number is below this one's; if it cannot be
                    // above the watermark, nothing unprojected is missing.
                    gap = s.sequence_number().saturating_sub(1) > watermark;
                    None
                }
            },
        };
    }
    chain.reverse();
    let mut steps = Vec::with_capacity(chain.len());
    for (i, s) in chain.iter().enumerate() {
        if i == 0 && gap {
            if watermark > 0 {
                return Err(Error::SyncGap {
                    table: table.to_string(),
                    watermark,
                    oldest: s.sequence_number(),
                });
            }
            steps.push(Step::CatchUp {
                snapshot_id: s.snapshot_id(),
                sequence_number: s.sequence_number(),
            });
            continue;
        }
        match s.summary().operation {
            Operation::Append => steps.push(Step::Append {
                snapshot_id: s.snapshot_id(),
                sequence_number: s.sequence_number(),
            }),
            Operation::Replace | Operation::Delete => steps.push(Step::Skip {
                snapshot_id: s.snapshot_id(),
                operation: s.summary().operation.as_str().to_string(),
            }),
            Operation::Overwrite => {
                return Err(TableError::InvalidArgument {
                    argument: format!("snapshot {} of {table}", s.snapshot_id()),
                    reason: "an overwrite snapshot cannot be projected (Floe projects appends; rows an overwrite replaced would stay in the cloud)".into(),
                }
                .into())
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use floe_table_format::{Table, TableDefinition};
    use iceberg::spec::{Summary, TableMetadataBuilder, MAIN_BRANCH};

    /// Metadata with snapshots 1..=ops.len() (id = sequence number = k, each the parent of
    /// the next), then the snapshots in `expired` removed.
    fn history(ops: &[Operation], expired: &[i64]) -> TableMetadata {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let schema = floe_table_format::schema::default_iot_schema();
        let partition =
            floe_table_format::schema::parse_partition_spec("day(ts)", &schema).unwrap();
        let mut m = Table::first_metadata(
            "memory://t/ns/t",
            TableDefinition {
                schema,
                partition,
                properties: HashMap::new(),
            },
        )
        .unwrap();
        for (i, op) in ops.iter().enumerate() {
            let k = i as i64 + 1;
            let snapshot = Snapshot::builder()
                .with_snapshot_id(k)
                .with_parent_snapshot_id((k > 1).then_some(k - 1))
                .with_sequence_number(k)
                .with_timestamp_ms(now_ms + 1_000 + k)
                .with_manifest_list(format!("memory://t/ns/t/metadata/snap-{k}.avro"))
                .with_summary(Summary {
                    operation: op.clone(),
                    additional_properties: HashMap::new(),
                })
                .with_schema_id(0)
                .build();
            m = TableMetadataBuilder::new_from_metadata(m, None)
                .set_branch_snapshot(snapshot, MAIN_BRANCH)
                .unwrap()
                .build()
                .unwrap()
                .metadata;
        }
        if !expired.is_empty() {
            m = TableMetadataBuilder::new_from_metadata(m, None)
                .remove_snapshots(expired)
                .build()
                .unwrap()
                .metadata;
        }
        m
    }

    fn append(k: i64) -> Step {
        Step::Append {
            snapshot_id: k,
            sequence_number: k,
        }
    }

    fn skip(k: i64, op: &str) -> Step {
        Step::Skip {
            snapshot_id: k,
            operation: op.into(),
        }
    }

    #[test]
    fn plans_the_local_history_after_the_watermark_oldest_first() {
        use Operation::{Append as A, Delete as D, Overwrite as O, Replace as R};
        let catch_up = |k: i64| Step::CatchUp {
            snapshot_id: k,
            sequence_number: k,
        };
        // (history, expired snapshots, watermark, expected steps; None = an error)
        type Case = (Vec<Operation>, Vec<i64>, i64, Option<Vec<Step>>);
        let cases: Vec<Case> = vec![
            (vec![], vec![], 0, Some(vec![])),
            (
                vec![A, A, A],
                vec![],
                0,
                Some(vec![append(1), append(2), append(3)]),
            ),
            (vec![A, A, A], vec![], 2, Some(vec![append(3)])),
            (vec![A, A, A], vec![], 3, Some(vec![])),
            (
                vec![A, A, R, A, D],
                vec![],
                1,
                Some(vec![
                    append(2),
                    skip(3, "replace"),
                    append(4),
                    skip(5, "delete"),
                ]),
            ),
            // Expired at or below the watermark: no gap.
            (
                vec![A, A, A, A],
                vec![1, 2],
                2,
                Some(vec![append(3), append(4)]),
            ),
            // Expired above the watermark before anything was projected: catch up.
            (
                vec![A, A, A, A],
                vec![1, 2],
                0,
                Some(vec![catch_up(3), append(4)]),
            ),
            (
                vec![A, R, A],
                vec![1],
                0,
                Some(vec![catch_up(2), append(3)]),
            ),
            // Expired above a watermark: refuse.
            (vec![A, A, A, A], vec![2], 1, None),
            // Overwrites are not projectable.
            (vec![A, O], vec![], 0, None),
            (vec![A, O, A], vec![], 2, Some(vec![append(3)])),
        ];
        for (ops, expired, w, want) in cases {
            let m = history(&ops, &expired);
            let got = plan_steps("t", &m, w);
            match want {
                Some(steps) => assert_eq!(got.unwrap(), steps, "{ops:?} −{expired:?} w={w}"),
                None => assert!(got.is_err(), "{ops:?} −{expired:?} w={w}: {got:?}"),
            }
        }
        let gap = plan_steps("t", &history(&[A, A, A, A], &[2]), 1).unwrap_err();
        assert!(
            matches!(
                gap,
                Error::SyncGap {
                    watermark: 1,
                    oldest: 3,
                    ..
                }
            ),
            "{gap}"
        );
    }

    /// Parent ids and sequence numbers come from storage: a cycle of parents, or a
    /// parent whose sequence number is not below its child's, is corrupt metadata (the
    /// walk would never end), and a sequence number at i64::MIN does not overflow.
    #[test]
    fn a_parent_cycle_or_impossible_sequence_numbers_are_refused_not_looped() {
        use Operation::Append as A;
        let m = history(&[A, A, A], &[]);
        let mut json = serde_json::to_value(&m).unwrap();
        for snap in json["snapshots"].as_array_mut().unwrap() {
            if snap["snapshot-id"] == 1 {
                snap["parent-snapshot-id"] = 3.into(); // 3 → 2 → 1 → 3 → …
            }
        }
        let cyclic: TableMetadata = serde_json::from_value(json.clone()).unwrap();
        let e = plan_steps("t", &cyclic, 0).unwrap_err();
        assert!(e.to_string().contains("snapshot 1"), "{e}");
        for snap in json["snapshots"].as_array_mut().unwrap() {
            if snap["snapshot-id"] == 1 {
                snap["parent-snapshot-id"] = 42.into(); // expired
                snap["sequence-number"] = i64::MIN.into();
            }
        }
        let low: TableMetadata = serde_json::from_value(json).unwrap();
        let _ = plan_steps("t", &low, 0);
    }
}
