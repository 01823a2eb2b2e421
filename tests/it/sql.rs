//! SQL over the fleet: namespaces as schemas, `all_devices`, pruning figures, a scan on
//! every partition, time travel, metadata tables, the memory limit, and deletes written by
//! other engines.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::pretty::pretty_format_batches;

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine, ScanOptions, ScanSummary};
use floe_table_format::{CommitOptions, Table, TableIdent, Warehouse};

use crate::support::*;

/// Devices in the fixture fleet.
const DEVICES: usize = 4;
/// Days per device, one commit (one file) each.
const DAYS: i64 = 3;
/// Rows per commit.
const ROWS: usize = 50;

/// A fleet `fleet.dev_0 … dev_3`; each device commits one day of `ROWS` rows per commit.
/// Device `d`, day `k` has values `1000*d + 100*k + i`.
async fn fleet(wh: &Warehouse) -> Catalog {
    let cat = Catalog::new(wh.clone());
    for d in 0..DEVICES {
        let ident = TableIdent::parse(&format!("fleet.dev_{d}")).unwrap();
        let mut t = cat.create_table(&ident, iot_definition()).await.unwrap();
        for k in 0..DAYS {
            let name = format!("dev_{d}");
            append_batch(
                &mut t,
                |s| {
                    rows(
                        s,
                        &name,
                        DAY0_US + k * DAY_US,
                        ROWS,
                        (1000 * d) as f64 + 100.0 * k as f64,
                    )
                },
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
    }
    cat
}

async fn engine(cat: &Catalog, options: EngineOptions) -> QueryEngine {
    QueryEngine::open(cat, options).await.unwrap()
}

fn two_partitions() -> EngineOptions {
    EngineOptions {
        target_partitions: Some(2),
        ..Default::default()
    }
}

/// The single value of a one-row, one-column result, as f64 (counts and sums alike).
fn single(batches: &[RecordBatch]) -> f64 {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1, "expected one row:\n{}", pretty(batches));
    let b = batches.iter().find(|b| b.num_rows() == 1).unwrap();
    let col = arrow::compute::cast(b.column(0), &DataType::Float64).unwrap();
    let col = col
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap();
    col.value(0)
}

fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// The single scan of a query's plan.
async fn summary(engine: &QueryEngine, query: &str) -> ScanSummary {
    let (_, mut summaries) = engine.explain(query).await.unwrap();
    assert_eq!(summaries.len(), 1, "{query}: one scan expected");
    summaries.pop().unwrap()
}

/// Sum of `value` over device `d`, days `days`.
fn expected_sum(d: usize, days: std::ops::Range<i64>) -> f64 {
    days.map(|k| {
        (0..ROWS)
            .map(|i| (1000 * d) as f64 + 100.0 * k as f64 + i as f64)
            .sum::<f64>()
    })
    .sum()
}

#[tokio::test]
async fn fleet_queries_on_every_backend() {
    for (backend, wh) in all_warehouses() {
        let cat = fleet(&wh).await;
        let e = engine(&cat, two_partitions()).await;
        let total_rows = (DEVICES * DAYS as usize * ROWS) as f64;

        // One table, and the fleet view with its `device` column.
        let n = single(&e.sql("SELECT count(*) FROM fleet.dev_1").await.unwrap());
        assert_eq!(n, (DAYS as usize * ROWS) as f64, "{backend}");
        let n = single(
            &e.sql("SELECT count(*) FROM fleet.all_devices")
                .await
                .unwrap(),
        );
        assert_eq!(n, total_rows, "{backend}");
        let by_device = e
            .sql("SELECT device, count(*) AS n, sum(value) AS s FROM fleet.all_devices GROUP BY device ORDER BY device")
            .await
            .unwrap();
        let by_device = arrow::compute::concat_batches(&by_device[0].schema(), &by_device).unwrap();
        assert_eq!(by_device.num_rows(), DEVICES, "{backend}");
        let names = arrow::compute::cast(by_device.column(0), &DataType::Utf8).unwrap();
        let names = names
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let sums = by_device
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        for d in 0..DEVICES {
            assert_eq!(names.value(d), format!("dev_{d}"), "{backend}");
            assert_eq!(
                sums.value(d),
                expected_sum(d, 0..DAYS),
                "{backend}: dev_{d}"
            );
        }

        // A predicate on `device` prunes whole tables before their manifests are read.
        let q = "SELECT sum(value) FROM fleet.all_devices WHERE device = 'dev_2'";
        let s = summary(&e, q).await;
        assert_eq!(
            (s.tables_total, s.tables_scanned),
            (DEVICES as u64, 1),
            "{backend}"
        );
        assert_eq!(s.files_planned(), DAYS as u64, "{backend}");
        let got = single(&e.sql(q).await.unwrap());
        assert_eq!(got, expected_sum(2, 0..DAYS), "{backend}");

        // A predicate on the data prunes files by partition and column bounds: day 1 only.
        let day1 = "2026-01-02T00:00:00Z";
        let day2 = "2026-01-03T00:00:00Z";
        let q = format!(
            "SELECT sum(value) FROM fleet.all_devices \
             WHERE ts >= TIMESTAMP '{day1}' AND ts < TIMESTAMP '{day2}'"
        );
        let s = summary(&e, &q).await;
        assert_eq!(
            s.files_total,
            Some((DEVICES as i64 * DAYS) as u64),
            "{backend}"
        );
        assert_eq!(
            s.files_planned(),
            DEVICES as u64,
            "{backend}: one file per device"
        );
        assert!(s.bytes_planned() < s.bytes_total.unwrap(), "{backend}");
        let got = single(&e.sql(&q).await.unwrap());
        let want: f64 = (0..DEVICES).map(|d| expected_sum(d, 1..2)).sum();
        assert_eq!(got, want, "{backend}");

        // Bounds on `value` prune too: only dev_3's files hold values >= 3000.
        let q = "SELECT count(*) FROM fleet.all_devices WHERE value >= 3000";
        let s = summary(&e, q).await;
        assert_eq!(s.files_planned(), DAYS as u64, "{backend}");
        assert_eq!(
            single(&e.sql(q).await.unwrap()),
            (DAYS as usize * ROWS) as f64,
            "{backend}"
        );

        // The scan is spread over every target partition, and its output says so.
        let (plan, summaries) = e.explain("SELECT * FROM fleet.all_devices").await.unwrap();
        assert_eq!(summaries[0].partitions, 2, "{backend}");
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(text.contains("FloeScanExec"), "{backend}: {text}");
        let stream_counts = {
            let ctx = e.context().task_ctx();
            let mut per_partition = Vec::new();
            let scan = find_scan(&plan);
            for p in 0..scan.properties().partitioning.partition_count() {
                let batches: Vec<RecordBatch> =
                    futures::TryStreamExt::try_collect(scan.execute(p, ctx.clone()).unwrap())
                        .await
                        .unwrap();
                per_partition.push(batches.iter().map(RecordBatch::num_rows).sum::<usize>());
            }
            per_partition
        };
        assert_eq!(stream_counts.len(), 2, "{backend}");
        assert!(
            stream_counts.iter().all(|n| *n > 0),
            "{backend}: every partition reads files: {stream_counts:?}"
        );
        assert_eq!(
            stream_counts.iter().sum::<usize>() as f64,
            total_rows,
            "{backend}"
        );

        // LIMIT pushes down: a bare LIMIT plans only the files it needs.
        let s = summary(&e, "SELECT * FROM fleet.dev_0 LIMIT 10").await;
        assert_eq!(s.files_planned(), 1, "{backend}");

        // Unknown tables and columns are one clear error naming them.
        let err = e
            .sql("SELECT * FROM fleet.dev_99")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("dev_99"), "{backend}: {err}");
        let err = e
            .sql("SELECT nope FROM fleet.all_devices")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{backend}: {err}");
    }
}

fn find_scan(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Arc<dyn datafusion::physical_plan::ExecutionPlan> {
    if plan.name() == "FloeScanExec" {
        return plan.clone();
    }
    plan.children()
        .into_iter()
        .map(find_scan)
        .next()
        .expect("a FloeScanExec in the plan")
}

#[tokio::test]
async fn time_travel_and_metadata_tables() {
    let wh = memory_warehouse();
    let cat = fleet(&wh).await;
    let t = cat
        .load_table(&TableIdent::parse("fleet.dev_0").unwrap())
        .await
        .unwrap();
    let mut snaps: Vec<_> = t.metadata().snapshots().cloned().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    assert_eq!(snaps.len(), DAYS as usize);
    let e = engine(&cat, EngineOptions::default()).await;

    // As of each snapshot id: the rows committed up to it.
    for (k, s) in snaps.iter().enumerate() {
        let q = format!("SELECT count(*) FROM fleet.\"dev_0@{}\"", s.snapshot_id());
        assert_eq!(
            single(&e.sql(&q).await.unwrap()),
            ((k + 1) * ROWS) as f64,
            "{q}"
        );
    }
    // As of a time: the snapshot current then (the first commit's own timestamp).
    let first_ms = snaps[0].timestamp_ms();
    let when = chrono_utc(first_ms);
    let q = format!("SELECT count(*) FROM fleet.\"dev_0@{when}\"");
    assert_eq!(single(&e.sql(&q).await.unwrap()), ROWS as f64, "{q}");
    // Before the table existed: a clear error, not an empty answer.
    let err = e
        .sql("SELECT count(*) FROM fleet.\"dev_0@2001-01-01\"")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("dev_0") && err.contains("2001"), "{err}");
    let err = e
        .sql("SELECT count(*) FROM fleet.\"dev_0@12345\"")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("12345"), "{err}");

    // Metadata tables.
    let n = single(
        &e.sql("SELECT count(*) FROM fleet.\"dev_0$snapshots\"")
            .await
            .unwrap(),
    );
    assert_eq!(n, DAYS as f64);
    let n = single(
        &e.sql("SELECT count(*) FROM fleet.\"dev_0$history\" WHERE is_current_ancestor")
            .await
            .unwrap(),
    );
    assert_eq!(n, DAYS as f64);
    let n = single(
        &e.sql("SELECT sum(record_count) FROM fleet.\"dev_0$files\"")
            .await
            .unwrap(),
    );
    assert_eq!(n, (DAYS as usize * ROWS) as f64);
    // Column bounds are there, keyed by column name.
    let max_upper = e
        .sql("SELECT upper_bounds['value'] AS u FROM fleet.\"dev_0$files\" ORDER BY CAST(u AS DOUBLE) DESC LIMIT 1")
        .await
        .unwrap();
    let text = pretty(&max_upper);
    let want = format!("{}", 100.0 * (DAYS - 1) as f64 + (ROWS - 1) as f64);
    assert!(text.contains(&want), "{text} should hold {want}");
    // The files as of the first snapshot: one.
    let q = format!(
        "SELECT count(*) FROM fleet.\"dev_0@{}$files\"",
        snaps[0].snapshot_id()
    );
    assert_eq!(single(&e.sql(&q).await.unwrap()), 1.0);
    let n = single(
        &e.sql("SELECT count(*) FROM fleet.\"dev_0$manifests\"")
            .await
            .unwrap(),
    );
    assert!(n >= 1.0);
}

fn chrono_utc(ms: i64) -> String {
    // YYYY-MM-DDTHH:MM:SS.mmmZ without a date crate: days from the civil calendar.
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[tokio::test]
async fn group_by_and_sort_larger_than_the_memory_limit_spill_and_agree() {
    let wh = memory_warehouse();
    let cat = Catalog::new(wh.clone());
    let ident = TableIdent::parse("fleet.big").unwrap();
    let mut t = cat.create_table(&ident, iot_definition()).await.unwrap();
    // 400,000 rows with distinct timestamps: a GROUP BY ts and a sort hold them all.
    for k in 0..8 {
        append_batch(
            &mut t,
            |s| {
                rows(
                    s,
                    "big",
                    DAY0_US + k * 50_000 * 60_000_000,
                    50_000,
                    k as f64,
                )
            },
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
    let queries = [
        "SELECT ts, count(*) AS n, sum(value) AS s FROM fleet.big GROUP BY ts ORDER BY ts",
        "SELECT device_id, ts, metric, value FROM fleet.big ORDER BY value DESC, ts",
    ];
    let free = engine(&cat, two_partitions()).await;
    let limited = engine(
        &cat,
        EngineOptions {
            memory_limit: Some(16 << 20),
            // One partition: fewer operators share the pool, so the test does not depend
            // on how two partitions' reservations interleave.
            target_partitions: Some(1),
            ..Default::default()
        },
    )
    .await;
    for q in queries {
        let want = free.sql(q).await.unwrap();
        let got = limited.sql(q).await.unwrap();
        assert_eq!(
            got.iter().map(RecordBatch::num_rows).sum::<usize>(),
            want.iter().map(RecordBatch::num_rows).sum::<usize>(),
            "{q}"
        );
        assert!(pretty(&got) == pretty(&want), "{q}: results differ");
        // It fitted by spilling: the plan's metrics count spilled bytes.
        let analyzed = limited.sql(&format!("EXPLAIN ANALYZE {q}")).await.unwrap();
        let text = pretty(&analyzed);
        let spilled = text
            .split("spilled_bytes=")
            .skip(1)
            .filter_map(|s| {
                let digits: String = s
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',')
                    .collect();
                parse_metric_bytes(&digits)
            })
            .sum::<f64>();
        assert!(spilled > 0.0, "{q}: no spill under a 16 MB limit:\n{text}");
    }
}

/// `1234`, `1.2 KB`-style metric values as DataFusion prints them.
fn parse_metric_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| (&s[..i], &s[i..]))
        .unwrap_or((s, ""));
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => 1.0,
    };
    Some(n * mult)
}

/// Pruning never changes an answer, and neither does the native scan: random tables,
/// random commits, random predicates, random schema evolution, read natively with pruning
/// and by iceberg's reader without.
mod pruning_property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Row {
        device: Option<u8>,
        ts_min: Option<i64>,
        metric: Option<u8>,
        value: Option<f64>,
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::weighted(0.9, 0u8..3),
            proptest::option::weighted(0.9, 0i64..(4 * 24 * 60)),
            proptest::option::weighted(0.9, 0u8..3),
            proptest::option::weighted(
                0.85,
                prop_oneof![(-50i32..50).prop_map(f64::from), Just(f64::NAN)],
            ),
        )
            .prop_map(|(device, ts_min, metric, value)| Row {
                device,
                ts_min,
                metric,
                value,
            })
    }

    const SPECS: &[&str] = &[
        "",
        "day(ts)",
        "hour(ts)",
        "metric",
        "bucket(3, device_id)",
        "day(ts), metric",
        "truncate(1, metric)",
    ];

    fn predicate() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            (-60i32..60).prop_map(|v| format!("value > {v}")),
            (-60i32..60).prop_map(|v| format!("value <= {v}.5")),
            (-60i32..60).prop_map(|v| format!("value = {v}")),
            Just("value IS NULL".to_string()),
            Just("value IS NOT NULL".to_string()),
            Just("isnan(value)".to_string()),
            (0u8..4).prop_map(|m| format!("metric = 'm{m}'")),
            (0u8..4).prop_map(|m| format!("metric <> 'm{m}'")),
            (0u8..4).prop_map(|m| format!("metric IN ('m{m}', 'm0')")),
            Just("metric IS NULL".to_string()),
            (0u8..4).prop_map(|d| format!("device_id >= 'd{d}'")),
            (0i64..(5 * 24 * 60)).prop_map(|m| format!(
                "ts < TIMESTAMP '2026-01-01T00:00:00Z' + INTERVAL '{m} minutes'"
            )),
            (0i64..(5 * 24 * 60)).prop_map(|m| format!(
                "ts >= TIMESTAMP '2026-01-01T00:00:00Z' + INTERVAL '{m} minutes'"
            )),
            (-60i32..60, 0i32..40).prop_map(|(a, w)| format!("value BETWEEN {a} AND {}", a + w)),
            (-60i32..60).prop_map(|v| format!("TRY_CAST(value AS INT) > {v}")),
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
                inner.prop_map(|a| format!("NOT ({a})")),
            ]
        })
    }

    fn batch(schema: &arrow::datatypes::SchemaRef, rows: &[Row]) -> RecordBatch {
        use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
        let device: StringArray = rows
            .iter()
            .map(|r| r.device.map(|d| format!("d{d}")))
            .collect();
        let ts: TimestampMicrosecondArray = rows
            .iter()
            .map(|r| r.ts_min.map(|m| DAY0_US + m * 60_000_000))
            .collect();
        let metric: StringArray = rows
            .iter()
            .map(|r| r.metric.map(|m| format!("m{m}")))
            .collect();
        let value: Float64Array = rows.iter().map(|r| r.value).collect();
        let mut columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(device),
            Arc::new(ts.with_timezone("+00:00")),
            Arc::new(metric),
            Arc::new(value),
        ];
        // Columns added by schema evolution: NULL in these rows.
        for f in schema.fields().iter().skip(4) {
            columns.push(arrow::array::new_null_array(f.data_type(), rows.len()));
        }
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    /// Commit the rows of `commits`; with `evolve = Some(k)`, rename `value` to `reading`
    /// and add a column `note` before commit `k`, so files of both schemas are read.
    /// Compare the native scan with pruning against iceberg's reader without it.
    async fn check(
        spec: &str,
        commits: Vec<Vec<Row>>,
        predicates: Vec<String>,
        evolve: Option<usize>,
    ) {
        let wh = memory_warehouse();
        let cat = Catalog::new(wh.clone());
        let s = floe_table_format::schema::default_iot_schema();
        let mut definition = iot_definition();
        definition.partition = floe_table_format::schema::parse_partition_spec(spec, &s).unwrap();
        // Small pages, so page-index pruning has work to do.
        definition
            .properties
            .insert("write.parquet.page-row-limit".into(), "8".into());
        let ident = TableIdent::parse("prop.t").unwrap();
        let mut t: Table = cat.create_table(&ident, definition).await.unwrap();
        let mut renamed = false;
        for (k, rows) in commits.iter().enumerate() {
            if evolve == Some(k) {
                crate::native_scan::evolve_schema(
                    &mut t,
                    crate::native_scan::rename_and_add("value", "reading", &["note"]),
                )
                .await;
                renamed = true;
            }
            if rows.is_empty() {
                continue;
            }
            append_batch(&mut t, |s| batch(s, rows), CommitOptions::default())
                .await
                .unwrap();
        }
        let column = |q: &str| {
            if renamed {
                q.replace("value", "reading")
            } else {
                q.to_string()
            }
        };
        let total: usize = commits.iter().map(Vec::len).sum();
        let options = |pruning| EngineOptions {
            scan: ScanOptions {
                pruning,
                batch_size: 7,
                native: pruning,
            },
            target_partitions: Some(3),
            ..Default::default()
        };
        let on = engine(&cat, options(true)).await;
        let off = engine(&cat, options(false)).await;
        for table in ["prop.t", "prop.all_devices"] {
            let n = single(
                &off.sql(&format!("SELECT count(*) FROM {table}"))
                    .await
                    .unwrap(),
            );
            assert_eq!(n, total as f64, "{table}: every row without a filter");
            for p in &predicates {
                let q = column(&format!(
                    "SELECT device_id, ts, metric, value FROM {table} WHERE {p} \
                     ORDER BY device_id, ts, metric, value"
                ));
                let a = pretty(&on.sql(&q).await.unwrap());
                let b = pretty(&off.sql(&q).await.unwrap());
                assert_eq!(a, b, "spec '{spec}', query {q}");
                let q = column(&format!("SELECT count(*) FROM {table} WHERE {p} LIMIT 1"));
                assert_eq!(
                    single(&on.sql(&q).await.unwrap()),
                    single(&off.sql(&q).await.unwrap()),
                    "spec '{spec}', query {q}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn pruning_on_and_off_return_the_same_rows(
            spec in proptest::sample::select(SPECS),
            commits in proptest::collection::vec(proptest::collection::vec(row(), 1..40), 1..7),
            predicates in proptest::collection::vec(predicate(), 1..6),
            evolve in proptest::option::of(0usize..7),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(check(spec, commits, predicates, evolve));
        }
    }
}
