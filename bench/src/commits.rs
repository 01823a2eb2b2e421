//! `floe-bench commits`: the cost of a commit over a table's life, with Floe's automatic
//! maintenance on and off: latency percentiles and object-store requests per commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Warehouse};

use crate::counting::{Counting, KINDS};
use crate::report::{self, ms};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Append `rows`-row commits to one table per mode (maintenance on, off); at each size in
/// `sizes` print latency percentiles and requests per commit over the latest window.
pub async fn commits(
    warehouse: &Warehouse,
    sizes: &[usize],
    rows: usize,
    window: usize,
    modes: &[String],
) -> Result<()> {
    for m in modes {
        ensure!(
            m == "on" || m == "off",
            "--modes takes on and/or off, not '{m}'"
        );
    }
    ensure!(
        !sizes.is_empty() && rows > 0 && window > 0,
        "--sizes, --rows and --window must not be empty/zero"
    );
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let s = schema::default_iot_schema();
    let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &s)?;
    let off: std::collections::HashMap<String, String> = [
        ("commit.manifest-merge.enabled", "false"),
        ("floe.history.max-snapshots", "1000000000"),
        ("history.expire.max-snapshot-age-ms", "1000000000000000"),
        ("write.metadata.delete-after-commit.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut out = Vec::new();
    let runs: [(&str, std::collections::HashMap<String, String>); 2] = [
        ("maintenance on", Default::default()),
        ("maintenance off", off),
    ];
    for (mode, properties) in runs
        .into_iter()
        .filter(|(m, _)| modes.iter().any(|x| m.ends_with(x.as_str())))
    {
        let counting = Arc::new(Counting::new(warehouse.store().clone()));
        let wh = Warehouse::with_store(warehouse.url(), counting.clone())?;
        let ident = TableIdent::new(
            Namespace::parse("bench")?,
            format!(
                "commits_{}_{stamp}",
                if mode.ends_with("on") { "on" } else { "off" }
            ),
        )?;
        let definition = TableDefinition {
            schema: s.clone(),
            partition: partition.clone(),
            properties,
        };
        let mut table = Table::create(&wh, &ident, definition).await?;
        eprintln!(
            "{mode}: {} up to {} commits of {rows} rows …",
            ident,
            sizes[sizes.len() - 1]
        );
        let mut latencies: Vec<Duration> = Vec::new();
        let mut counts_at: Vec<[u64; 5]> = Vec::new();
        let mut done = 0usize;
        for &size in sizes {
            while done < size {
                let before = counting.snapshot();
                let t0 = Instant::now();
                let mut writer = floe_table_format::DataWriter::new(&table)?;
                let batch = sample_batch(writer.arrow_schema(), done as i64, rows)?;
                writer.write(batch).await?;
                let files = writer.close().await?;
                table
                    .append(files, floe_table_format::CommitOptions::default())
                    .await?;
                latencies.push(t0.elapsed());
                let after = counting.snapshot();
                counts_at.push(std::array::from_fn(|i| after[i] - before[i]));
                done += 1;
            }
            let w = window.min(size);
            let mut last: Vec<Duration> = latencies[size - w..size].to_vec();
            last.sort();
            let req: [u64; 5] =
                std::array::from_fn(|i| counts_at[size - w..size].iter().map(|c| c[i]).sum());
            let total: u64 = req.iter().sum();
            let per = |n: u64| format!("{:.2}", n as f64 / w as f64);
            out.push(vec![
                size.to_string(),
                mode.to_string(),
                ms(pct(&last, 0.5)),
                ms(pct(&last, 0.99)),
                per(total),
                KINDS
                    .iter()
                    .zip(req)
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| format!("{k} {}", per(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                table.metadata().snapshots().len().to_string(),
            ]);
        }
    }
    out.sort_by_key(|r| (r[0].parse::<usize>().unwrap_or(0), r[1].clone()));
    print!(
        "{}",
        report::table(
            &[
                "commits",
                "mode",
                "p50 ms",
                "p99 ms",
                "requests/commit",
                "by kind",
                "snapshots kept"
            ],
            &out
        )
    );
    println!("(latency: write a {rows}-row data file and commit it, over the last {window} commits at each size)");
    Ok(())
}

/// `rows` rows of one device's telemetry starting `offset` hours after 2026-01-01 (realistic
/// values, cheap to make).
pub fn sample_batch(schema: &SchemaRef, offset: i64, rows: usize) -> Result<RecordBatch> {
    let mut rng = StdRng::seed_from_u64(offset as u64);
    let start_us = 1_767_225_600_000_000i64 + offset * 3_600_000_000;
    let values = (0..rows).map(|_| rng.random_range(0.0..100.0)).collect();
    readings(schema, "bench-device", start_us, values)
}

/// One reading per value of `values` for `device`, one second apart from `start_us`,
/// cycling through three metrics.
pub fn readings(
    schema: &SchemaRef,
    device: &str,
    start_us: i64,
    values: Vec<f64>,
) -> Result<RecordBatch> {
    let rows = values.len();
    let metrics = ["power_kw", "soc_pct", "temp_c"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![device; rows])),
        Arc::new(
            TimestampMicrosecondArray::from(
                (0..rows as i64)
                    .map(|i| start_us + i * 1_000_000)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(StringArray::from(
            (0..rows).map(|i| metrics[i % 3]).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(values)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
