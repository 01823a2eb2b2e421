//! Issue 15, class 2: a vacuum never deletes what a commit in flight may still reference,
//! whatever the clocks say. Each test stops a writer at its version claim (a
//! `FaultyStore` pause: its objects are written, its commit not yet claimed), runs a vacuum
//! with no grace period at all (as if its clock ran hours ahead of the writer's), then
//! lets the writer go on. Whatever the writer reports, the table must read whole, `floe
//! check` must find nothing missing, and a refused commit must have committed nothing and
//! commit once when rerun.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use floe_catalog::Catalog;
use floe_table_format::vacuum::vacuum;
use floe_table_format::{CommitOptions, Error, Table, TableIdent, TableView, Warehouse};

use crate::faults::{Fault, FaultyStore, Op, Rule};
use crate::support::*;

/// Rows of the table, or the error a scan of it meets (a file the table references gone).
async fn try_rows(t: &TableView) -> Result<usize, String> {
    let stream = t
        .iceberg()
        .map_err(|e| e.to_string())?
        .scan()
        .build()
        .map_err(|e| e.to_string())?
        .to_arrow()
        .await
        .map_err(|e| e.to_string())?;
    let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// `wh` seen through a store that stops the first version claim until released.
fn paused_at_claim(wh: &Warehouse) -> (Arc<FaultyStore>, Warehouse) {
    let rule = Rule::new(Op::Create, ".metadata.json", 1, Fault::Pause);
    let faulty = Arc::new(FaultyStore::new(wh.store().clone(), vec![rule]));
    let paused = Warehouse::with_store(wh.url(), faulty.clone()).unwrap();
    (faulty, paused)
}

/// Vacuum `ident` with no grace: everything unreferenced is old enough.
async fn vacuum_now(wh: &Warehouse, ident: &TableIdent) -> usize {
    let mut t = Table::load(wh, ident).await.unwrap();
    vacuum(&mut t, Duration::ZERO, false)
        .await
        .unwrap()
        .orphans
        .len()
}

async fn assert_whole(wh: &Warehouse, ident: &TableIdent, rows: usize, what: &str) {
    let t = Table::load(wh, ident).await.unwrap();
    assert_eq!(try_rows(&t).await, Ok(rows), "{what}");
    let report = floe_table_format::check::check_table(wh, ident)
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{what}: {:?}", report.problems);
}

fn assert_vacuumed(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::Vacuumed { .. }) && e.is_retryable(),
        "{what}: {e}"
    );
}

/// An append whose data file and manifest were written before the vacuum listed the table.
#[tokio::test]
async fn an_append_in_flight_is_never_left_referencing_vacuumed_files() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.inflight_append").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        append_rows(&mut t, 5).await;
        let (faulty, paused) = paused_at_claim(&wh);
        let mut writer = Table::load(&paused, &ident).await.unwrap();
        let options = CommitOptions {
            commit_id: "inflight-append-1".into(),
            ..CommitOptions::default()
        };
        let again = options.clone();
        let task = tokio::spawn(async move {
            append_batch(&mut writer, |s| rows(s, "w", DAY0_US, 3, 1.0), options).await
        });
        faulty.gate.reached().await;
        let deleted = vacuum_now(&wh, &ident).await;
        assert!(
            deleted >= 3,
            "{backend}: the writer's staged objects were unreferenced"
        );
        faulty.gate.release();
        let e = task.await.unwrap().unwrap_err();
        assert_vacuumed(&e, backend);
        assert_whole(
            &wh,
            &ident,
            5,
            &format!("{backend}: refused, nothing committed"),
        )
        .await;
        let mut writer = Table::load(&wh, &ident).await.unwrap();
        append_batch(&mut writer, |s| rows(s, "w", DAY0_US, 3, 1.0), again)
            .await
            .unwrap();
        assert_whole(
            &wh,
            &ident,
            8,
            &format!("{backend}: the rerun commits once"),
        )
        .await;
    }
}

/// A compaction whose bins were written long before its claim.
#[tokio::test]
async fn a_compaction_in_flight_is_never_left_referencing_vacuumed_files() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.inflight_compact").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        for _ in 0..4 {
            append_rows(&mut t, 5).await;
        }
        let (faulty, paused) = paused_at_claim(&wh);
        let mut compactor = Table::load(&paused, &ident).await.unwrap();
        let task = tokio::spawn(async move {
            floe_table_format::rewrite::compact(&mut compactor, 64 << 20).await
        });
        faulty.gate.reached().await;
        assert!(vacuum_now(&wh, &ident).await >= 2, "{backend}");
        faulty.gate.release();
        let e = task.await.unwrap().unwrap_err();
        assert_vacuumed(&e, backend);
        assert_whole(
            &wh,
            &ident,
            20,
            &format!("{backend}: refused, nothing committed"),
        )
        .await;
        let mut t = Table::load(&wh, &ident).await.unwrap();
        let again = floe_table_format::rewrite::compact(&mut t, 64 << 20)
            .await
            .unwrap();
        assert!(again.rewrite.is_some(), "{backend}: the rerun compacts");
        assert_whole(&wh, &ident, 20, &format!("{backend}: compacted")).await;
    }
}

/// A sync projection whose copies were made before a vacuum of the cloud listed it: fresh
/// copies, or copies a failed run left that this run skipped.
#[tokio::test]
async fn a_sync_in_flight_is_never_left_referencing_vacuumed_copies() {
    let mut clouds = vec![("memory", memory_warehouse())];
    if let Some(s3) = s3_warehouse() {
        clouds.push(("s3", s3));
    }
    for (backend, cloud) in clouds {
        for prior_copy in [false, true] {
            let what = format!("{backend}, prior copy {prior_copy}");
            let local_wh = memory_warehouse();
            let ident = TableIdent::parse(&format!("fleet.inflight_{prior_copy}")).unwrap();
            let mut local = Table::create(&local_wh, &ident, iot_definition())
                .await
                .unwrap();
            append_rows(&mut local, 5).await;
            let plain = Catalog::new(cloud.clone());
            let quick = floe_sync::SyncOptions::default();
            floe_sync::sync_table(&mut local, &plain, &quick)
                .await
                .unwrap();
            append_rows(&mut local, 3).await;
            if prior_copy {
                // A run that copied the files and never claimed.
                let refuse =
                    Rule::new(Op::Create, ".metadata.json", 1, Fault::FailBefore).times(1000);
                let faulty = Arc::new(FaultyStore::new(cloud.store().clone(), vec![refuse]));
                let failing = Catalog::new(Warehouse::with_store(cloud.url(), faulty).unwrap());
                let options = floe_sync::SyncOptions {
                    policy: floe_table_format::RetryPolicy {
                        max_attempts: 2,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let mut l = Table::load(&local_wh, &ident).await.unwrap();
                assert!(floe_sync::sync_table(&mut l, &failing, &options)
                    .await
                    .is_err());
            }
            let (faulty, paused) = paused_at_claim(&cloud);
            let paused = Catalog::new(paused);
            let mut l = Table::load(&local_wh, &ident).await.unwrap();
            let task = tokio::spawn(async move {
                floe_sync::sync_table(&mut l, &paused, &floe_sync::SyncOptions::default()).await
            });
            faulty.gate.reached().await;
            assert!(vacuum_now(&cloud, &ident).await >= 1, "{what}");
            faulty.gate.release();
            let report = task.await.unwrap().unwrap();
            assert_eq!(report.snapshots_projected, 1, "{what}");
            assert_whole(&cloud, &ident, 8, &what).await;
        }
    }
}
