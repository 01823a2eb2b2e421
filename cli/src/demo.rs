//! `floe demo`: a simulated fleet writes its own tables, then Floe reads them back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;
use futures::stream::{self, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_catalog::Catalog;
#[cfg(feature = "query")]
use floe_query::{EngineOptions, QueryEngine};
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{CommitOptions, DataWriter, Namespace, TableDefinition, TableIdent};

use crate::output;

/// Seconds between two samples of one metric.
const SAMPLE_EVERY_S: i64 = 30;
/// Time covered by one commit (a gateway flushing every two hours).
const COMMIT_SPAN_S: i64 = 2 * 3600;
/// Devices written at once.
const CONCURRENT_DEVICES: usize = 4;

#[derive(Clone, Copy)]
enum Kind {
    Battery,
    Charger,
}

impl Kind {
    fn metrics(self) -> &'static [&'static str] {
        match self {
            Kind::Battery => &["soc_pct", "power_kw", "temp_c"],
            Kind::Charger => &["power_kw", "voltage_v", "temp_c"],
        }
    }
}

/// One commit's worth of telemetry for a device, starting at `start_us`.
fn telemetry(
    schema: &SchemaRef,
    device: &str,
    kind: Kind,
    start_us: i64,
    rng: &mut StdRng,
    state: &mut [f64; 3],
) -> Result<RecordBatch> {
    let samples = COMMIT_SPAN_S / SAMPLE_EVERY_S;
    let metrics = kind.metrics();
    let n = samples as usize * metrics.len();
    let (mut ids, mut ts, mut names, mut values) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..samples {
        let t = start_us + i * SAMPLE_EVERY_S * 1_000_000;
        for (m, metric) in metrics.iter().enumerate() {
            // A bounded random walk per metric looks like real telemetry.
            let (lo, hi, step) = match *metric {
                "soc_pct" => (5.0, 100.0, 0.4),
                "power_kw" => (-50.0, 150.0, 6.0),
                "voltage_v" => (380.0, 420.0, 1.5),
                _ => (15.0, 45.0, 0.3),
            };
            if state[m] == 0.0 {
                state[m] = rng.random_range(lo..hi);
            }
            state[m] = (state[m] + rng.random_range(-step..step)).clamp(lo, hi);
            ids.push(device.to_string());
            ts.push(t);
            names.push(metric.to_string());
            values.push((state[m] * 100.0).round() / 100.0);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
        Arc::new(StringArray::from(names)),
        Arc::new(Float64Array::from(values)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

pub async fn run(
    catalog: &Catalog,
    namespace: &Namespace,
    devices: usize,
    commits: usize,
) -> Result<()> {
    ensure!(
        devices > 0 && commits > 0,
        "--devices and --commits must be at least 1"
    );
    let started = Instant::now();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let hour_us = 3_600_000_000i64;
    let start_us = (now_us / hour_us) * hour_us - commits as i64 * COMMIT_SPAN_S * 1_000_000;

    eprintln!(
        "simulating {devices} devices × {commits} commits into {} …",
        catalog.warehouse().location(&namespace.path())
    );
    let bar = ProgressBar::new((devices * commits) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} commits  {msg}")
            .expect("static template is valid"),
    );
    let schema = schema::default_iot_schema();
    let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &schema)?;
    let definition = TableDefinition {
        schema,
        partition,
        properties: Default::default(),
    };

    let results: Vec<(String, u64, u64)> = stream::iter(0..devices)
        .map(|d| {
            let bar = bar.clone();
            let definition = definition.clone();
            async move {
                let name = format!("dev_{:04}", d + 1);
                let ident = TableIdent::new(namespace.clone(), name.clone())?;
                let kind = if d % 2 == 0 {
                    Kind::Battery
                } else {
                    Kind::Charger
                };
                let mut table = catalog.create_or_load_table(&ident, definition).await?;
                let mut rng = StdRng::seed_from_u64(d as u64);
                let mut state = [0.0; 3];
                let mut rows = 0u64;
                for c in 0..commits {
                    let options = CommitOptions::default();
                    let mut writer = DataWriter::new(&table)?;
                    let batch = telemetry(
                        writer.arrow_schema(),
                        &name,
                        kind,
                        start_us + c as i64 * COMMIT_SPAN_S * 1_000_000,
                        &mut rng,
                        &mut state,
                    )?;
                    rows += batch.num_rows() as u64;
                    writer.write(batch).await?;
                    let files = writer.close().await?;
                    table
                        .append(files, options)
                        .await
                        .with_context(|| format!("commit {} of {ident}", c + 1))?;
                    bar.inc(1);
                    bar.set_message(ident.to_string());
                }
                let version = table.version().0;
                anyhow::Ok((ident.to_string(), rows, version))
            }
        })
        .buffer_unordered(CONCURRENT_DEVICES)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let written: u64 = results.iter().map(|r| r.1).sum();
    let write_time = started.elapsed();

    let mut rows: Vec<Vec<String>> = results
        .iter()
        .take(5)
        .map(|(t, r, v)| vec![t.clone(), r.to_string(), format!("v{v}")])
        .collect();
    if results.len() > 5 {
        rows.push(vec![
            format!("… {} more", results.len() - 5),
            String::new(),
            String::new(),
        ]);
    }
    println!(
        "wrote {written} rows in {} commits to {devices} device tables in {:.1?} ({:.0} commits/s)",
        devices * commits,
        write_time,
        (devices * commits) as f64
            / write_time
                .as_secs_f64()
                .max(Duration::from_millis(1).as_secs_f64())
    );
    print!(
        "{}",
        output::table(&["table", "rows this run", "head version"], &rows)
    );
    read_back(catalog, namespace, start_us, commits).await
}

/// Read everything back through the catalog and SQL, as an analyst would.
#[cfg(feature = "query")]
async fn read_back(
    catalog: &Catalog,
    namespace: &Namespace,
    start_us: i64,
    commits: usize,
) -> Result<()> {
    // The fleet view
    // `all_devices` is every device table of the namespace, with a `device` column.
    let engine = QueryEngine::open(catalog, EngineOptions::default()).await?;
    let tables = catalog.list_tables(namespace).await?;
    let n = tables.len();
    let fleet = format!("{namespace}.all_devices");
    let mut expected_total = 0u64;
    for t in &tables {
        let table = catalog.load_table(t).await?;
        expected_total += table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-records"))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let per_metric = engine
        .sql(&format!(
            "SELECT metric, count(*) AS rows, count(DISTINCT device) AS devices, \
             round(avg(value), 2) AS avg, min(value) AS min, max(value) AS max, \
             min(ts) AS first, max(ts) AS last \
             FROM {fleet} GROUP BY metric ORDER BY metric"
        ))
        .await?;
    let counted = engine
        .sql(&format!("SELECT count(*) AS n FROM {fleet}"))
        .await?;
    let read_back = counted
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
        })
        .map(|a| a.value(0) as u64)
        .unwrap_or(0);
    println!();
    println!("read back through SQL ({n} tables in {fleet}):");
    println!(
        "{}",
        arrow::util::pretty::pretty_format_batches(&per_metric)?
    );
    ensure!(
        read_back == expected_total,
        "read back {read_back} rows but the tables' snapshots record {expected_total}"
    );
    println!("rows read back: {read_back} = rows recorded in the tables' snapshots ✓");
    fleet_queries(&engine, &fleet, start_us, commits).await?;
    if let Some(first) = tables.first() {
        let table = catalog.load_table(first).await?;
        println!();
        println!("a third party opens {first} from its metadata file:");
        println!("  {}", table.metadata_location());
        println!(
            "  e.g. pyiceberg: StaticTable.from_metadata(\"{}\").scan().to_arrow()",
            table.metadata_location()
        );
    }
    Ok(())
}

/// A gateway build (no `query` feature) has no SQL engine to read the fleet back with.
#[cfg(not(feature = "query"))]
async fn read_back(
    _catalog: &Catalog,
    namespace: &Namespace,
    _start_us: i64,
    _commits: usize,
) -> Result<()> {
    println!();
    println!(
        "(gateway build without the query engine: skipping the SQL read-back of {namespace}; `floe describe` and `floe check` still work)"
    );
    Ok(())
}

/// A few fleet questions, with what each query had to read (the pruning at work).
#[cfg(feature = "query")]
async fn fleet_queries(
    engine: &QueryEngine,
    fleet: &str,
    start_us: i64,
    commits: usize,
) -> Result<()> {
    let at = |us: i64| chrono_like(us);
    let last = start_us + (commits as i64 - 1) * COMMIT_SPAN_S * 1_000_000;
    let hour = start_us + 3_600_000_000;
    let queries = [
        (
            "one device, one hour".to_string(),
            format!(
                "SELECT device, metric, round(avg(value), 2) AS avg FROM {fleet} \
                 WHERE device = 'dev_0002' AND ts >= '{}' AND ts < '{}' \
                 GROUP BY device, metric ORDER BY metric",
                at(start_us),
                at(hour)
            ),
        ),
        (
            "top 3 devices by peak power, last two hours".to_string(),
            format!(
                "SELECT device, max(value) AS peak_kw FROM {fleet} \
                 WHERE metric = 'power_kw' AND ts >= '{}' \
                 GROUP BY device ORDER BY peak_kw DESC LIMIT 3",
                at(last)
            ),
        ),
        (
            "the whole fleet".to_string(),
            format!("SELECT count(*) AS rows, round(avg(value), 2) AS avg FROM {fleet}"),
        ),
    ];
    println!();
    println!("fleet queries (tables, files and bytes read of those in scope):");
    let mut rows = Vec::new();
    for (what, sql) in &queries {
        let (_, scans) = engine.explain(sql).await?;
        let started = Instant::now();
        let result = engine.sql(sql).await?;
        let elapsed = started.elapsed();
        let result_rows: usize = result.iter().map(|b| b.num_rows()).sum();
        for s in scans {
            rows.push(vec![
                what.clone(),
                format!("{}/{}", s.tables_scanned, s.tables_total),
                format!(
                    "{}/{}",
                    s.files_planned(),
                    s.files_total.map_or("?".into(), |v| v.to_string())
                ),
                format!(
                    "{}/{}",
                    output::bytes(s.bytes_planned()),
                    s.bytes_total.map_or("?".into(), output::bytes)
                ),
                result_rows.to_string(),
                format!("{:.0?}", elapsed),
            ]);
        }
    }
    print!(
        "{}",
        output::table(
            &["query", "tables", "files", "bytes", "result rows", "time"],
            &rows
        )
    );
    println!("see any plan with: floe sql --explain \"{}\"", queries[0].1);
    Ok(())
}

/// An RFC 3339 UTC timestamp for microseconds since the epoch.
#[cfg(feature = "query")]
fn chrono_like(us: i64) -> String {
    arrow::array::TimestampMicrosecondArray::from(vec![us])
        .with_timezone("+00:00")
        .value_as_datetime(0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}
