//! Schema evolution when firmware adds a field (opt-in add-columns and type widening in the
//! append's own commit, concurrent writers converging), and partition evolution
//! (`floe alter --partition`), read back by `floe sql` and pyiceberg.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};

use floe_table_format::evolve::Evolution;
use floe_table_format::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use floe_table_format::ingest::append_files_evolving;
use floe_table_format::{CommitOptions, Table, TableDefinition, TableIdent};

use crate::support::*;

/// A CSV input of `n` readings of `device` on 2026-01-01 from minute `from`, with the
/// extra columns `extra` (name, value of row i).
fn csv(
    dir: &Path,
    name: &str,
    device: &str,
    (from, n): (usize, usize),
    extra: &[(&str, &dyn Fn(usize) -> String)],
) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let names: Vec<&str> = extra.iter().map(|(c, _)| *c).collect();
    let mut header = "device_id,ts,metric,value".to_string();
    for c in &names {
        header.push(',');
        header.push_str(c);
    }
    writeln!(f, "{header}").unwrap();
    for i in from..from + n {
        let mut line = format!(
            "{device},2026-01-01T{:02}:{:02}:00Z,power_kw,{i}",
            i / 60,
            i % 60
        );
        for (_, v) in extra {
            line.push(',');
            line.push_str(&v(i));
        }
        writeln!(f, "{line}").unwrap();
    }
    p
}

fn temp(i: usize) -> String {
    format!("{}.5", i)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one result row of `floe sql --format json` for `query`.
fn sql_row(wh: &str, query: &str) -> serde_json::Value {
    let out = floe_ok(wh, &["sql", "--format", "json", query]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows[0].clone()
}

fn sql_rows(wh: &str, query: &str) -> Vec<serde_json::Value> {
    let out = floe_ok(wh, &["sql", "--format", "json", query]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().clone()
}

fn field_ids(t: &Table) -> Vec<(String, i32)> {
    t.metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.id))
        .collect()
}

#[tokio::test]
async fn firmware_adds_a_field_refused_by_default_added_in_the_same_commit_on_opt_in() {
    let (wh, dir) = local_warehouse();
    let url = wh.url().to_string();
    floe_ok(&url, &["create", "fleet.d1"]);
    let old = csv(&dir, "old.csv", "d1", (0, 3), &[]);
    floe_ok(&url, &["append", "fleet.d1", old.to_str().unwrap()]);
    let new = csv(&dir, "new.csv", "d1", (3, 4), &[("temp_c", &temp)]);

    // Off by default: refused, naming the column and how to opt in; nothing committed.
    let out = floe(&url, &["append", "fleet.d1", new.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out);
    for needle in ["'temp_c'", "--evolve", "floe.schema.evolution=add-columns"] {
        assert!(err.contains(needle), "missing {needle}: {err}");
    }
    let ident = TableIdent::parse("fleet.d1").unwrap();
    let before = Table::load(&wh, &ident).await.unwrap();

    // --evolve: the column is added and the data appended in one version.
    let out = floe_ok(
        &url,
        &[
            "append",
            "fleet.d1",
            new.to_str().unwrap(),
            "--evolve",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["version"], before.version().0 + 1, "{report}");
    let t = Table::load(&wh, &ident).await.unwrap();
    let f = t
        .metadata()
        .current_schema()
        .field_by_name("temp_c")
        .unwrap()
        .clone();
    assert_eq!(f.id, 5, "a fresh field id");
    assert!(!f.required);
    assert_eq!(*f.field_type, Type::Primitive(PrimitiveType::Double));
    let snap = t.metadata().current_snapshot().unwrap();
    assert_eq!(snap.schema_id(), Some(t.metadata().current_schema_id()));

    // Old rows read NULL in the new column: floe sql, the fleet view (from the namespace's
    // index, moved by the commit) and pyiceberg.
    let r = sql_row(
        &url,
        "SELECT count(*) AS n, count(temp_c) AS t, sum(temp_c) AS s FROM fleet.d1",
    );
    assert_eq!(
        (r["n"].as_u64(), r["t"].as_u64()),
        (Some(7), Some(4)),
        "{r}"
    );
    assert_eq!(r["s"].as_f64(), Some(3.5 + 4.5 + 5.5 + 6.5));
    let r = sql_row(
        &url,
        "SELECT count(temp_c) AS t FROM fleet.all_devices WHERE device = 'd1'",
    );
    assert_eq!(r["t"].as_u64(), Some(4), "{r}");
    let got = run_python(&[
        "tests/interop/read_table.py",
        t.metadata_location(),
        "--column",
        "temp_c",
    ]);
    assert_eq!(got["row_count"], 7, "{got}");
    assert_eq!(got["column_non_null"], 4, "{got}");

    // Opting in by the namespace's template: a device's first append creates its table
    // with the property, and the same commit adds the column.
    floe_ok(
        &url,
        &[
            "namespace",
            "set",
            "fleet",
            "--template-default",
            "--template-property",
            "floe.schema.evolution=add-columns",
        ],
    );
    let hum = |i: usize| format!("{}", 40 + i);
    let wet = csv(&dir, "wet.csv", "d2", (0, 2), &[("humidity", &hum)]);
    floe_ok(&url, &["append", "fleet.d2", wet.to_str().unwrap()]);

    // The fleet view unions by name: each table's missing columns read NULL.
    let rows = sql_rows(
        &url,
        "SELECT device, count(*) AS n, count(temp_c) AS t, count(humidity) AS h \
         FROM fleet.all_devices GROUP BY device ORDER BY device",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["t"].as_u64(), rows[0]["h"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(
        (rows[1]["t"].as_u64(), rows[1]["h"].as_u64()),
        (Some(0), Some(2))
    );

    // A column another table holds with another type: a clear error naming both tables.
    // (This table opts in by its own property.)
    floe_ok(
        &url,
        &[
            "create",
            "fleet.d3",
            "--property",
            "floe.schema.evolution=add-columns",
        ],
    );
    let words = |_: usize| "warm".to_string();
    let odd = csv(&dir, "odd.csv", "d3", (0, 2), &[("temp_c", &words)]);
    floe_ok(&url, &["append", "fleet.d3", odd.to_str().unwrap()]);
    let out = floe(&url, &["sql", "SELECT count(*) FROM fleet.all_devices"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("temp_c") && err.contains("d1") && err.contains("d3"),
        "{err}"
    );
}

/// A Parquet input file with the given columns.
fn parquet(dir: &Path, name: &str, batch: RecordBatch) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    p
}

#[tokio::test]
async fn promotions_widen_and_nothing_else_changes_implicitly() {
    let (wh, dir) = local_warehouse();
    let ident = TableIdent::parse("fleet.meter").unwrap();
    let schema = Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::optional(
                1,
                "n",
                Type::Primitive(PrimitiveType::Int),
            )),
            Arc::new(NestedField::optional(
                2,
                "f",
                Type::Primitive(PrimitiveType::Float),
            )),
            Arc::new(NestedField::optional(
                3,
                "k",
                Type::Primitive(PrimitiveType::Long),
            )),
        ])
        .build()
        .unwrap();
    let definition = TableDefinition {
        schema,
        partition: Default::default(),
        properties: Default::default(),
    };
    let mut t = Table::create(&wh, &ident, definition.clone())
        .await
        .unwrap();
    let small = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("k", DataType::Int32, true),
        ])),
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![10, 20])),
        ],
    )
    .unwrap();
    let first = parquet(&dir, "small.parquet", small);
    // A twin device whose firmware never widened: it keeps n as int.
    let twin = TableIdent::parse("fleet.meter_old").unwrap();
    let mut old = Table::create(&wh, &twin, definition).await.unwrap();
    append_files_evolving(
        &mut old,
        std::slice::from_ref(&first),
        CommitOptions::default(),
        None,
    )
    .await
    .unwrap();
    append_files_evolving(
        &mut t,
        &[first],
        CommitOptions::default(),
        Some(Evolution::AddColumns),
    )
    .await
    .unwrap();
    assert_eq!(
        t.metadata().schemas_iter().count(),
        1,
        "int into long: cast, no change"
    );

    let wide = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![5_000_000_000, 3])),
            Arc::new(Float64Array::from(vec![0.1, 0.2])),
        ],
    )
    .unwrap();
    let second = parquet(&dir, "wide.parquet", wide);
    append_files_evolving(
        &mut t,
        &[second],
        CommitOptions::default(),
        Some(Evolution::AddColumns),
    )
    .await
    .unwrap();
    let s = t.metadata().current_schema();
    assert_eq!(
        *s.field_by_name("n").unwrap().field_type,
        Type::Primitive(PrimitiveType::Long)
    );
    assert_eq!(
        *s.field_by_name("f").unwrap().field_type,
        Type::Primitive(PrimitiveType::Double)
    );
    let r = sql_row(
        wh.url(),
        "SELECT sum(n) AS n, count(f) AS f, sum(k) AS k FROM fleet.meter",
    );
    assert_eq!(r["n"].as_i64(), Some(5_000_000_006), "{r}");
    assert_eq!(
        (r["f"].as_u64(), r["k"].as_i64()),
        (Some(2), Some(30)),
        "{r}"
    );
    // Filters prune files written before the widening by their int bounds, exactly.
    for (filter, want) in [
        ("n >= 2", 3),
        ("n > 4000000000", 1),
        ("n < 3", 2),
        ("n = 1", 1),
    ] {
        let r = sql_row(
            wh.url(),
            &format!("SELECT count(*) AS c FROM fleet.meter WHERE {filter}"),
        );
        assert_eq!(r["c"].as_u64(), Some(want), "{filter}: {r}");
    }
    let got = run_python(&[
        "tests/interop/read_table.py",
        t.metadata_location(),
        "--column",
        "n",
    ]);
    assert_eq!(got["column_sum"], 5_000_000_006i64, "{got}");

    // A type change that is not a promotion (long -> double) is refused with or without
    // evolution being on, naming the column; nothing is committed.
    let retype = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![Field::new(
            "k",
            DataType::Float64,
            true,
        )])),
        vec![Arc::new(Float64Array::from(vec![1.5]))],
    )
    .unwrap();
    // The fleet view reads int and long as long (values cast up), filters exact.
    let rows = sql_rows(
        wh.url(),
        "SELECT device, sum(n) AS n, count(*) AS c FROM fleet.all_devices \
         WHERE n >= 2 GROUP BY device ORDER BY device",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["n"].as_i64(), rows[0]["c"].as_u64()),
        (Some(5_000_000_005), Some(3)),
        "{rows:?}"
    );
    assert_eq!(
        (rows[1]["n"].as_i64(), rows[1]["c"].as_u64()),
        (Some(2), Some(1)),
        "{rows:?}"
    );

    let third = parquet(&dir, "retype.parquet", retype);
    let version = t.version();
    let e = append_files_evolving(
        &mut t,
        &[third],
        CommitOptions::default(),
        Some(Evolution::AddColumns),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'k'")
            && e.contains("not an Iceberg type promotion")
            && e.contains("floe.schema.evolution"),
        "{e}"
    );
    t.refresh().await.unwrap();
    assert_eq!(t.version(), version);
}

async fn evolve_csv(t: &mut Table, file: &Path) -> floe_table_format::CommitReport {
    append_files_evolving(
        t,
        &[file.to_path_buf()],
        CommitOptions::default(),
        Some(Evolution::AddColumns),
    )
    .await
    .unwrap()
    .commit
}

#[tokio::test]
async fn concurrent_writers_adding_columns_converge_by_rebase() {
    for (backend, wh) in all_warehouses() {
        let (_, dir) = local_warehouse();
        let ident = TableIdent::parse("fleet.busy").unwrap();
        Table::create(&wh, &ident, iot_definition()).await.unwrap();
        // Three writers load the same head, then commit one after another: the later two
        // build on a head that moved under them.
        let mut a = Table::load(&wh, &ident).await.unwrap();
        let mut b = Table::load(&wh, &ident).await.unwrap();
        let mut c = Table::load(&wh, &ident).await.unwrap();
        let hum = |i: usize| format!("{}", 40 + i);
        let fa = csv(&dir, "a.csv", "d", (0, 3), &[("temp_c", &temp)]);
        let fb = csv(&dir, "b.csv", "d", (3, 2), &[("temp_c", &temp)]);
        // (c's input is JSON: a new field's type is inferred from the values.)
        let fc = dir.join("c.jsonl");
        let lines: Vec<String> = (5..9)
            .map(|i| {
                format!(
                    r#"{{"device_id":"d","ts":"2026-01-01T00:{i:02}:00Z","value":{i},"humidity":{}}}"#,
                    hum(i)
                )
            })
            .collect();
        std::fs::write(&fc, lines.join("\n")).unwrap();
        evolve_csv(&mut a, &fa).await;
        // The same column: b's files already carry the id a's commit gave it.
        let rb = evolve_csv(&mut b, &fb).await;
        assert_eq!(rb.attempts, 2, "{backend}: one rebase, no rewrite");
        // Another column under the id a took: c writes its files again with the next id.
        evolve_csv(&mut c, &fc).await;
        let t = Table::load(&wh, &ident).await.unwrap();
        let ids = field_ids(&t);
        assert_eq!(
            ids[4..],
            [("temp_c".to_string(), 5), ("humidity".to_string(), 6)],
            "{backend}: {ids:?}"
        );
        assert_eq!(t.metadata().last_column_id(), 6, "{backend}");
        assert_eq!(commit_ids(&t).len(), 3, "{backend}");
        if backend != "memory" {
            let r = sql_row(
                wh.url(),
                "SELECT count(*) AS n, count(temp_c) AS t, sum(temp_c) AS ts, \
                 count(humidity) AS h, sum(humidity) AS hs FROM fleet.busy",
            );
            assert_eq!(r["n"].as_u64(), Some(9), "{backend}: {r}");
            assert_eq!(r["t"].as_u64(), Some(5), "{backend}: {r}");
            assert_eq!(
                r["ts"].as_f64(),
                Some(0.5 + 1.5 + 2.5 + 3.5 + 4.5),
                "{backend}: {r}"
            );
            assert_eq!(r["h"].as_u64(), Some(4), "{backend}: {r}");
            assert_eq!(r["hs"].as_i64(), Some(45 + 46 + 47 + 48), "{backend}: {r}");
        }
    }
}

#[test]
fn racing_processes_adding_columns_all_commit_with_one_id_per_column() {
    let mut backends = vec![local_warehouse().0];
    backends.extend(s3_warehouse());
    for wh in backends {
        let url = wh.url().to_string();
        let (_, dir) = local_warehouse();
        floe_ok(&url, &["create", "fleet.race"]);
        let hum = |i: usize| format!("{}", 40 + i);
        let inputs: Vec<PathBuf> = (0..6)
            .map(|w| {
                let name = format!("w{w}.csv");
                match w % 2 {
                    0 => csv(&dir, &name, "r", (w * 10, 5), &[("temp_c", &temp)]),
                    _ => csv(&dir, &name, "r", (w * 10, 5), &[("humidity", &hum)]),
                }
            })
            .collect();
        let children: Vec<_> = inputs
            .iter()
            .map(|p| {
                Command::new(floe_bin())
                    .args(["--warehouse", &url, "append", "fleet.race", "--evolve"])
                    .arg(p)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{url}: {}", text(&out));
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        let t = rt
            .block_on(Table::load(&wh, &TableIdent::parse("fleet.race").unwrap()))
            .unwrap();
        let names: Vec<String> = field_ids(&t).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 6, "{url}: one field per column: {names:?}");
        assert!(names.contains(&"temp_c".into()) && names.contains(&"humidity".into()));
        assert_eq!(commit_ids(&t).len(), 6, "{url}");
        let r = sql_row(
            &url,
            "SELECT count(*) AS n, count(temp_c) AS t, count(humidity) AS h FROM fleet.race",
        );
        assert_eq!(
            (r["n"].as_u64(), r["t"].as_u64(), r["h"].as_u64()),
            (Some(30), Some(15), Some(15)),
            "{url}: {r}"
        );
    }
}

/// 2026-01-02T00:00:00Z in microseconds.
const DAY1_US: i64 = DAY0_US + DAY_US;
const HOUR_US: i64 = 3_600_000_000;

fn ts_literal(us: i64) -> String {
    let secs = us / 1_000_000;
    format!(
        "TIMESTAMP '2026-01-{:02}T{:02}:{:02}:00Z'",
        1 + (secs - DAY0_US / 1_000_000) / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

/// count and sum of `value` for rows with `from <= ts < to`, by floe sql.
fn window(url: &str, from: i64, to: i64) -> (u64, f64) {
    let r = sql_row(
        url,
        &format!(
            "SELECT count(*) AS n, sum(value) AS s FROM fleet.busy \
             WHERE ts >= {} AND ts < {}",
            ts_literal(from),
            ts_literal(to)
        ),
    );
    (r["n"].as_u64().unwrap(), r["s"].as_f64().unwrap_or(0.0))
}

fn sum(range: std::ops::Range<usize>) -> f64 {
    range.map(|i| i as f64).sum()
}

#[tokio::test]
async fn partition_evolution_keeps_old_specs_and_prunes_both_exactly() {
    let mut backends = vec![local_warehouse().0];
    backends.extend(s3_warehouse());
    for wh in backends {
        let url = wh.url().to_string();
        let ident = TableIdent::parse("fleet.busy").unwrap();
        let mut t = Table::create(&wh, &ident, iot_definition()).await.unwrap();
        // One commit by day: 30 rows on day 0, 20 on day 1 (00:00-00:19): two files, one
        // manifest of spec 0.
        let mut w = floe_table_format::DataWriter::new(&t).unwrap();
        let s = w.arrow_schema().clone();
        w.write(rows(&s, "d", DAY0_US, 30, 0.0)).await.unwrap();
        w.write(rows(&s, "d", DAY1_US, 20, 100.0)).await.unwrap();
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 2);
        t.append(files, CommitOptions::default()).await.unwrap();

        floe_ok(&url, &["alter", "fleet.busy", "--partition", "hour(ts)"]);
        let again = floe_ok(&url, &["alter", "fleet.busy", "--partition", "hour(ts)"]);
        assert!(text(&again).contains("already"), "{}", text(&again));
        t.refresh().await.unwrap();
        assert_eq!(t.metadata().partition_specs_iter().count(), 2, "{url}");
        assert_eq!(t.metadata().default_partition_spec_id(), 1, "{url}");

        // New data by hour: 40 rows from day 1 00:30 to 01:09 (two hourly files).
        append_batch(
            &mut t,
            |s| rows(s, "d", DAY1_US + HOUR_US / 2, 40, 1000.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        let specs: Vec<i32> = {
            let list = t
                .read_manifest_list(t.metadata().current_snapshot().unwrap())
                .await
                .unwrap();
            list.iter().map(|m| m.partition_spec_id).collect()
        };
        assert_eq!(specs, [0, 1], "{url}: old files keep their spec");

        let first_hour = (20 + 30, sum(100..120) + sum(1000..1030));
        let check = |total: u64| {
            assert_eq!(
                sql_row(&url, "SELECT count(*) AS n FROM fleet.busy")["n"].as_u64(),
                Some(total),
                "{url}"
            );
            assert_eq!(
                window(&url, DAY1_US, DAY1_US + HOUR_US),
                first_hour,
                "{url}"
            );
            assert_eq!(
                window(&url, DAY1_US + HOUR_US, DAY1_US + 2 * HOUR_US),
                (10, sum(1030..1040)),
                "{url}"
            );
            assert_eq!(
                window(&url, DAY1_US + 10 * 60_000_000, DAY1_US + 40 * 60_000_000),
                (10 + 10, sum(110..120) + sum(1000..1010)),
                "{url}"
            );
        };
        check(90);
        let got = run_python(&[
            "tests/interop/read_table.py",
            t.metadata_location(),
            "--ts-from",
            "2026-01-02T01:00:00+00:00",
        ]);
        assert_eq!(
            (got["row_count"].as_u64(), got["rows_filtered"].as_u64()),
            (Some(90), Some(10)),
            "{url}: {got}"
        );
        assert_eq!(
            got["files_filtered"], 1,
            "{url}: pyiceberg prunes both specs: {got}"
        );

        // Deleting an old-spec file rewrites its manifest: the rest of it keeps spec 0.
        let day0: Vec<String> = floe_table_format::rewrite::live_files(&t)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.data_file.file_path().to_string())
            .filter(|p| p.contains("ts_day=2026-01-01"))
            .collect();
        assert_eq!(day0.len(), 1, "{url}: {day0:?}");
        t.rewrite_files(
            &day0,
            Vec::new(),
            floe_table_format::iceberg::spec::Operation::Delete,
        )
        .await
        .unwrap();
        check(60);
        let got = run_python(&[
            "tests/interop/read_table.py",
            t.metadata_location(),
            "--ts-from",
            "2026-01-02T00:10:00+00:00",
        ]);
        assert_eq!(
            (got["row_count"].as_u64(), got["rows_filtered"].as_u64()),
            (Some(60), Some(50)),
            "{url}: {got}"
        );
    }
}

/// Issue 19: a firmware field added on the gateway (`floe append --evolve`) reaches the
/// cloud through `floe sync`: the cloud table takes the column (same field id) before the
/// data, and pyiceberg reads old rows with nulls in it.
#[tokio::test]
async fn an_evolving_append_on_the_gateway_reaches_the_cloud_through_sync() {
    let Some(cloud) = s3_warehouse() else { return };
    let (local, dir) = local_warehouse();
    let url = local.url().to_string();
    let first = csv(&dir, "a.csv", "d1", (0, 3), &[]);
    floe_ok(
        &url,
        &["append", "fleet.d1", first.to_str().unwrap(), "--create"],
    );
    floe_ok(&url, &["sync", "--to", cloud.url()]);
    let second = csv(&dir, "b.csv", "d1", (3, 4), &[("temp_c", &temp)]);
    floe_ok(
        &url,
        &["append", "fleet.d1", second.to_str().unwrap(), "--evolve"],
    );
    floe_ok(&url, &["sync", "--to", cloud.url()]);
    let ident = TableIdent::parse("fleet.d1").unwrap();
    let t = Table::load(&local, &ident).await.unwrap();
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(field_ids(&c), field_ids(&t));
    let got = run_python(&[
        "tests/interop/read_table.py",
        c.metadata_location(),
        "--column",
        "temp_c",
    ]);
    assert_eq!(got["row_count"], 7, "{got}");
    assert_eq!(got["column_non_null"], 4, "{got}");
}
