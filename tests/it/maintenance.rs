//! Commit cost stays flat: manifests merge, snapshots expire, old versions are tombstoned,
//! and none of it loses a row, breaks a reader, or lets a stale writer fork the history.

use std::collections::HashMap;

use floe_table_format::check::check_table;
use floe_table_format::version::{metadata_location, Version};
use floe_table_format::{CommitOptions, Table, TableDefinition, TableIdent};
use object_store::ObjectStoreExt;

use crate::support::*;

fn tight() -> TableDefinition {
    let mut d = iot_definition();
    d.properties = HashMap::from([
        ("commit.manifest.min-count-to-merge".into(), "5".into()),
        ("floe.history.max-snapshots".into(), "10".into()),
        ("write.metadata.previous-versions-max".into(), "5".into()),
        (
            "write.metadata.delete-after-commit.enabled".into(),
            "true".into(),
        ),
    ]);
    d
}

#[tokio::test]
async fn maintenance_keeps_metadata_bounded_and_data_exact() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.m").unwrap();
        let mut t = Table::create(&wh, &ident, tight()).await.unwrap();
        // A writer that loads now and commits only after 30 others: its target version
        // will have been expired by then.
        let mut stale = Table::load(&wh, &ident).await.unwrap();
        let commits = 30;
        for i in 0..commits {
            append_batch(
                &mut t,
                |s| rows(s, "d", DAY0_US + i * 3_600_000_000, 4, 1.0),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
        let head = Table::load(&wh, &ident).await.unwrap();
        let m = head.metadata();
        assert!(
            m.snapshots().len() <= 11,
            "{backend}: {} snapshots (cap 10 + 10% slack)",
            m.snapshots().len()
        );
        assert!(
            m.metadata_log().len() <= 5,
            "{backend}: {} log entries",
            m.metadata_log().len()
        );
        let it = head.iceberg().unwrap();
        let list = it
            .manifest_list_reader(m.current_snapshot().unwrap())
            .load()
            .await
            .unwrap();
        assert!(
            list.entries().len() <= 6,
            "{backend}: {} manifests",
            list.entries().len()
        );
        assert_eq!(
            scan(&head).await.0,
            4 * commits as usize,
            "{backend}: rows exact after merges"
        );
        assert_eq!(
            m.current_snapshot()
                .unwrap()
                .summary()
                .additional_properties["total-records"],
            (4 * commits).to_string()
        );
        // Old versions are tombstones (names kept), expired manifest lists are gone, and
        // the table checks clean.
        let v2 = metadata_location(head.location(), Version(2));
        let body = wh
            .store()
            .get(&wh.object_path(&v2).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            floe_table_format::version::is_tombstone(&body),
            "{backend}: v2 tombstoned"
        );
        assert!(Table::open_metadata(&wh, &v2)
            .await
            .unwrap_err()
            .to_string()
            .contains("tombstone"));
        let r = check_table(&wh, &ident).await.unwrap();
        assert!(r.problems.is_empty(), "{backend}: {:?}", r.problems);
        assert_eq!(r.rows, 4 * commits as u64);

        // The stale writer's claim of v2 loses (the name is taken), it rebases via the hint,
        // and its commit lands exactly once on top of the head.
        let opts = CommitOptions::default();
        let id = opts.commit_id.clone();
        let report = append_batch(&mut stale, |s| rows(s, "stale", DAY0_US, 3, 0.0), opts)
            .await
            .unwrap();
        assert_eq!(
            report.version.0,
            2 + commits as u64,
            "{backend}: on top of the head"
        );
        let head = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(commit_ids(&head).iter().filter(|c| **c == id).count(), 1);
        assert_eq!(scan(&head).await.0, 4 * commits as usize + 3, "{backend}");
    }
}

#[tokio::test]
async fn pyiceberg_reads_merged_and_expired_tables() {
    let (wh, _) = local_warehouse();
    let ident = TableIdent::parse("fleet.merged").unwrap();
    let mut t = Table::create(&wh, &ident, tight()).await.unwrap();
    for i in 0..17 {
        append_batch(
            &mut t,
            |s| rows(s, "d", DAY0_US + i * DAY_US / 4, 5, i as f64),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    let (n, sum) = scan(&t).await;
    let got = run_python(&[
        "tests/interop/read_table.py",
        t.metadata_location(),
        "--ts-from",
        "2026-01-04T00:00:00Z",
    ]);
    assert_eq!(got["row_count"], n as u64);
    assert!((got["sum_value"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert!(got["files_filtered"].as_u64().unwrap() < got["files_total"].as_u64().unwrap());
    // Commits every 6 h: i = 12..=16 start on or after Jan 4, 5 rows each.
    assert_eq!(got["rows_filtered"], 25);
}

#[tokio::test]
async fn expire_and_vacuum_remove_only_what_nothing_references() {
    use floe_table_format::vacuum::{expire, vacuum};
    use floe_table_format::DataWriter;
    use std::time::Duration;

    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.v").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        for i in 0..6 {
            append_batch(
                &mut t,
                |s| rows(s, "d", DAY0_US + i * DAY_US, 3, 1.0),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
        // A crash's leftover: data written, never committed.
        let mut w = DataWriter::new(&t).unwrap();
        w.write(rows(w.arrow_schema(), "lost", DAY0_US, 2, 0.0))
            .await
            .unwrap();
        let orphan = w.close().await.unwrap()[0].file_path().to_string();

        // A commit in flight: its data file is written, its commit not yet made. A vacuum
        // with a grace period runs meanwhile; the commit then lands intact.
        let mut in_flight = DataWriter::new(&t).unwrap();
        in_flight
            .write(rows(in_flight.arrow_schema(), "flight", DAY0_US, 5, 0.0))
            .await
            .unwrap();
        let flight_files = in_flight.close().await.unwrap();
        // With a long grace period nothing is deleted (it could be a commit in flight).
        let r = vacuum(&mut t, Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert!(r.orphans.is_empty() && r.young >= 2, "{backend}: {r:?}");
        t.append(flight_files, CommitOptions::default())
            .await
            .unwrap();
        let c = check_table(&wh, &ident).await.unwrap();
        assert!(
            c.problems.is_empty(),
            "{backend}: in-flight commit intact: {:?}",
            c.problems
        );
        // A dry run lists without deleting.
        let r = vacuum(&mut t, Duration::ZERO, true).await.unwrap();
        assert!(r.orphans.contains(&orphan), "{backend}: {r:?}");
        assert!(wh
            .store()
            .head(&wh.object_path(&orphan).unwrap())
            .await
            .is_ok());

        // Expire all but the newest 2 snapshots, then vacuum: the expired snapshots'
        // lists go; data files stay (later snapshots still list them); rows are exact.
        let e = expire(&mut t, Duration::ZERO, 2).await.unwrap();
        assert_eq!((e.expired.len(), e.remaining), (5, 2), "{backend}");
        let r = vacuum(&mut t, Duration::ZERO, false).await.unwrap();
        assert!(r.orphans.contains(&orphan), "{backend}: {r:?}");
        assert!(
            wh.store()
                .head(&wh.object_path(&orphan).unwrap())
                .await
                .is_err(),
            "{backend}"
        );
        let head = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(head.metadata().snapshots().len(), 2);
        assert_eq!(scan(&head).await.0, 18 + 5, "{backend}");
        let c = check_table(&wh, &ident).await.unwrap();
        assert!(c.problems.is_empty(), "{backend}: {:?}", c.problems);
        // A second vacuum finds nothing.
        assert!(vacuum(&mut t, Duration::ZERO, false)
            .await
            .unwrap()
            .orphans
            .is_empty());
    }
}

#[tokio::test]
async fn compaction_keeps_every_row_and_survives_concurrent_appends() {
    use floe_table_format::iceberg::spec::Operation;
    use floe_table_format::rewrite::{compact, live_files, retain};
    use floe_table_format::Error;
    use std::time::Duration;

    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.c").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        // 6 small commits over 2 days, out of time order within each day.
        for i in [3i64, 1, 2, 7, 5, 6] {
            let start = DAY0_US + (i / 4) * DAY_US + (i % 4) * 3_600_000_000;
            append_batch(
                &mut t,
                |s| rows(s, "d", start, 10, i as f64),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
        let (n0, sum0) = scan(&t).await;
        assert_eq!(live_files(&t).await.unwrap().len(), 6);
        let r = compact(&mut t, 64 << 20).await.unwrap().rewrite.unwrap();
        assert_eq!(
            (r.removed, r.added, r.attempts),
            (6, 2, 1),
            "{backend}: one file per day"
        );
        let head = Table::load(&wh, &ident).await.unwrap();
        let current = head.metadata().current_snapshot().unwrap();
        assert_eq!(current.summary().operation, Operation::Replace);
        let (n1, sum1) = scan(&head).await;
        assert_eq!(n1, n0, "{backend}: every row kept");
        assert!((sum1 - sum0).abs() < 1e-9, "{backend}");
        assert_eq!(
            current.summary().additional_properties["total-records"],
            n1.to_string()
        );
        assert!(
            compact(&mut t, 64 << 20).await.unwrap().rewrite.is_none(),
            "{backend}: nothing left to do"
        );

        // A rewrite planned on a head that then moves: it loses the race, revalidates on
        // the new head (its files are still live), commits, and the append survives.
        let mut rewriter = Table::load(&wh, &ident).await.unwrap();
        let first = live_files(&rewriter).await.unwrap()[0].data_file.clone();
        append_batch(
            &mut t,
            |s| rows(s, "late", DAY0_US, 4, 0.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        let r = rewriter
            .rewrite_files(&[first.file_path().to_string()], vec![], Operation::Delete)
            .await
            .unwrap();
        assert_eq!(r.attempts, 2, "{backend}: rebased once");
        let head = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(
            scan(&head).await.0,
            n0 + 4 - first.record_count() as usize,
            "{backend}"
        );
        // 7 appends, plus the compaction and the delete, which carry commit ids too.
        assert_eq!(
            commit_ids(&head).len(),
            9,
            "{backend}: the late append is there"
        );
        let c = check_table(&wh, &ident).await.unwrap();
        assert!(c.problems.is_empty(), "{backend}: {:?}", c.problems);

        // A compactor whose files were removed meanwhile (by retention) fails cleanly.
        let mut stale = Table::load(&wh, &ident).await.unwrap();
        append_batch(
            &mut stale,
            |s| rows(s, "x", DAY0_US, 1, 0.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        let mut other = Table::load(&wh, &ident).await.unwrap();
        let before = other.version();
        let stale_files: Vec<String> = live_files(&stale)
            .await
            .unwrap()
            .iter()
            .map(|f| f.data_file.file_path().to_string())
            .collect();
        let dropped = retain(&mut other, Duration::ZERO, "ts")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            dropped.removed,
            stale_files.len(),
            "{backend}: everything is old"
        );
        let e = stale
            .rewrite_files(&stale_files, vec![], Operation::Delete)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::FilesChanged { .. }), "{backend}: {e}");
        let head = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(
            head.version().0,
            before.0 + 1,
            "{backend}: nothing more committed"
        );
        assert_eq!(
            scan(&head).await.0,
            0,
            "{backend}: retention dropped all rows"
        );
        assert_eq!(
            head.metadata()
                .current_snapshot()
                .unwrap()
                .summary()
                .operation,
            Operation::Delete
        );
    }
}

#[tokio::test]
async fn pyiceberg_reads_a_compacted_table() {
    let (wh, _) = local_warehouse();
    let ident = TableIdent::parse("fleet.pc").unwrap();
    let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
    for i in 0..5 {
        append_batch(
            &mut t,
            |s| rows(s, "d", DAY0_US + i * 3_600_000_000, 7, i as f64),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    floe_table_format::rewrite::compact(&mut t, 64 << 20)
        .await
        .unwrap()
        .rewrite
        .unwrap();
    let (n, sum) = scan(&t).await;
    let got = run_python(&["tests/interop/read_table.py", t.metadata_location()]);
    assert_eq!(got["row_count"], n as u64);
    assert_eq!(n, 35);
    assert!((got["sum_value"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert_eq!(got["files_total"], 1);

    // After expire + vacuum (same answers) and after retention (fewer rows, as asked).
    let read = |loc: String| run_python(&["tests/interop/read_table.py", &loc]);
    floe_table_format::vacuum::expire(&mut t, std::time::Duration::ZERO, 1)
        .await
        .unwrap();
    let v = floe_table_format::vacuum::vacuum(&mut t, std::time::Duration::ZERO, false)
        .await
        .unwrap();
    assert!(v.orphans.len() >= 5, "the replaced small files: {v:?}");
    let got = read(t.metadata_location().to_string());
    assert_eq!(got["row_count"], n as u64);
    assert_eq!(got["snapshot_count"], 1);
    append_batch(
        &mut t,
        |s| rows(s, "new", DAY0_US + 400 * DAY_US, 3, 0.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
    let r = floe_table_format::rewrite::retain(&mut t, std::time::Duration::from_secs(3600), "ts")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.removed, 1);
    let got = read(t.metadata_location().to_string());
    assert_eq!(got["row_count"], 3, "only the rows newer than the cutoff");
    assert_eq!(scan(&t).await.0, 3);
}

#[tokio::test]
async fn the_cached_manifest_list_equals_what_readers_load() {
    let wh = memory_warehouse();
    let ident = TableIdent::parse("fleet.cache").unwrap();
    let mut t = Table::create(&wh, &ident, tight()).await.unwrap();
    for i in 0..23 {
        append_batch(
            &mut t,
            |s| rows(s, "d", DAY0_US + i * 3_600_000_000, 2, 1.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        let (id, cached) = t
            .cached_manifest_list()
            .expect("a committing handle caches its list");
        let current = t.metadata().current_snapshot().unwrap();
        assert_eq!(id, current.snapshot_id());
        let loaded = t
            .iceberg()
            .unwrap()
            .manifest_list_reader(current)
            .load()
            .await
            .unwrap();
        assert_eq!(
            cached.as_slice(),
            loaded.entries(),
            "commit {i}: cache differs from the stored list"
        );
        // Every entry's data sequence number is what a fresh reader derives.
        for m in loaded.entries() {
            assert!(m.sequence_number >= 1 && m.min_sequence_number >= 1);
        }
    }
    assert_eq!(scan(&t).await.0, 46);
}

/// Whether the object at `location` exists in `wh`'s store.
async fn exists(wh: &floe_table_format::Warehouse, location: &str) -> bool {
    wh.store()
        .head(&wh.object_path(location).unwrap())
        .await
        .is_ok()
}

#[tokio::test]
async fn vacuum_reclaims_files_only_deleted_entries_still_name() {
    // After compact (or retain) and expire, the replaced files are named only by DELETED
    // entries of live manifests: no live snapshot can read them, so vacuum deletes them
    // and storage shrinks. The live files stay, and the rows are exact.
    for (backend, wh) in all_warehouses() {
        for op in ["compact", "retain"] {
            let ident = TableIdent::parse(&format!("fleet.reclaim_{op}")).unwrap();
            let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
            for i in 0..4 {
                append_batch(
                    &mut t,
                    |s| rows(s, "d", DAY0_US + i * 3_600_000_000, 5, 1.0),
                    CommitOptions::default(),
                )
                .await
                .unwrap();
            }
            let before: Vec<String> = floe_table_format::rewrite::live_files(&t)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.data_file.file_path().to_string())
                .collect();
            let expected_rows = match op {
                "compact" => {
                    floe_table_format::rewrite::compact(&mut t, 64 << 20)
                        .await
                        .unwrap()
                        .rewrite
                        .unwrap();
                    20
                }
                _ => {
                    append_batch(
                        &mut t,
                        |s| rows(s, "new", DAY0_US + 400 * DAY_US, 3, 0.0),
                        CommitOptions::default(),
                    )
                    .await
                    .unwrap();
                    floe_table_format::rewrite::retain(
                        &mut t,
                        std::time::Duration::from_secs(3600),
                        "ts",
                    )
                    .await
                    .unwrap()
                    .unwrap();
                    3
                }
            };
            floe_table_format::vacuum::expire(&mut t, std::time::Duration::ZERO, 1)
                .await
                .unwrap();
            assert_eq!(t.metadata().snapshots().count(), 1, "{backend} {op}");
            floe_table_format::vacuum::vacuum(&mut t, std::time::Duration::ZERO, false)
                .await
                .unwrap();
            for f in &before {
                assert!(
                    !exists(&wh, f).await,
                    "{backend} {op}: {f} is unreachable from every live snapshot but was kept"
                );
            }
            for f in floe_table_format::rewrite::live_files(&t).await.unwrap() {
                assert!(
                    exists(&wh, f.data_file.file_path()).await,
                    "{backend} {op}: live file deleted"
                );
            }
            assert_eq!(scan(&t).await.0, expected_rows, "{backend} {op}");
        }
    }
}

/// Issue 15, class 4: a commit id is recognised on a rerun even after its snapshot was
/// expired, by `floe expire` (or its library call) and by the commit path's own cap
/// (`floe.history.max-snapshots`). A rerun must neither commit the rows again nor fail.
#[tokio::test]
async fn a_commit_id_is_recognised_after_its_snapshot_expired() {
    for (backend, wh) in all_warehouses() {
        let mut def = iot_definition();
        def.properties
            .insert("floe.history.max-snapshots".into(), "3".into());
        let ident = TableIdent::parse("fleet.ledger").unwrap();
        let mut t = Table::create(&wh, &ident, def).await.unwrap();
        let append = |id: &str| CommitOptions {
            commit_id: id.to_string(),
            ..CommitOptions::default()
        };
        // "first" is expired by the cap after three more appends.
        append_batch(
            &mut t,
            |s| rows(s, "first", DAY0_US, 2, 0.0),
            append("first"),
        )
        .await
        .unwrap();
        // The cap (3, with 10% slack, at least 1) trims back to 3 once 5 are kept.
        for i in 0..4 {
            append_rows(&mut t, 1 + i).await;
        }
        let has = |t: &Table, id: &str| {
            t.metadata().snapshots().any(|s| {
                s.summary()
                    .additional_properties
                    .get(floe_table_format::COMMIT_ID_KEY)
                    == Some(&id.to_string())
            })
        };
        assert!(
            !has(&t, "first"),
            "{backend}: the cap expired the first snapshot"
        );
        // "second" is expired by an explicit expiry.
        append_batch(
            &mut t,
            |s| rows(s, "second", DAY0_US, 2, 0.0),
            append("second"),
        )
        .await
        .unwrap();
        append_rows(&mut t, 1).await;
        floe_table_format::vacuum::expire(&mut t, std::time::Duration::ZERO, 1)
            .await
            .unwrap();
        assert_eq!(t.metadata().snapshots().count(), 1, "{backend}");
        assert!(
            !has(&t, "second"),
            "{backend}: expiry removed the second snapshot"
        );
        let (rows_before, _) = scan(&t).await;
        let version_before = t.version();
        for id in ["first", "second"] {
            let mut fresh = Table::load(&wh, &ident).await.unwrap();
            let report = append_batch(&mut fresh, |s| rows(s, id, DAY0_US, 2, 0.0), append(id))
                .await
                .unwrap();
            assert!(
                report.already_committed,
                "{backend}: the rerun of {id} after its snapshot expired committed again"
            );
            assert_eq!(
                scan(&fresh).await.0,
                rows_before,
                "{backend}: rows unchanged"
            );
            assert_eq!(
                fresh.version(),
                version_before,
                "{backend}: nothing written"
            );
        }
    }
}
