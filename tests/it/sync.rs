//! `floe sync`: a local (gateway) warehouse projected into a LocalStack S3 cloud warehouse.
//! The cloud tests need FLOE_TEST_S3_URL (required in CI, like every S3 test).

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use floe_catalog::Catalog;
use floe_sync::LOCAL_WATERMARK;
use floe_table_format::iceberg::spec::{DataFile, DataFileBuilder};
use floe_table_format::rewrite::{compact, live_files};
use floe_table_format::{CommitOptions, DataWriter, Namespace, Table, TableIdent, Warehouse};
use object_store::ObjectStoreExt;

use crate::support::*;

/// A fresh local warehouse and (when S3 is configured) a fresh cloud prefix.
fn pair() -> Option<(Warehouse, Warehouse)> {
    let cloud = s3_warehouse()?;
    Some((local_warehouse().0, cloud))
}

fn sync_cmd(local: &Warehouse, cloud: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(floe_bin());
    c.args(["--warehouse", local.url(), "sync", "--to", cloud])
        .args(extra);
    c
}

/// Run `floe sync --json`; it must succeed. Returns its JSON summary.
fn sync_ok(local: &Warehouse, cloud: &Warehouse, extra: &[&str]) -> serde_json::Value {
    let out = sync_cmd(local, cloud.url(), &[&["--json"], extra].concat())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "floe sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `n` local appends of `rows_each` rows each (one file per day partition).
async fn local_appends(t: &mut Table, n: usize, rows_each: usize, tag: &str) {
    for i in 0..n {
        append_batch(
            t,
            |s| {
                rows(
                    s,
                    tag,
                    DAY0_US + (i as i64 % 3) * DAY_US,
                    rows_each,
                    i as f64,
                )
            },
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
}

/// The cloud commit id of one squashed sync of every local append (watermark 0 to the
/// newest local append).
fn squashed_id(local: &Table) -> Vec<String> {
    let last = local
        .metadata()
        .snapshots()
        .filter(|s| s.summary().operation == floe_table_format::iceberg::spec::Operation::Append)
        .map(|s| s.sequence_number())
        .max()
        .unwrap();
    vec![floe_sync::range_commit_id(
        &local.metadata().uuid(),
        0,
        last,
    )]
}

/// Distinct partitions among the local table's live files.
async fn partitions(t: &Table) -> usize {
    live_files(t)
        .await
        .unwrap()
        .iter()
        .map(|f| format!("{:?}", f.data_file.partition()))
        .collect::<HashSet<_>>()
        .len()
}

/// Every data file the cloud table's current snapshot lists exists with its recorded size.
async fn assert_cloud_files_present(cloud: &Table) {
    let wh = cloud.warehouse();
    for f in live_files(cloud).await.unwrap() {
        let path = wh.object_path(f.data_file.file_path()).unwrap();
        let meta =
            wh.store().head(&path).await.unwrap_or_else(|e| {
                panic!("{} missing in the cloud: {e}", f.data_file.file_path())
            });
        assert_eq!(
            meta.size,
            f.data_file.file_size_in_bytes(),
            "{}",
            f.data_file.file_path()
        );
        assert!(f.data_file.file_path().starts_with(cloud.location()));
    }
}

fn local_watermark(t: &Table) -> Option<i64> {
    t.metadata()
        .properties()
        .get(LOCAL_WATERMARK)
        .map(|v| v.parse().unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn offline_appends_then_sync_projects_each_append_exactly_once() {
    let (local, _) = local_warehouse();
    let ident = TableIdent::parse("site_1.dev_0001").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 5, 20, "d1").await;
    let before = t.version();

    // The cloud is unreachable: a clear error naming it, bounded time, local untouched.
    let started = Instant::now();
    let out = sync_cmd(&local, "s3://floe-offline/fleet", &[])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the cloud warehouse s3://floe-offline/fleet"),
        "{err}"
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let reloaded = Table::load(&local, &ident).await.unwrap();
    assert_eq!(reloaded.version(), before, "local table untouched");
    assert_eq!(local_watermark(&reloaded), None);

    // The link is back.
    let Some(cloud) = s3_warehouse() else { return };
    let got = sync_ok(&local, &cloud, &[]);
    assert_eq!(got["snapshots_projected"], 5, "{got}");
    assert_eq!(got["cloud_commits"], 1, "{got}");
    // The five appends' files combined: one file per partition.
    assert_eq!(got["files_copied"], partitions(&t).await as u64, "{got}");
    // Days with two appends are combined; the day with one keeps its file.
    assert_eq!(got["files_combined"], 4, "{got}");
    assert_eq!(got["already_in_sync"], false);
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(commit_ids(&c), squashed_id(&t));
    assert_eq!(scan(&c).await, scan(&t).await);
    assert_cloud_files_present(&c).await;
    let t = Table::load(&local, &ident).await.unwrap();
    assert_eq!(
        local_watermark(&t),
        Some(t.metadata().current_snapshot().unwrap().sequence_number())
    );

    // A second run changes nothing.
    let again = sync_ok(&local, &cloud, &[]);
    assert_eq!(again["already_in_sync"], true, "{again}");
    assert_eq!(again["snapshots_projected"], 0);
    let c2 = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(c2.version(), c.version(), "no new cloud version");
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_dry").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 2, 10, "d").await;
    let got = sync_ok(&local, &cloud, &["--dry-run"]);
    assert_eq!(got["snapshots_projected"], 2, "{got}");
    assert!(got["bytes_copied"].as_u64().unwrap() > 0);
    assert!(cloud.list_all(cloud.url()).await.unwrap().is_empty());
    let t2 = Table::load(&local, &ident).await.unwrap();
    assert_eq!(t2.version(), t.version());
}

/// One uninterrupted sync and one killed at random points then finished give the same
/// cloud table.
#[tokio::test]
async fn sync_killed_at_random_points_then_rerun_equals_one_uninterrupted_run() {
    let Some((local, cloud)) = pair() else { return };
    let reference = s3_warehouse().unwrap();
    let ident = TableIdent::parse("site_1.dev_kill").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 24, 30, "k").await;

    let t0 = Instant::now();
    sync_ok(&local, &reference, &[]);
    let span = t0.elapsed().as_millis() as u64;

    let mut seed = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    eprintln!("kill-loop seed {seed}, uninterrupted run {span} ms");
    let mut landed_before_last = 0;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Early kills, so each run gets only part of the way (at most half of an
        // uninterrupted run, process start included).
        let delay = 20 + (seed >> 33) % (span / 2).max(40);
        let mut child = sync_cmd(&local, cloud.url(), &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever landed is a prefix of the local appends, each once, files present.
        if let Ok(c) = Table::load(&cloud, &ident).await {
            let ids = commit_ids(&c);
            let want = squashed_id(&t);
            assert_eq!(
                ids[..],
                want[..ids.len()],
                "nothing, or the one squashed commit"
            );
            assert_cloud_files_present(&c).await;
            landed_before_last = ids.len();
        }
        eprintln!("killed after {delay} ms: {landed_before_last} appends in the cloud");
    }
    eprintln!("{landed_before_last} squashed commit(s) landed before the final run");
    sync_ok(&local, &cloud, &[]);
    // Nothing staged is left behind locally once the range is in the cloud.
    let t = Table::load(&local, &ident).await.unwrap();
    let staged: Vec<String> = local
        .list_all(t.location())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|p| {
            p.contains("/metadata/sync/") || p.rsplit('/').next().unwrap().starts_with("sync-")
        })
        .collect();
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
    let (c, r) = (
        Table::load(&cloud, &ident).await.unwrap(),
        Table::load(&reference, &ident).await.unwrap(),
    );
    assert_eq!(commit_ids(&c), commit_ids(&r));
    assert_eq!(commit_ids(&c), squashed_id(&t));
    assert_eq!(scan(&c).await, scan(&t).await);
    assert_eq!(scan(&c).await, scan(&r).await);
    assert_cloud_files_present(&c).await;
    let rel = |t: &Table, files: Vec<floe_table_format::rewrite::LiveFile>| {
        let mut v: Vec<(String, u64, u64)> = files
            .into_iter()
            .map(|f| {
                // Combined files are named by the run that staged them: compare folders.
                let rel = &f.data_file.file_path()[t.location().len()..];
                (
                    rel.rsplit_once('/').unwrap().0.to_string(),
                    f.data_file.record_count(),
                    f.data_file.file_size_in_bytes(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        rel(&c, live_files(&c).await.unwrap()),
        rel(&r, live_files(&r).await.unwrap())
    );
}

#[tokio::test]
async fn local_compaction_and_expiry_between_syncs_cause_no_duplicates_or_loss() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_compact").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 4, 10, "c").await;
    sync_ok(&local, &cloud, &[]);
    let mut t = Table::load(&local, &ident).await.unwrap();
    local_appends(&mut t, 3, 10, "c").await;
    compact(&mut t, 64 << 20)
        .await
        .unwrap()
        .rewrite
        .expect("small files to compact");
    local_appends(&mut t, 1, 10, "c").await;
    // Explicit expiry of everything old: the unprojected snapshots must survive it.
    let expired = floe_table_format::vacuum::expire(&mut t, Duration::ZERO, 1)
        .await
        .unwrap();
    let wm = local_watermark(&t).unwrap();
    for s in t.metadata().snapshots() {
        assert!(
            s.sequence_number() <= wm || !expired.expired.contains(&s.snapshot_id()),
            "an unprojected snapshot was expired"
        );
    }
    let got = sync_ok(&local, &cloud, &[]);
    assert_eq!(got["snapshots_projected"], 4, "{got}");
    assert_eq!(got["per_table"][0]["snapshots_skipped"], 1, "{got}");
    assert_eq!(got["cloud_commits"], 1, "{got}");
    let c = Table::load(&cloud, &ident).await.unwrap();
    let ids = commit_ids(&c);
    assert_eq!(ids.len(), 2, "one squashed commit per sync");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2, "no duplicates");
    assert_eq!(scan(&c).await, scan(&t).await);
    assert_cloud_files_present(&c).await;
}

#[tokio::test]
async fn history_expired_before_the_first_sync_is_caught_up_as_one_append() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_gap").unwrap();
    let mut def = iot_definition();
    def.properties
        .insert("floe.history.max-snapshots".into(), "2".into());
    let mut t = Table::create(&local, &ident, def).await.unwrap();
    local_appends(&mut t, 8, 5, "g").await;
    assert!(t.metadata().snapshots().len() < 8, "auto-expiry ran");
    let got = sync_ok(&local, &cloud, &[]);
    assert_eq!(got["per_table"][0]["catch_up"], true, "{got}");
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(scan(&c).await, scan(&t).await);
    assert_cloud_files_present(&c).await;
    // From now on the local table is synced: expiry keeps unprojected snapshots.
    let mut t = Table::load(&local, &ident).await.unwrap();
    local_appends(&mut t, 6, 5, "g").await;
    let wm = local_watermark(&t).unwrap();
    assert_eq!(
        t.metadata()
            .snapshots()
            .filter(|s| s.sequence_number() > wm)
            .count(),
        6
    );
    let got = sync_ok(&local, &cloud, &[]);
    assert_eq!(got["snapshots_projected"], 6, "{got}");
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(scan(&c).await, scan(&t).await);
}

#[tokio::test]
async fn a_hundred_device_tables_sync_in_one_run() {
    let Some((local, cloud)) = pair() else { return };
    let ns = Namespace::parse("fleet").unwrap();
    let mut expected = HashMap::new();
    for d in 0..100 {
        let ident = TableIdent::new(ns.clone(), format!("dev_{d:04}")).unwrap();
        let mut t = Table::create(&local, &ident, iot_definition())
            .await
            .unwrap();
        append_batch(
            &mut t,
            |s| rows(s, &ident.to_string(), DAY0_US, 3, d as f64),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        expected.insert(ident.to_string(), scan(&t).await);
    }
    let t0 = Instant::now();
    let got = sync_ok(&local, &cloud, &["fleet"]);
    eprintln!("100 tables synced in {:?}", t0.elapsed());
    assert_eq!(got["tables"], 100, "{got}");
    assert_eq!(got["snapshots_projected"], 100);
    assert_eq!(got["files_copied"], 100);
    let cloud_tables = Catalog::new(cloud.clone()).list_tables(&ns).await.unwrap();
    assert_eq!(cloud_tables.len(), 100);
    for ident in cloud_tables.iter().step_by(17) {
        let c = Table::load(&cloud, ident).await.unwrap();
        assert_eq!(scan(&c).await, expected[&ident.to_string()], "{ident}");
    }
    let again = sync_ok(&local, &cloud, &[]);
    assert_eq!(again["already_in_sync"], true);
}

#[tokio::test]
async fn pyiceberg_reads_the_cloud_table_with_the_local_row_count() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_py").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 3, 25, "p").await;
    // Over a metered link: 4 KiB/s.
    let t0 = Instant::now();
    let got = sync_ok(&local, &cloud, &["--max-bytes-per-sec", "4k"]);
    let bytes = got["bytes_copied"].as_u64().unwrap();
    assert!(
        t0.elapsed() >= Duration::from_secs_f64(bytes as f64 / 4096.0 * 0.9),
        "{bytes} bytes in {:?}",
        t0.elapsed()
    );
    let c = Table::load(&cloud, &ident).await.unwrap();
    let got = run_python(&["tests/interop/read_table.py", c.metadata_location()]);
    let (rows_local, sum_local) = scan(&t).await;
    assert_eq!(got["row_count"], rows_local as u64, "{got}");
    assert!((got["sum_value"].as_f64().unwrap() - sum_local).abs() < 1e-6);
    assert_eq!(
        got["snapshot_count"], 1,
        "three local appends, one cloud commit"
    );
}

#[tokio::test]
async fn another_cloud_writer_between_syncs_is_preserved() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_shared").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    local_appends(&mut t, 2, 10, "l").await;
    sync_ok(&local, &cloud, &[]);
    let mut c = Table::load(&cloud, &ident).await.unwrap();
    let other = CommitOptions {
        commit_id: "backfill-from-the-office".into(),
        ..CommitOptions::default()
    };
    append_batch(&mut c, |s| rows(s, "office", DAY0_US, 7, 100.0), other)
        .await
        .unwrap();
    local_appends(&mut t, 2, 10, "l").await;
    sync_ok(&local, &cloud, &[]);
    let c = Table::load(&cloud, &ident).await.unwrap();
    let ids = commit_ids(&c);
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[1], "backfill-from-the-office");
    let (rows_local, _) = scan(&t).await;
    assert_eq!(scan(&c).await.0, rows_local + 7);
    assert_cloud_files_present(&c).await;
}

#[tokio::test]
async fn pruning_drops_only_projected_old_data() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_prune").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    // Rows from 2026-01 are months old.
    local_appends(&mut t, 3, 10, "old").await;
    sync_ok(&local, &cloud, &[]);
    let mut t = Table::load(&local, &ident).await.unwrap();
    // Not projected yet: pruning must keep it.
    local_appends(&mut t, 1, 10, "new").await;
    let report = floe_sync::prune_local(
        &mut t,
        Duration::from_secs(30 * 86_400),
        "ts",
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(report.files_dropped, 3, "{report:?}");
    let t = Table::load(&local, &ident).await.unwrap();
    assert_eq!(
        scan(&t).await.0,
        10,
        "only the unprojected rows are left locally"
    );
    // The unprojected append still reaches the cloud, which keeps everything.
    let got = sync_ok(
        &local,
        &cloud,
        &["--prune-local-older-than", "30d", "--prune-grace", "0s"],
    );
    assert_eq!(got["snapshots_projected"], 1, "{got}");
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(scan(&c).await.0, 40);
    let t = Table::load(&local, &ident).await.unwrap();
    assert_eq!(
        scan(&t).await.0,
        0,
        "everything projected and old is pruned"
    );
}

/// Issue 15, class 4: two syncs of one table at once never project a local commit twice,
/// even when the cloud no longer recognises the commit ids (its snapshots expired and the
/// ledger of expired ids keeps only the newest 100). Run A stops at its first version claim
/// in the cloud: the create of the cloud table (A found none) or its first projection (A
/// planned from the watermark it read); run B syncs everything meanwhile and the cloud
/// expires all but one snapshot. A must read the watermark from the table as created or loaded, and advance it
/// only from the value it planned from, never overwrite it.
#[tokio::test]
async fn two_syncs_at_once_never_project_a_commit_twice() {
    use crate::faults::{Fault, FaultyStore, Op, Rule};
    use floe_sync::SyncOptions;
    use std::sync::Arc;
    for existing in [false, true] {
        let local_wh = memory_warehouse();
        let cloud = memory_warehouse();
        let plain = Catalog::new(cloud.clone());
        let ident = TableIdent::parse("fleet.dev_1").unwrap();
        let mut local = Table::create(&local_wh, &ident, iot_definition())
            .await
            .unwrap();
        let mut rows_total = 0;
        if existing {
            append_rows(&mut local, 1).await;
            rows_total += 1;
            floe_sync::sync_table(&mut local, &plain, &SyncOptions::default())
                .await
                .unwrap();
        }
        for _ in 0..105 {
            append_rows(&mut local, 1).await;
            rows_total += 1;
        }
        let first_claim = Rule::new(Op::Create, ".metadata.json", 1, Fault::Pause);
        let faulty = Arc::new(FaultyStore::new(cloud.store().clone(), vec![first_claim]));
        let cloud_a = Catalog::new(Warehouse::with_store(cloud.url(), faulty.clone()).unwrap());
        let mut local_a = Table::load(&local_wh, &ident).await.unwrap();
        let a = tokio::spawn(async move {
            floe_sync::sync_table(&mut local_a, &cloud_a, &SyncOptions::default()).await
        });
        faulty.gate.reached().await;
        let mut local_b = Table::load(&local_wh, &ident).await.unwrap();
        floe_sync::sync_table(&mut local_b, &plain, &SyncOptions::default())
            .await
            .unwrap();
        let mut c = plain.load_table(&ident).await.unwrap();
        floe_table_format::vacuum::expire(&mut c, Duration::ZERO, 1)
            .await
            .unwrap();
        faulty.gate.release();
        let ra = a.await.unwrap();
        let c = plain.load_table(&ident).await.unwrap();
        assert_eq!(
            scan(&c).await.0,
            rows_total,
            "existing={existing}: every local commit once in the cloud (run A: {ra:?})"
        );
        let local = Table::load(&local_wh, &ident).await.unwrap();
        let seq = local
            .metadata()
            .current_snapshot()
            .unwrap()
            .sequence_number();
        assert_eq!(local_watermark(&local), Some(seq), "existing={existing}");
    }
}

/// `file` as if another engine had written it at `path` (same bytes, same statistics).
fn moved(file: &DataFile, path: &str) -> DataFile {
    let mut b = DataFileBuilder::default();
    b.content(file.content_type())
        .file_path(path.to_string())
        .file_format(file.file_format())
        .partition(file.partition().clone())
        .partition_spec_id(0)
        .record_count(file.record_count())
        .file_size_in_bytes(file.file_size_in_bytes());
    b.build().unwrap()
}

/// A local table listing files from other folders (as one registered from another engine
/// can): two of the same base name, and one under its own `metadata/`. Each lands apart
/// under the cloud's `data/external/`, none under the cloud's `metadata/`.
#[tokio::test]
async fn external_files_of_the_same_name_land_apart_and_never_in_metadata() {
    let Some((local, cloud)) = pair() else { return };
    let ident = TableIdent::parse("site_1.dev_ext").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    let targets = [
        local.location("ext/x/part-0.parquet"),
        local.location("ext/y/part-0.parquet"),
        format!("{}/metadata/part-0.parquet", t.location()),
    ];
    let mut files = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut w = DataWriter::new(&t).unwrap();
        let b = rows(w.arrow_schema(), "e", DAY0_US, 10, 1000.0 * i as f64);
        w.write(b).await.unwrap();
        let written = w.close().await.unwrap().remove(0);
        let store = local.store();
        store
            .copy(
                &local.object_path(written.file_path()).unwrap(),
                &local.object_path(target).unwrap(),
            )
            .await
            .unwrap();
        files.push(moved(&written, target));
    }
    t.append(files, CommitOptions::default()).await.unwrap();

    // One cloud commit per local append, files copied as they are (a squashed sync would
    // combine these small files into one).
    let got = sync_ok(&local, &cloud, &["--per-commit"]);
    assert_eq!(got["files_copied"], 3, "{got}");
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(scan(&c).await, scan(&t).await);
    assert_cloud_files_present(&c).await;
    let paths: HashSet<String> = live_files(&c)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.data_file.file_path().to_string())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    for p in &paths {
        assert!(
            p.starts_with(&format!("{}/data/external/", c.location())),
            "{p}"
        );
    }
    let again = sync_ok(&local, &cloud, &[]);
    assert_eq!(again["already_in_sync"], true, "{again}");
}
