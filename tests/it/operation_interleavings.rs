//! Property test: a random sequence of different operations on one table (append, compact,
//! retain, expire, and the sync projection into a cloud warehouse) under random faults on
//! both stores. An unknown outcome is rerun until it settles. Checked after every step
//! against a model of the rows: every acknowledged append's rows are present once unless an
//! acknowledged retain covered them, nothing a retain dropped comes back, a failed step
//! changes nothing, the history is gap-free, and the cloud holds exactly the projected
//! appends once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, Float64Array};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;

use floe_table_format::iceberg::spec::DataFile;
use floe_table_format::{
    rewrite, vacuum, version, CommitOptions, DataWriter, Error, Table, TableIdent, Version,
    Warehouse,
};

use crate::faults::{Fault, FaultyStore, Op, Rule};
use crate::operation_faults::{
    cloud_watermark, head, ids, local_watermark, quick_policy, quick_sync, sync, values,
};
use crate::support::*;

/// Cases per run: `PROPTEST_CASES`, else 16.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// Reruns of a step with an unknown outcome before the test gives up on it settling (each
/// fault fires once, and a case has at most 8).
const RERUNS: usize = 12;

#[derive(Debug, Clone)]
enum Step {
    /// `rows` rows on day `day` (one file in that day's partition).
    Append {
        day: i64,
        rows: usize,
    },
    Compact,
    /// Drop the files whose rows are all before day `before_day`.
    Retain {
        before_day: i64,
    },
    /// Expire every snapshot but the newest `keep` (never an unprojected one).
    Expire {
        keep: usize,
    },
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0i64..3, 1usize..4).prop_map(|(day, rows)| Step::Append { day, rows }),
        1 => Just(Step::Compact),
        1 => (1i64..3).prop_map(|before_day| Step::Retain { before_day }),
        1 => (1usize..3).prop_map(|keep| Step::Expire { keep }),
        2 => Just(Step::Sync),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::FailBefore),
        Just(Fault::FailAfter),
        Just(Fault::ExistsAfter),
        Just(Fault::SlowDown),
        (1u64..5).prop_map(|ms| Fault::Delay(Duration::from_millis(ms))),
    ]
}

/// A fault on an operation the steps really make: claims, puts of every object kind, reads
/// of metadata, lists, manifests and data files, and HEADs (the sync's copy checks).
fn rule() -> impl Strategy<Value = (Op, &'static str, usize, Fault)> {
    (
        prop_oneof![
            3 => Just((Op::Create, ".metadata.json")),
            1 => Just((Op::Put, "version-hint.text")),
            1 => Just((Op::Put, "-m0.avro")),
            1 => Just((Op::Put, "-a0-r")),
            1 => Just((Op::Put, "/snap-")),
            1 => Just((Op::Put, ".parquet")),
            2 => Just((Op::Get, ".metadata.json")),
            1 => Just((Op::Get, "version-hint.text")),
            1 => Just((Op::Get, "/snap-")),
            1 => Just((Op::Get, ".parquet")),
            1 => Just((Op::Head, ".parquet")),
        ],
        1usize..6,
        fault(),
    )
        .prop_map(|((op, path), nth, fault)| (op, path, nth, fault))
}

/// A store over `inner` with the random `rules`.
fn faulty(inner: Arc<dyn ObjectStore>, rules: &Rules) -> Arc<FaultyStore> {
    Arc::new(FaultyStore::new(
        inner,
        rules
            .iter()
            .map(|(op, path, nth, f)| Rule::new(*op, path, *nth, *f))
            .collect(),
    ))
}

/// `plain`'s warehouse over `store`, where, when `lost` names a version, its claim takes
/// effect but its answer is lost and every read-back and the driver's last look fail: an
/// unknown outcome.
fn layer(plain: &Warehouse, store: &Arc<FaultyStore>, lost: Option<u64>) -> Warehouse {
    let rules = match lost {
        None => Vec::new(),
        Some(v) => {
            let path = format!("/v{v}.metadata.json");
            vec![
                Rule::new(Op::Create, &path, 1, Fault::FailAfter),
                Rule::new(Op::Get, &path, 1, Fault::FailBefore).times(6),
            ]
        }
    };
    let inner: Arc<dyn ObjectStore> = store.clone();
    Warehouse::with_store(plain.url(), Arc::new(FaultyStore::new(inner, rules))).unwrap()
}

/// One acknowledged append, as the model knows it.
#[derive(Debug)]
struct Acked {
    day: i64,
    values: Vec<f64>,
    /// The local snapshot's sequence number.
    sequence_number: i64,
    /// Not yet dropped by an acknowledged retain.
    live: bool,
}

/// What a step did, once settled.
#[derive(Debug, PartialEq)]
enum Settled {
    /// Acknowledged (possibly after reruns of an unknown outcome).
    Acked,
    /// Reported as failed, without an unknown outcome before: nothing may have changed.
    Failed,
}

/// Settle `result` of a step's first run: an unknown outcome (and any error of a rerun
/// after one) is rerun by `rerun` until it is acknowledged.
macro_rules! settle {
    ($first:expr, $rerun:expr, $what:expr) => {{
        let mut result = $first;
        let mut unknown = false;
        let mut reruns = 0;
        loop {
            match result {
                Ok(_) => break Settled::Acked,
                Err(Error::CommitUnknown { .. }) => unknown = true,
                Err(_) if unknown => {}
                Err(_) => break Settled::Failed,
            }
            reruns += 1;
            assert!(reruns <= RERUNS, "{} did not settle", $what);
            result = $rerun;
        }
    }};
}

/// Load the table through a faulty store, retrying (its faults are finite).
async fn load(wh: &Warehouse, ident: &TableIdent) -> Table {
    for _ in 0..RERUNS {
        if let Ok(t) = Table::load(wh, ident).await {
            return t;
        }
    }
    panic!("{ident} never loaded")
}

/// Write `n` rows on `day` with values `base..`, one hour into the day (so a retain cutoff
/// at a day boundary never splits a file, even as the clock moves on).
async fn write_rows(
    t: &Table,
    day: i64,
    n: usize,
    base: f64,
) -> floe_table_format::Result<Vec<DataFile>> {
    let mut w = DataWriter::new(t)?;
    let b = rows(
        w.arrow_schema(),
        "p",
        DAY0_US + day * DAY_US + 3_600_000_000,
        n,
        base,
    );
    w.write(b).await?;
    w.close().await
}

/// The `older_than` that puts retain's cutoff at the start of day `day`.
fn older_than_day(day: i64) -> Duration {
    let now_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    Duration::from_micros((now_us - (DAY0_US + day * DAY_US)) as u64)
}

/// The history of the table at `location` is gap-free: v1..=`head` and nothing past it,
/// each version readable metadata or a tombstone.
async fn assert_gap_free(plain: &Warehouse, location: &str, head: u64, what: &str) {
    let versions = version::list_versions(plain, location).await.unwrap();
    let want: Vec<Version> = (1..=head).map(Version).collect();
    assert_eq!(versions, want, "{what}: history gap-free");
    for v in want {
        let loc = version::metadata_location(location, v);
        let path = plain.object_path(&loc).unwrap();
        let bytes = plain
            .store()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if !version::is_tombstone(&bytes) {
            assert!(
                Table::open_metadata(plain, &loc).await.is_ok(),
                "{what}: {loc} readable"
            );
        }
    }
}

/// Every `value` of the table's live data files (read with the Parquet reader; quicker in a
/// debug build than iceberg's scan, which the final checks use), sorted.
async fn live_values(table: &Table) -> Vec<f64> {
    let wh = table.warehouse();
    let mut out = Vec::new();
    for f in rewrite::live_files(table).await.unwrap() {
        let path = wh.object_path(f.data_file.file_path()).unwrap();
        let bytes = wh.store().get(&path).await.unwrap().bytes().await.unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let v = b.column_by_name("value").unwrap();
            let v = v.as_any().downcast_ref::<Float64Array>().unwrap();
            out.extend((0..v.len()).filter(|i| v.is_valid(*i)).map(|i| v.value(i)));
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// The local rows the model expects, sorted.
fn live_rows(model: &[Acked]) -> Vec<f64> {
    let mut v: Vec<f64> = model
        .iter()
        .filter(|a| a.live)
        .flat_map(|a| a.values.iter().copied())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The cloud holds exactly the first `n` acknowledged appends, each once: its rows are
/// theirs, its sync commits (one version each after the create) carry disjoint,
/// consecutive local ranges ending at the n-th append, and its watermark is the n-th's.
/// `cloud_rows` are the cloud table's values, read by the caller.
fn assert_cloud(
    cloud: &Table,
    cloud_rows: Vec<f64>,
    local: &Table,
    model: &[Acked],
    n: usize,
    what: &str,
) {
    let mut want: Vec<f64> = model[..n]
        .iter()
        .flat_map(|a| a.values.iter().copied())
        .collect();
    want.sort_by(f64::total_cmp);
    assert_eq!(cloud_rows, want, "{what}: cloud rows");
    let cloud_ids = commit_ids(cloud);
    assert_eq!(
        head(cloud),
        1 + cloud_ids.len() as u64,
        "{what}: one cloud version per projection"
    );
    let unique: std::collections::HashSet<_> = cloud_ids.iter().collect();
    assert_eq!(unique.len(), cloud_ids.len(), "{what}: a projection twice");
    let mut ranges: Vec<(i64, i64)> = cloud
        .metadata()
        .snapshots()
        .map(|s| {
            let r = &s.summary().additional_properties[floe_sync::SOURCE_RANGE_KEY];
            let (a, b) = r.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    ranges.sort();
    let mut next = 1;
    for (a, b) in &ranges {
        assert!(
            *a == next && *b >= *a,
            "{what}: ranges {ranges:?} overlap or leave a gap"
        );
        next = b + 1;
    }
    assert_eq!(
        next - 1,
        model[n - 1].sequence_number,
        "{what}: the ranges end at append {n}"
    );
    assert_eq!(
        cloud_watermark(cloud, local),
        model[n - 1].sequence_number,
        "{what}: cloud watermark"
    );
}

/// Random faults on a store: (operation, path fragment, nth, fault).
type Rules = [(Op, &'static str, usize, Fault)];

/// One case: set up, run `steps` with the faults, check after each, then the final sync.
async fn run_case(
    steps: &[Step],
    local_rules: &Rules,
    cloud_rules: &Rules,
    lose_local: &[bool],
    lose_cloud: &[bool],
) {
    let plain = memory_warehouse();
    let plain_cloud = memory_warehouse();
    let ident = TableIdent::parse("fleet.mixed").unwrap();
    let mut t = Table::create(&plain, &ident, iot_definition())
        .await
        .unwrap();
    // One append, projected before the faults start: the table carries a watermark,
    // so expiry keeps what is not yet in the cloud.
    let opts = CommitOptions::default();
    let files = write_rows(&t, 0, 2, 0.0).await.unwrap();
    let first = t.append(files, opts).await.unwrap();
    sync::sync_table(&mut t, &plain_cloud, &quick_sync())
        .await
        .unwrap();
    let mut model = vec![Acked {
        day: 0,
        values: ids(0.0, 2),
        sequence_number: t
            .metadata()
            .snapshot_by_id(first.snapshot_id)
            .unwrap()
            .sequence_number(),
        live: true,
    }];
    let local_faults = faulty(plain.store().clone(), local_rules);
    let cloud_faults = faulty(plain_cloud.store().clone(), cloud_rules);
    for (i, step) in steps.iter().enumerate() {
        let what = format!("step {i} {step:?} of {steps:?}, local faults {local_rules:?} lost {lose_local:?}, cloud faults {cloud_rules:?} lost {lose_cloud:?}");
        let before = head(&Table::load(&plain, &ident).await.unwrap());
        let cloud_before = head(&Table::load(&plain_cloud, &ident).await.unwrap());
        // This step's stores: the random faults, and maybe a lost answer to the
        // step's first claim (of the local table; of the cloud, for a sync).
        let wh = layer(&plain, &local_faults, lose_local[i].then_some(before + 1));
        let cloud = layer(
            &plain_cloud,
            &cloud_faults,
            lose_cloud[i].then_some(cloud_before + 1),
        );
        let mut t = load(&wh, &ident).await;
        let settled = match step {
            Step::Append { day, rows } => {
                let base = 1000.0 * (i + 1) as f64;
                match write_rows(&t, *day, *rows, base).await {
                    Err(_) => Settled::Failed,
                    Ok(files) => {
                        let opts = CommitOptions {
                            policy: quick_policy(),
                            ..CommitOptions::default()
                        };
                        let settled = settle!(
                            t.append(files.clone(), opts.clone()).await,
                            {
                                t = load(&wh, &ident).await;
                                t.append(files.clone(), opts.clone()).await
                            },
                            what
                        );
                        let loaded = Table::load(&plain, &ident).await.unwrap();
                        let found = loaded.find_commit(&opts.commit_id);
                        if settled == Settled::Acked {
                            let snapshot_id = found
                                .unwrap_or_else(|| panic!("{what}: acknowledged append absent"));
                            model.push(Acked {
                                day: *day,
                                values: ids(base, *rows),
                                sequence_number: loaded
                                    .metadata()
                                    .snapshot_by_id(snapshot_id)
                                    .unwrap()
                                    .sequence_number(),
                                live: true,
                            });
                        } else {
                            assert!(found.is_none(), "{what}: failed append present");
                        }
                        settled
                    }
                }
            }
            Step::Compact => settle!(
                rewrite::compact(&mut t, 64 << 20).await,
                {
                    t = load(&wh, &ident).await;
                    rewrite::compact(&mut t, 64 << 20).await
                },
                what
            ),
            Step::Retain { before_day } => {
                let settled = settle!(
                    rewrite::retain(&mut t, older_than_day(*before_day), "ts").await,
                    {
                        t = load(&wh, &ident).await;
                        rewrite::retain(&mut t, older_than_day(*before_day), "ts").await
                    },
                    what
                );
                if settled == Settled::Acked {
                    for a in model.iter_mut().filter(|a| a.day < *before_day) {
                        a.live = false;
                    }
                }
                settled
            }
            Step::Expire { keep } => settle!(
                vacuum::expire(&mut t, Duration::ZERO, *keep).await,
                {
                    t = load(&wh, &ident).await;
                    vacuum::expire(&mut t, Duration::ZERO, *keep).await
                },
                what
            ),
            Step::Sync => {
                let settled = settle!(
                    sync::sync_table(&mut t, &cloud, &quick_sync()).await,
                    {
                        t = load(&wh, &ident).await;
                        sync::sync_table(&mut t, &cloud, &quick_sync()).await
                    },
                    what
                );
                let local = Table::load(&plain, &ident).await.unwrap();
                let cloud_table = Table::load(&plain_cloud, &ident).await.unwrap();
                // An acknowledged sync projected every acknowledged append; a failed
                // one may have projected a prefix of what it had to.
                let in_cloud = if settled == Settled::Acked {
                    assert_eq!(
                        local_watermark(&local),
                        model.last().unwrap().sequence_number,
                        "{what}: local watermark"
                    );
                    model.len()
                } else {
                    commit_ids(&cloud_table).len()
                };
                assert!(in_cloud <= model.len(), "{what}: cloud ahead of local");
                let cloud_rows = live_values(&cloud_table).await;
                assert_cloud(&cloud_table, cloud_rows, &local, &model, in_cloud, &what);
                settled
            }
        };
        let loaded = Table::load(&plain, &ident).await.unwrap();
        let after = head(&loaded);
        match (&settled, step) {
            (Settled::Failed, _) => {
                assert_eq!(after, before, "{what}: a failed step changed the table")
            }
            (Settled::Acked, Step::Append { .. }) => {
                assert_eq!(after, before + 1, "{what}: an append, once")
            }
            (Settled::Acked, _) => assert!(after <= before + 1, "{what}: applied more than once"),
        }
        assert_gap_free(&plain, loaded.location(), after, &what).await;
        assert_eq!(
            live_values(&loaded).await,
            live_rows(&model),
            "{what}: local rows"
        );
    }
    // Faults spent or not, a final sync through the plain stores brings the cloud
    // level with every acknowledged append, once.
    let mut local = Table::load(&plain, &ident).await.unwrap();
    sync::sync_table(&mut local, &plain_cloud, &quick_sync())
        .await
        .unwrap();
    let local = Table::load(&plain, &ident).await.unwrap();
    let cloud_table = Table::load(&plain_cloud, &ident).await.unwrap();
    let cloud_rows = values(&cloud_table).await;
    assert_cloud(
        &cloud_table,
        cloud_rows,
        &local,
        &model,
        model.len(),
        "final sync",
    );
    assert_eq!(
        values(&local).await,
        live_rows(&model),
        "local rows, read by iceberg"
    );
    assert_eq!(
        local_watermark(&local),
        model.last().unwrap().sequence_number
    );
    assert_gap_free(
        &plain_cloud,
        cloud_table.location(),
        head(&cloud_table),
        "cloud",
    )
    .await;
    for (wh, what) in [(&plain, "local"), (&plain_cloud, "cloud")] {
        let r = floe_table_format::check::check_table(wh, &ident)
            .await
            .unwrap();
        assert!(
            r.problems.is_empty(),
            "{what}: {:?} after {steps:?}",
            r.problems
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn operations_under_faults_keep_table_and_cloud_exact(
        steps in proptest::collection::vec(step(), 3..9),
        local_rules in proptest::collection::vec(rule(), 0..6),
        cloud_rules in proptest::collection::vec(rule(), 0..5),
        lose_local in proptest::collection::vec(proptest::bool::weighted(0.2), 9),
        lose_cloud in proptest::collection::vec(proptest::bool::weighted(0.3), 9),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run_case(&steps, &local_rules, &cloud_rules, &lose_local, &lose_cloud));
    }
}
