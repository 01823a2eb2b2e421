//! Append and reload on every backend; the metadata strict readers rely on is exact.

use futures::future::join_all;
use object_store::ObjectStoreExt;

use floe_table_format::{CommitOptions, Table, TableIdent, Version};

use crate::support::*;

#[tokio::test]
async fn append_and_reload_on_every_backend() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.dev_0001").unwrap();
        let mut table = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        let mut ids = Vec::new();
        for (i, start) in [DAY0_US, DAY0_US + 3_600_000_000, DAY0_US + DAY_US]
            .iter()
            .enumerate()
        {
            let opts = CommitOptions::default();
            ids.push(opts.commit_id.clone());
            let r = append_batch(
                &mut table,
                |s| rows(s, "d1", *start, 100, i as f64 * 1000.0),
                opts,
            )
            .await
            .unwrap();
            assert_eq!(r.version, Version(i as u64 + 2), "{backend}");
            assert_eq!(r.attempts, 1, "{backend}");
        }
        let loaded = Table::load(&wh, &ident).await.unwrap();
        assert_eq!(loaded.version(), Version(4), "{backend}");
        assert_eq!(loaded.metadata().snapshots().len(), 3, "{backend}");
        assert_eq!(commit_ids(&loaded), ids, "{backend}");
        let (n, sum) = scan(&loaded).await;
        let expected: f64 = (0..3)
            .map(|k| (0..100).map(|i| k as f64 * 1000.0 + i as f64).sum::<f64>())
            .sum();
        assert_eq!((n, sum), (300, expected), "{backend}");

        // Summary totals and the manifest entries match the objects exactly.
        let current = loaded.metadata().current_snapshot().unwrap();
        let summary = &current.summary().additional_properties;
        assert_eq!(summary["total-records"], "300", "{backend}");
        assert_eq!(
            summary["total-data-files"], "3",
            "{backend}: one file per commit (each within one day)"
        );
        let t = loaded.iceberg().unwrap();
        let list = t.manifest_list_reader(current).load().await.unwrap();
        assert_eq!(list.entries().len(), 3, "{backend}");
        let mut total_size = 0u64;
        for m in list.entries() {
            assert_eq!(m.added_rows_count, Some(100), "{backend}");
            let manifest = m.load_manifest(t.file_io()).await.unwrap();
            for e in manifest.entries() {
                let df = e.data_file();
                let head = wh
                    .store()
                    .head(&wh.object_path(df.file_path()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(
                    head.size,
                    df.file_size_in_bytes(),
                    "{backend}: {}",
                    df.file_path()
                );
                assert!(df.record_count() > 0);
                assert!(
                    df.lower_bounds().contains_key(&4) && df.upper_bounds().contains_key(&4),
                    "{backend}: value bounds"
                );
                assert_eq!(df.null_value_counts().get(&4), Some(&0));
                total_size += df.file_size_in_bytes();
            }
        }
        assert_eq!(
            summary["total-files-size"],
            total_size.to_string(),
            "{backend}"
        );
        // Versions are gap-free and the hint names the head without a newline.
        for v in 1..=4 {
            let loc = floe_table_format::version::metadata_location(loaded.location(), Version(v));
            wh.store()
                .head(&wh.object_path(&loc).unwrap())
                .await
                .unwrap();
        }
        assert_eq!(
            floe_table_format::version::read_hint(&wh, loaded.location())
                .await
                .unwrap(),
            Some(Version(4))
        );
    }
}

#[tokio::test]
async fn a_commit_id_is_applied_once() {
    let wh = memory_warehouse();
    let ident = TableIdent::parse("fleet.idem").unwrap();
    let mut table = Table::create(&wh, &ident, iot_definition()).await.unwrap();
    let opts = CommitOptions::default();
    append_batch(&mut table, |s| rows(s, "d", DAY0_US, 10, 0.0), opts.clone())
        .await
        .unwrap();
    // A second process retrying the same commit (e.g. after a crash) with a fresh handle.
    let mut again = Table::load(&wh, &ident).await.unwrap();
    let r = append_batch(&mut again, |s| rows(s, "d", DAY0_US, 10, 0.0), opts)
        .await
        .unwrap();
    assert!(r.already_committed);
    let loaded = Table::load(&wh, &ident).await.unwrap();
    assert_eq!(loaded.metadata().snapshots().len(), 1);
    assert_eq!(scan(&loaded).await.0, 10);
}

#[tokio::test]
async fn concurrent_creators_share_one_table() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.dev_new").unwrap();
        let tables =
            join_all((0..8).map(|_| Table::create_or_load(&wh, &ident, iot_definition()))).await;
        let uuids: std::collections::HashSet<_> = tables
            .iter()
            .map(|t| t.as_ref().unwrap().metadata().uuid())
            .collect();
        assert_eq!(uuids.len(), 1, "{backend}: one table, not {}", uuids.len());
        let e = Table::create(&wh, &ident, iot_definition())
            .await
            .unwrap_err();
        assert!(
            matches!(e, floe_table_format::Error::TableExists { .. }),
            "{backend}: {e}"
        );
    }
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    for (backend, wh) in all_warehouses() {
        let ident = TableIdent::parse("fleet.busy").unwrap();
        Table::create(&wh, &ident, iot_definition()).await.unwrap();
        let (writers, each) = (6, 5);
        let tasks = (0..writers).map(|w| {
            let wh = wh.clone();
            let ident = ident.clone();
            tokio::spawn(async move {
                let mut t = Table::load(&wh, &ident).await.unwrap();
                let mut ids = Vec::new();
                for i in 0..each {
                    let opts = CommitOptions::default();
                    ids.push(opts.commit_id.clone());
                    append_batch(
                        &mut t,
                        |s| rows(s, &format!("w{w}"), DAY0_US + i * 60_000_000, 7, 1.0),
                        opts,
                    )
                    .await
                    .unwrap();
                }
                ids
            })
        });
        let acked: Vec<String> = join_all(tasks)
            .await
            .into_iter()
            .flat_map(|r| r.unwrap())
            .collect();
        let loaded = Table::load(&wh, &ident).await.unwrap();
        let mut got = commit_ids(&loaded);
        assert_eq!(
            got.len(),
            acked.len(),
            "{backend}: one snapshot per acknowledged commit"
        );
        got.sort();
        let mut want = acked.clone();
        want.sort();
        assert_eq!(got, want, "{backend}");
        assert_eq!(
            loaded.version(),
            Version(1 + acked.len() as u64),
            "{backend}: gap-free"
        );
        assert_eq!(scan(&loaded).await.0, 7 * acked.len(), "{backend}");
    }
}

#[tokio::test]
async fn a_hundred_device_tables_at_once() {
    use futures::stream::{self, StreamExt};
    for (backend, wh) in all_warehouses() {
        let results: Vec<(TableIdent, String)> = stream::iter(0..100)
            .map(|d| {
                let wh = wh.clone();
                async move {
                    let ident = TableIdent::parse(&format!("site_1.dev_{d:03}")).unwrap();
                    let mut t = Table::create_or_load(&wh, &ident, iot_definition())
                        .await
                        .unwrap();
                    let opts = CommitOptions::default();
                    let id = opts.commit_id.clone();
                    append_batch(
                        &mut t,
                        |s| rows(s, &format!("dev_{d:03}"), DAY0_US, 10, d as f64),
                        opts,
                    )
                    .await
                    .unwrap();
                    (ident, id)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let catalog = floe_catalog::Catalog::new(wh.clone());
        let listed = catalog
            .list_tables(&floe_table_format::Namespace::parse("site_1").unwrap())
            .await
            .unwrap();
        assert_eq!(listed.len(), 100, "{backend}");
        for (ident, id) in results {
            let t = Table::load(&wh, &ident).await.unwrap();
            assert_eq!(commit_ids(&t), vec![id], "{backend}: {ident}");
            assert_eq!(scan(&t).await.0, 10, "{backend}: {ident}");
        }
    }
}
