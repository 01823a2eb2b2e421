//! Property test: random interleavings of several writers under random faults. The history
//! stays gap-free, every acknowledged commit is present once, every commit reported as
//! failed is absent, and an unknown outcome is present at most once.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use proptest::prelude::*;

use floe_table_format::{CommitOptions, Error, RetryPolicy, Table, TableIdent, Version, Warehouse};

use crate::faults::{Fault, FaultyStore, Op, Rule};
use crate::support::*;

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::FailBefore),
        Just(Fault::FailAfter),
        Just(Fault::ExistsAfter),
        (1u64..5).prop_map(|ms| Fault::Delay(Duration::from_millis(ms))),
    ]
}

fn rule() -> impl Strategy<Value = (Op, &'static str, usize, Fault)> {
    (
        prop_oneof![
            Just(Op::Create),
            Just(Op::Put),
            Just(Op::Get),
            Just(Op::Head)
        ],
        prop_oneof![
            Just(".metadata.json"),
            Just("version-hint.text"),
            Just("-m0.avro"),
            Just("/snap-"),
            Just(".parquet")
        ],
        1usize..8,
        fault(),
    )
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Acked,
    Failed,
    Unknown,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn writers_under_faults_keep_history_exact(
        writers in 2usize..4,
        commits in 1usize..4,
        rules in proptest::collection::vec(rule(), 0..6),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let url = format!("memory://prop-{}", uuid::Uuid::new_v4());
            let plain = Warehouse::open(&url).unwrap();
            let ident = TableIdent::parse("fleet.p").unwrap();
            Table::create(&plain, &ident, iot_definition()).await.unwrap();
            let faulty = Arc::new(FaultyStore::new(
                plain.store().clone(),
                rules.iter().map(|(op, path, nth, f)| Rule::new(*op, path, *nth, *f)).collect(),
            ));
            let wh = Warehouse::with_store(&url, faulty).unwrap();
            let tasks = (0..writers).map(|w| {
                let wh = wh.clone();
                let ident = ident.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let Ok(mut t) = Table::load(&wh, &ident).await else { return out };
                    for c in 0..commits {
                        let opts = CommitOptions {
                            policy: RetryPolicy {
                                base_delay: Duration::from_millis(1),
                                max_delay: Duration::from_millis(4),
                                ..RetryPolicy::default()
                            },
                            ..CommitOptions::default()
                        };
                        let id = opts.commit_id.clone();
                        let r = append_batch(&mut t, |s| rows(s, &format!("w{w}c{c}"), DAY0_US, 3, 1.0), opts).await;
                        let outcome = match r {
                            Ok(_) => Outcome::Acked,
                            Err(Error::CommitUnknown { .. }) => Outcome::Unknown,
                            Err(_) => Outcome::Failed,
                        };
                        out.push((id, outcome));
                        if t.refresh().await.is_err() {
                            if let Ok(fresh) = Table::load(&wh, &ident).await { t = fresh } else { break }
                        }
                    }
                    out
                })
            });
            let results: Vec<(String, Outcome)> = join_all(tasks).await.into_iter().flat_map(|r| r.unwrap()).collect();
            // Read back through the plain store: no faults now.
            let t = Table::load(&plain, &ident).await.unwrap();
            let ids = commit_ids(&t);
            for (id, outcome) in &results {
                let n = ids.iter().filter(|c| *c == id).count();
                match outcome {
                    Outcome::Acked => assert_eq!(n, 1, "acked {id}: {rules:?}"),
                    Outcome::Failed => assert_eq!(n, 0, "failed {id} present: {rules:?}"),
                    Outcome::Unknown => assert!(n <= 1, "unknown {id} doubled: {rules:?}"),
                }
            }
            assert_eq!(ids.len(), t.metadata().snapshots().len());
            assert_eq!(t.version(), Version(1 + ids.len() as u64), "gap-free: {rules:?}");
            for v in 1..=1 + ids.len() as u64 {
                let loc = floe_table_format::version::metadata_location(t.location(), Version(v));
                assert!(Table::open_metadata(&plain, &loc).await.is_ok(), "v{v} readable");
            }
            assert_eq!(scan(&t).await.0, 3 * ids.len());
        });
    }
}
