//! `floe sql` from the command line, and the same questions answered by pyiceberg + pyarrow.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};

use floe_table_format::{CommitOptions, Table, TableIdent, Warehouse};

use crate::support::*;

/// A table mixing three device ids and three metrics over three days, with some null
/// values, in four commits.
async fn mixed_table(wh: &Warehouse, name: &str) -> Table {
    let ident = TableIdent::parse(&format!("fleet.{name}")).unwrap();
    let mut t = Table::create(wh, &ident, iot_definition()).await.unwrap();
    for commit in 0..4i64 {
        append_batch(
            &mut t,
            |s| mixed_batch(s, commit, 300),
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    t
}

fn mixed_batch(schema: &arrow::datatypes::SchemaRef, commit: i64, n: usize) -> RecordBatch {
    let devices = ["dev-1", "dev-2", "dev-3"];
    let metrics = ["power_kw", "voltage", "temp_c"];
    let idx: Vec<i64> = (0..n as i64).map(|i| i + commit * n as i64).collect();
    let device: StringArray = idx
        .iter()
        .map(|i| Some(devices[(*i % 3) as usize]))
        .collect();
    // Spread over three days, 13-minute steps, so commits overlap in time.
    let ts: TimestampMicrosecondArray = idx
        .iter()
        .map(|i| Some(DAY0_US + (i * 13 % (3 * 24 * 60)) * 60_000_000))
        .collect();
    let metric: StringArray = idx
        .iter()
        .map(|i| Some(metrics[(*i / 3 % 3) as usize]))
        .collect();
    let value: Float64Array = idx
        .iter()
        .map(|i| (i % 17 != 0).then(|| (i % 41) as f64 * 0.75))
        .collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(device),
            Arc::new(ts.with_timezone("+00:00")),
            Arc::new(metric),
            Arc::new(value),
        ],
    )
    .unwrap()
}

const DAY1: &str = "2026-01-02T00:00:00Z";

/// The questions of `tests/interop/query_table.py`, in SQL.
fn questions(table: &str) -> String {
    format!(
        "SELECT count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max FROM {table};
         SELECT count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max FROM {table}
           WHERE metric = 'power_kw' AND ts >= TIMESTAMP '{DAY1}';
         SELECT count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max FROM {table}
           WHERE device_id = 'dev-2' AND ts < TIMESTAMP '{DAY1}' + INTERVAL '6 hours';
         SELECT count(*) AS n FROM {table} WHERE value BETWEEN 10 AND 20 OR value IS NULL;
         SELECT metric, count(*) AS n, sum(value) AS sum FROM {table}
           WHERE value > 5 GROUP BY metric ORDER BY metric;"
    )
}

/// Parse the concatenated JSON arrays `floe sql --format json` prints, one per statement.
fn json_results(stdout: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(stdout)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect()
}

fn close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "{what}: floe {x} vs pyiceberg {y}"
        ),
        _ => assert!(
            a.is_null() && b.is_null(),
            "{what}: floe {a} vs pyiceberg {b}"
        ),
    }
}

#[tokio::test]
async fn floe_sql_and_pyiceberg_give_the_same_answers() {
    let mut backends = vec![("file", local_warehouse().0)];
    if let Some(s3) = s3_warehouse() {
        backends.push(("s3", s3));
    }
    for (backend, wh) in backends {
        let t = mixed_table(&wh, "dev_q").await;
        let py = run_python(&["tests/interop/query_table.py", t.metadata_location(), DAY1]);
        let out = floe_ok(
            wh.url(),
            &["sql", "--format", "json", &questions("fleet.dev_q")],
        );
        let floe = json_results(&out.stdout);
        assert_eq!(floe.len(), 5, "{backend}: one result per statement");
        for (i, name) in ["all", "power_since_day1", "dev2_early"].iter().enumerate() {
            let (f, p) = (&floe[i][0], &py[name]);
            assert!(
                p["n"].as_u64().unwrap() > 0,
                "{backend} {name}: empty question"
            );
            assert_eq!(f["n"], p["n"], "{backend} {name}");
            for k in ["sum", "min", "max"] {
                close(&f[k], &p[k], &format!("{backend} {name}.{k}"));
            }
        }
        assert_eq!(floe[3][0]["n"], py["value_band_or_null"]["n"], "{backend}");
        let (f, p) = (
            floe[4].as_array().unwrap(),
            py["by_metric_over_5"].as_array().unwrap(),
        );
        assert_eq!(f.len(), 3, "{backend}");
        assert_eq!(f.len(), p.len(), "{backend}");
        for (a, b) in f.iter().zip(p) {
            assert_eq!(a["metric"], b["metric"], "{backend}");
            assert_eq!(a["n"], b["n"], "{backend}");
            close(&a["sum"], &b["sum"], &format!("{backend} by_metric sum"));
        }
    }
}

#[tokio::test]
async fn floe_sql_formats_files_explain_and_errors() {
    let (wh, dir) = local_warehouse();
    let t = mixed_table(&wh, "dev_c").await;
    let w = wh.url();
    let (rows, _) = scan(&t).await;

    // csv and table
    let out = floe_ok(
        w,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM fleet.dev_c",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("n\n{rows}\n"));
    let out = floe_ok(w, &["sql", "SELECT count(*) AS n FROM fleet.all_devices"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| n ") && text.contains(&format!("| {rows} ")),
        "{text}"
    );

    // -f with two statements, and a default namespace
    let file = dir.join("q.sql");
    std::fs::write(
        &file,
        "-- two questions\nSELECT count(*) AS n FROM dev_c;\nSELECT count(DISTINCT device) AS d FROM all_devices;\n",
    )
    .unwrap();
    let out = floe_ok(
        w,
        &[
            "sql",
            "-n",
            "fleet",
            "--format",
            "csv",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n\n{rows}\nd\n1\n")
    );

    // parquet to a file, read back by pyarrow
    let pq = dir.join("out.parquet");
    floe_ok(
        w,
        &[
            "sql",
            "--format",
            "parquet",
            "-o",
            pq.to_str().unwrap(),
            "SELECT * FROM fleet.dev_c WHERE metric = 'voltage'",
        ],
    );
    let got = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, ','.join(t.column_names))",
            pq.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let voltage = floe_ok(
        w,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM fleet.dev_c WHERE metric = 'voltage'",
        ],
    );
    let voltage = String::from_utf8_lossy(&voltage.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        format!("{voltage} device_id,ts,metric,value")
    );

    // --explain shows files and bytes planned versus total
    let out = floe_ok(
        w,
        &[
            "sql",
            "--explain",
            "SELECT * FROM fleet.dev_c WHERE ts >= TIMESTAMP '2026-01-03T00:00:00Z'",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let files_total = t
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties["total-data-files"]
        .clone();
    assert!(
        text.contains(&format!("files 4/{files_total}")),
        "one day's file of each of the 4 commits:\n{text}"
    );
    assert!(text.contains("FloeScanExec"), "{text}");
    let out = floe_ok(
        w,
        &[
            "sql",
            "--explain",
            "--format",
            "json",
            "SELECT * FROM fleet.all_devices WHERE device = 'nope'",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scans"][0]["tables_scanned"], 0, "{v}");

    // bad input: one clear error naming the object, non-zero exit
    for (args, needle) in [
        (vec!["sql", "SELEC 1"], "SELEC"),
        (
            vec!["sql", "SELECT * FROM fleet.dev_missing"],
            "dev_missing",
        ),
        (vec!["sql", "SELECT nope FROM fleet.dev_c"], "nope"),
        (vec!["sql", "--memory-limit", "12XB", "SELECT 1"], "12XB"),
        (
            vec!["sql", "-f", "/nonexistent/q.sql"],
            "/nonexistent/q.sql",
        ),
        (
            vec!["sql", "SELECT * FROM fleet.\"dev_c@1999-01-01\""],
            "1999",
        ),
    ] {
        let out = floe(w, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
