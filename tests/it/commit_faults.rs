//! Faults at each step of an append: success is reported only for a commit present exactly
//! once; failure only when nothing was committed.

use std::sync::Arc;
use std::time::Duration;

use floe_table_format::{CommitOptions, Error, RetryPolicy, Table, TableIdent, Warehouse};

use crate::faults::{Fault, FaultyStore, Op, Rule};
use crate::support::*;

async fn setup(rules: Vec<Rule>) -> (Warehouse, Arc<FaultyStore>, TableIdent) {
    let url = format!("memory://faults-{}", uuid::Uuid::new_v4());
    let plain = Warehouse::open(&url).unwrap();
    let ident = TableIdent::parse("fleet.f").unwrap();
    let mut t = Table::create(&plain, &ident, iot_definition())
        .await
        .unwrap();
    append_rows(&mut t, 5).await;
    let faulty = Arc::new(FaultyStore::new(plain.store().clone(), rules));
    let wh = Warehouse::with_store(&url, faulty.clone()).unwrap();
    (wh, faulty, ident)
}

fn quick() -> CommitOptions {
    CommitOptions {
        policy: RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_attempts: 5,
            ..RetryPolicy::default()
        },
        ..CommitOptions::default()
    }
}

/// The steps of an append, as (name, operation, path fragment) of the object it writes.
pub const STEPS: &[(&str, Op, &str)] = &[
    ("data file", Op::Put, ".parquet"),
    ("manifest", Op::Put, "-m0.avro"),
    ("manifest list", Op::Put, "/snap-"),
    ("version create", Op::Create, "v3.metadata.json"),
    ("hint write", Op::Put, "version-hint.text"),
];

/// Every fault kind.
pub fn fault_kinds() -> Vec<(&'static str, Fault)> {
    vec![
        ("fail before sending", Fault::FailBefore),
        ("fail after it took effect", Fault::FailAfter),
        ("'already exists' after it took effect", Fault::ExistsAfter),
        ("latency 50 ms", Fault::Delay(Duration::from_millis(50))),
        ("503 SlowDown", Fault::SlowDown),
    ]
}

/// The matrix: a fault before the version create fails the commit (nothing committed),
/// unless it is only latency; a fault at the version create is settled by the protocol
/// (retry or read-back) and the commit succeeds; the hint is best effort.
fn must_succeed(step: &str, fault: Fault) -> bool {
    matches!(fault, Fault::Delay(_)) || matches!(step, "version create" | "hint write")
}

fn matrix() -> Vec<(String, Rule, bool)> {
    let mut cells = Vec::new();
    for (step, op, path) in STEPS {
        for (fault_name, fault) in fault_kinds() {
            cells.push((
                format!("{step} × {fault_name}"),
                Rule::new(*op, path, 1, fault),
                must_succeed(step, fault),
            ));
        }
    }
    cells
}

#[tokio::test]
async fn every_fault_leaves_an_exact_table() {
    for (name, rule, must_succeed) in matrix() {
        let (wh, faulty, ident) = setup(vec![rule]).await;
        let mut t = Table::load(&wh, &ident).await.unwrap();
        let opts = quick();
        let id = opts.commit_id.clone();
        let result = append_batch(&mut t, |s| rows(s, "d", DAY0_US + DAY_US, 5, 100.0), opts).await;
        assert_eq!(
            faulty.fired.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{name}: the fault fired"
        );
        let loaded = Table::load(&wh, &ident).await.unwrap();
        let ids = commit_ids(&loaded);
        let present = ids.iter().filter(|c| **c == id).count();
        match result {
            Ok(r) => {
                assert!(must_succeed, "{name}: reported success");
                assert_eq!(
                    present, 1,
                    "{name}: acknowledged commit present exactly once"
                );
                assert_eq!(r.version.0, 3, "{name}");
                assert_eq!(scan(&loaded).await.0, 10, "{name}");
            }
            Err(e) => {
                assert!(!must_succeed, "{name}: failed with {e}");
                assert_eq!(present, 0, "{name}: a failed commit is absent");
                assert_eq!(loaded.version().0, 2, "{name}: no version claimed");
                assert_eq!(scan(&loaded).await.0, 5, "{name}");
            }
        }
    }
}

/// An append on a table whose `v3` create takes effect but loses its answer, and whose
/// next `failed_reads` GETs of `v3` fail; returns the result, the options and the warehouse.
async fn append_with_lost_create(
    failed_reads: usize,
) -> (
    floe_table_format::Result<floe_table_format::CommitReport>,
    CommitOptions,
    Warehouse,
    TableIdent,
) {
    let rules = vec![
        Rule::new(Op::Create, "v3.metadata.json", 1, Fault::FailAfter),
        Rule::new(Op::Get, "v3.metadata.json", 1, Fault::FailBefore).times(failed_reads),
    ];
    let (wh, _faulty, ident) = setup(rules).await;
    let mut t = Table::load(&wh, &ident).await.unwrap();
    let opts = quick();
    let result = append_batch(&mut t, |s| rows(s, "d", DAY0_US, 5, 0.0), opts.clone()).await;
    (result, opts, wh, ident)
}

async fn present_once(wh: &Warehouse, ident: &TableIdent, commit_id: &str) {
    let loaded = Table::load(wh, ident).await.unwrap();
    let n = commit_ids(&loaded)
        .iter()
        .filter(|c| *c == commit_id)
        .count();
    assert_eq!(n, 1, "{commit_id} present once");
    assert_eq!(scan(&loaded).await.0, 10);
}

#[tokio::test]
async fn unreadable_outcome_is_reported_as_unknown_and_rerun_settles_it() {
    // All 5 read-backs fail, and so does the driver's last look at the head before giving
    // up: Floe must not claim failure (the commit is in) nor success (it cannot tell).
    let (result, opts, wh, ident) = append_with_lost_create(6).await;
    let e = result.unwrap_err();
    assert!(matches!(e, Error::CommitUnknown { .. }), "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains(&opts.commit_id), "{e}");
    // Rerunning with the same commit id finds it and commits nothing new.
    let mut again = Table::load(&wh, &ident).await.unwrap();
    let r = append_batch(&mut again, |s| rows(s, "d", DAY0_US, 5, 0.0), opts.clone())
        .await
        .unwrap();
    assert!(r.already_committed);
    present_once(&wh, &ident, &opts.commit_id).await;
}

#[tokio::test]
async fn the_last_look_before_giving_up_finds_a_landed_commit() {
    // The head is readable again when the driver looks for its commit id before giving up:
    // the commit is found, acknowledged, and present once.
    let (result, opts, wh, ident) = append_with_lost_create(5).await;
    assert_eq!(result.unwrap().version.0, 3);
    present_once(&wh, &ident, &opts.commit_id).await;
}

#[tokio::test]
async fn retries_run_out_with_a_typed_conflict_naming_the_table() {
    // Every create of v3 "already exists" while nothing is there to rebase onto would loop;
    // instead a rival really wins each time: simulate by pre-creating versions via a rival.
    let (wh, _f, ident) = setup(vec![]).await;
    let mut mine = Table::load(&wh, &ident).await.unwrap();
    let mut rival = Table::load(&wh, &ident).await.unwrap();
    append_batch(
        &mut rival,
        |s| rows(s, "r", DAY0_US, 1, 0.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
    let opts = CommitOptions {
        policy: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..CommitOptions::default()
    };
    let e = append_batch(&mut mine, |s| rows(s, "m", DAY0_US, 1, 0.0), opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::CommitConflict { attempts: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("fleet.f"), "{e}");
}

/// The committing operations beyond append, each run once through the one commit driver,
/// with what must hold afterwards (checked on a fresh load).
const OPERATIONS: &[&str] = &["compact", "retain", "expire", "set watermark"];

/// Sync's errors wrap the table format's, so both fit.
async fn run_operation(op: &str, t: &mut Table) -> floe_sync::Result<()> {
    use floe_table_format::{rewrite, vacuum};
    match op {
        "compact" => assert!(rewrite::compact(t, 64 << 20).await?.rewrite.is_some()),
        "retain" => assert!(rewrite::retain(t, Duration::ZERO, "ts").await?.is_some()),
        "expire" => {
            vacuum::expire(t, Duration::ZERO, 1).await?;
        }
        "set watermark" => floe_sync::set_local_watermark(t, 7).await?,
        _ => unreachable!("{op}"),
    }
    Ok(())
}

async fn check_effect(op: &str, t: &Table, name: &str) {
    let live = floe_table_format::rewrite::live_files(t).await.unwrap();
    match op {
        "compact" => {
            assert_eq!(live.len(), 1, "{name}: one compacted file");
            assert_eq!(scan(t).await.0, 15, "{name}: no row lost or doubled");
        }
        "retain" => {
            assert!(live.is_empty(), "{name}: every old file dropped");
            assert_eq!(scan(t).await.0, 0, "{name}");
        }
        "expire" => {
            assert_eq!(t.metadata().snapshots().count(), 1, "{name}: expired");
            assert_eq!(scan(t).await.0, 15, "{name}");
        }
        "set watermark" => {
            assert_eq!(
                t.metadata()
                    .properties()
                    .get(floe_sync::LOCAL_WATERMARK)
                    .map(String::as_str),
                Some("7"),
                "{name}"
            );
            assert_eq!(scan(t).await.0, 15, "{name}");
        }
        _ => unreachable!("{op}"),
    }
}

#[tokio::test]
async fn every_operation_settles_every_fault_at_the_version_claim() {
    for op in OPERATIONS {
        for (fault_name, fault) in fault_kinds() {
            let name = format!("{op} × v5 create × {fault_name}");
            let (wh, faulty, ident) =
                setup(vec![Rule::new(Op::Create, "v5.metadata.json", 1, fault)]).await;
            let mut t = Table::load(&wh, &ident).await.unwrap();
            for k in 1..=2 {
                append_batch(
                    &mut t,
                    |s| rows(s, "d", DAY0_US + k * 60_000_000, 5, 0.0),
                    CommitOptions::default(),
                )
                .await
                .unwrap();
            }
            assert_eq!(t.version().0, 4, "{name}: set up");
            run_operation(op, &mut t)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                faulty.fired.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "{name}: the fault fired"
            );
            let loaded = Table::load(&wh, &ident).await.unwrap();
            assert_eq!(loaded.version().0, 5, "{name}: committed exactly once");
            check_effect(op, &loaded, &name).await;
        }
    }
}
