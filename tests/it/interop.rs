//! pyiceberg reads what Floe writes; Floe reads what pyiceberg writes.

use floe_table_format::{CommitOptions, Table, TableIdent, Warehouse};

use crate::support::*;

#[tokio::test]
async fn pyiceberg_reads_what_floe_writes() {
    let mut backends = vec![("file", local_warehouse().0)];
    if let Some(s3) = s3_warehouse() {
        backends.push(("s3", s3));
    }
    for (backend, wh) in backends {
        let ident = TableIdent::parse("fleet.dev_interop").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        for day in 0..3 {
            append_batch(
                &mut t,
                |s| rows(s, "dev-1", DAY0_US + day * DAY_US, 50, day as f64 * 0.5),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
        let (rows_floe, sum_floe) = scan(&t).await;
        let day2 = "2026-01-03T00:00:00+00:00";
        let got = run_python(&[
            "tests/interop/read_table.py",
            t.metadata_location(),
            "--ts-from",
            day2,
        ]);
        assert_eq!(got["row_count"], rows_floe as u64, "{backend}: {got}");
        assert!(
            (got["sum_value"].as_f64().unwrap() - sum_floe).abs() < 1e-6,
            "{backend}: {got}"
        );
        assert_eq!(
            got["current_snapshot_id"].as_i64(),
            t.metadata().current_snapshot_id(),
            "{backend}"
        );
        assert_eq!(got["snapshot_count"], 3, "{backend}");
        let schema: Vec<(i64, String)> = got["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_i64().unwrap(), f[1].as_str().unwrap().to_string()))
            .collect();
        let want: Vec<(i64, String)> = t
            .metadata()
            .current_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.id as i64, f.name.clone()))
            .collect();
        assert_eq!(schema, want, "{backend}");
        assert_eq!(got["files_total"], 3, "{backend}");
        assert_eq!(
            got["files_filtered"], 1,
            "{backend}: the day filter prunes to one file"
        );
        assert_eq!(got["rows_filtered"], 50, "{backend}");
    }
}

#[tokio::test]
async fn floe_reads_what_pyiceberg_writes() {
    let dir = std::env::temp_dir().join(format!("floe-pyi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected = run_python(&["fixtures/pyiceberg_write.py", dir.to_str().unwrap()]);
    let location = expected["metadata_location"].as_str().unwrap();
    let wh = Warehouse::open(dir.to_str().unwrap()).unwrap();
    let t = Table::open_metadata(&wh, location).await.unwrap();
    assert_eq!(
        t.metadata().snapshots().len() as u64,
        expected["snapshot_count"].as_u64().unwrap()
    );
    assert_eq!(
        t.metadata().current_snapshot_id(),
        expected["current_snapshot_id"].as_i64()
    );
    let (n, sum) = scan(&t).await;
    assert_eq!(n as u64, expected["row_count"].as_u64().unwrap());
    assert!((sum - expected["sum_value"].as_f64().unwrap()).abs() < 1e-6);
    // Floe cannot write to a table it did not load from its own layout: `t` is a
    // `TableView`, which has no commit methods (a compile-time refusal).
    let _: &floe_table_format::TableView = &t;
}

#[tokio::test]
async fn floe_adopts_and_extends_a_pyiceberg_table() {
    let dir = std::env::temp_dir().join(format!("floe-reg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected = run_python(&[
        "fixtures/pyiceberg_write.py",
        dir.join("pyi").to_str().unwrap(),
    ]);
    let source = expected["metadata_location"].as_str().unwrap();
    let wh = Warehouse::open(dir.join("floe").to_str().unwrap()).unwrap();
    let ident = TableIdent::parse("fleet.adopted").unwrap();
    let mut t = Table::register(&wh, &ident, source).await.unwrap();
    assert_eq!(
        t.metadata().current_snapshot_id(),
        expected["current_snapshot_id"].as_i64()
    );
    assert!(
        Table::register(&wh, &ident, source).await.is_err(),
        "registered twice"
    );
    append_batch(
        &mut t,
        |s| rows(s, "m-9", DAY0_US, 7, 1.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
    let before = expected["row_count"].as_u64().unwrap() as usize;
    let reloaded = Table::load(&wh, &ident).await.unwrap();
    assert_eq!(scan(&reloaded).await.0, before + 7);
    let got = run_python(&["tests/interop/read_table.py", reloaded.metadata_location()]);
    assert_eq!(got["row_count"], (before + 7) as u64, "{got}");
    assert_eq!(
        got["snapshot_count"],
        expected["snapshot_count"].as_u64().unwrap() + 1
    );
    let report = floe_table_format::check::check_table(&wh, &ident)
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
