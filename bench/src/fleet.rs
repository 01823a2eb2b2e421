//! `floe-bench fleet`: Floe beside what users would pick instead, on the same generated IoT
//! data, in one run. Every case alternates Floe and its peers, repeats, and prints medians
//! and Floe/peer ratios.
//!
//! Peers: pyiceberg 0.12 with its SQLite catalog (commits; a one-table scan), DataFusion
//! over the same Parquet files as a listing table, DuckDB's `read_parquet` over them, and
//! arrow-rs's own Parquet writer (ingest). The Python peers run from the venv
//! `scripts/setup-bench.sh` creates; they time only their work, not Python's start-up.
//! The memory case measures whole `floe` processes (append, sync, sql): the product binary,
//! and the gateway build when given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;
use futures::stream::{self, StreamExt, TryStreamExt};

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine};
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{CommitOptions, DataWriter, Table, TableDefinition, TableIdent, Warehouse};

use crate::counting::Counting;
use crate::report;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    name: &'static str,
    devices: usize,
    days: i64,
    rows_per_day: usize,
    commits: usize,
    ingest_rows: usize,
}

/// `small` (a few minutes on 2 cores), `medium`, `large`.
pub fn scale(name: &str) -> Result<Scale> {
    Ok(match name {
        "small" => Scale {
            name: "small",
            devices: 100,
            days: 30,
            rows_per_day: 96,
            commits: 100,
            ingest_rows: 1_000_000,
        },
        "medium" => Scale {
            name: "medium",
            devices: 100,
            days: 30,
            rows_per_day: 1440,
            commits: 300,
            ingest_rows: 3_000_000,
        },
        "large" => Scale {
            name: "large",
            devices: 300,
            days: 30,
            rows_per_day: 2880,
            commits: 1000,
            ingest_rows: 10_000_000,
        },
        other => bail!("--scale '{other}': expected small, medium or large"),
    })
}

/// Options of `floe-bench fleet`.
pub struct FleetBench {
    /// Size of the run.
    pub scale: Scale,
    /// Repeats per figure.
    pub repeats: usize,
    /// Working folder (data sets are kept and reused between runs of the same scale).
    pub dir: PathBuf,
    /// The peers' python.
    pub python: PathBuf,
    /// An S3 prefix for the commit case (both Floe and pyiceberg), if any.
    pub s3: Option<String>,
    /// Cases to run (all when empty).
    pub cases: Vec<String>,
    /// The `floe` binary the memory case runs.
    pub floe_bin: PathBuf,
    /// The gateway build, measured beside `floe_bin` in the memory case.
    pub gateway_bin: Option<PathBuf>,
}

const DAY0_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const DAY_US: i64 = 86_400_000_000;
const PROBE_DEVICE: &str = "dev_0042";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row of the report.
struct Line {
    case: String,
    system: String,
    median_ms: f64,
    detail: String,
}

/// Run the cases and print the table.
pub async fn fleet(b: FleetBench) -> Result<()> {
    ensure!(b.repeats > 0, "--repeats must be at least 1");
    ensure!(
        b.python.exists(),
        "--python {}: not found (scripts/setup-bench.sh creates the peers' venv)",
        b.python.display()
    );
    std::fs::create_dir_all(&b.dir).with_context(|| format!("create {}", b.dir.display()))?;
    let want = |c: &str| b.cases.is_empty() || b.cases.iter().any(|x| x == c);
    ensure!(
        !want("memory") || b.floe_bin.exists(),
        "--floe-bin {}: not found (the memory case runs it; build it with cargo build --release -p floe-cli)",
        b.floe_bin.display()
    );
    eprintln!(
        "floe-bench fleet --scale {}: {} devices x {} days x {} rows/day, {} repeats, in {}",
        b.scale.name,
        b.scale.devices,
        b.scale.days,
        b.scale.rows_per_day,
        b.repeats,
        b.dir.display()
    );
    let mut lines = Vec::new();
    if want("commits") {
        let dir = b.dir.join("commits");
        let target = format!("file://{}", dir.display());
        lines.extend(commits(&b, &target, "file").await?);
        if let Some(s3) = &b.s3 {
            lines.extend(commits(&b, s3, "s3").await?);
        }
    }
    if want("query") || want("scan") || want("memory") {
        let wh_path = fleet_dataset(&b).await?;
        if want("query") {
            lines.extend(selective(&b, &wh_path).await?);
        }
        if want("scan") {
            lines.extend(full_scan(&b, &wh_path).await?);
        }
        if want("memory") {
            lines.extend(memory_query(&b, &wh_path)?);
        }
    }
    if want("ingest") || want("memory") {
        let input = b
            .dir
            .join(format!("ingest-{}.parquet", b.scale.ingest_rows));
        if want("ingest") {
            lines.extend(ingest(&b, &input).await?);
        }
        if want("memory") {
            lines.extend(memory_append(&b, &input).await?);
        }
    }
    print_report(&lines);
    Ok(())
}

fn print_report(lines: &[Line]) {
    let mut by_case: BTreeMap<&str, f64> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.system.starts_with("floe")) {
        by_case.entry(l.case.as_str()).or_insert(l.median_ms);
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let ratio = match by_case.get(l.case.as_str()) {
                Some(f) if !l.system.starts_with("floe") && l.median_ms > 0.0 => {
                    format!("{:.2}x", f / l.median_ms)
                }
                _ => String::new(),
            };
            vec![
                l.case.clone(),
                l.system.clone(),
                format!("{:.1}", l.median_ms),
                ratio,
                l.detail.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        report::table(
            &["case", "system", "median ms", "floe/peer time", "detail"],
            &rows
        )
    );
}

fn iot_definition() -> Result<TableDefinition> {
    let s = schema::default_iot_schema();
    Ok(TableDefinition {
        partition: schema::parse_partition_spec(DEFAULT_PARTITION, &s)?,
        schema: s,
        properties: Default::default(),
    })
}

/// `rows` readings of `device` spread over one day: alternating metrics, pseudo-random values.
fn day_batch(schema: &SchemaRef, device: &str, day: i64, rows: usize) -> Result<RecordBatch> {
    let step = DAY_US / rows as i64;
    let seed = device.bytes().fold(day as u64, |h, b| {
        h.wrapping_mul(0x100_0000_01b3).wrapping_add(b as u64)
    });
    let ts: Vec<i64> = (0..rows as i64)
        .map(|i| DAY0_US + day * DAY_US + i * step)
        .collect();
    let metric: Vec<&str> = (0..rows)
        .map(|i| if i % 2 == 0 { "power_kw" } else { "temp_c" })
        .collect();
    let value: Vec<f64> = (0..rows as u64)
        .map(|i| {
            let h =
                (seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (h >> 40) as f64 / 1000.0
        })
        .collect();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![device; rows])),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
            Arc::new(StringArray::from(metric)),
            Arc::new(Float64Array::from(value)),
        ],
    )?)
}

async fn append_batch(table: &mut Table, batch: RecordBatch) -> Result<()> {
    let mut w = DataWriter::new(table)?;
    w.write(batch).await?;
    let files = w.close().await?;
    table.append(files, CommitOptions::default()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Commit throughput

async fn commits(b: &FleetBench, target: &str, backend: &str) -> Result<Vec<Line>> {
    let n = b.scale.commits;
    let rows = 1000;
    let case = format!("commits ({backend}, {n} x {rows} rows)");
    let mut floe_s = Vec::new();
    let mut requests = Vec::new();
    let mut peer_s = Vec::new();
    for r in 0..b.repeats {
        let run = format!(
            "{}/floe-{}-{r}",
            target.trim_end_matches('/'),
            std::process::id()
        );
        let plain = Warehouse::open(&run)?;
        let counting = Arc::new(Counting::new(plain.store().clone()));
        let wh = Warehouse::with_store(&run, counting.clone())?;
        let ident = TableIdent::parse("bench.commits")?;
        let mut t = Table::create(&wh, &ident, iot_definition()?).await?;
        let schema = DataWriter::new(&t)?.arrow_schema().clone();
        let batches: Vec<RecordBatch> = (0..n)
            .map(|c| day_batch(&schema, "dev_0001", (c / 100) as i64, rows))
            .collect::<Result<_>>()?;
        let before = counting.total();
        let t0 = Instant::now();
        for batch in batches {
            append_batch(&mut t, batch).await?;
        }
        floe_s.push(t0.elapsed().as_secs_f64());
        requests.push((counting.total() - before) as f64 / n as f64);

        let peer_dir = format!(
            "{}/pyiceberg-{}-{r}",
            target.trim_end_matches('/'),
            std::process::id()
        );
        let out = python(
            b,
            &["commits", &peer_dir, &n.to_string(), &rows.to_string()],
        )?;
        peer_s.push(out["seconds"].as_f64().context("pyiceberg seconds")?);
        eprintln!(
            "  {case} repeat {r}: floe {:.2}s, pyiceberg {:.2}s",
            floe_s[r], peer_s[r]
        );
    }
    let f = median(floe_s);
    let p = median(peer_s);
    Ok(vec![
        Line {
            case: case.clone(),
            system: "floe".into(),
            median_ms: f * 1000.0,
            detail: format!(
                "{:.0} commits/s, {:.2} requests/commit, {:.1}x pyiceberg's commits/s",
                n as f64 / f,
                median(requests),
                p / f
            ),
        },
        Line {
            case,
            system: "pyiceberg (sqlite catalog)".into(),
            median_ms: p * 1000.0,
            detail: format!("{:.0} commits/s", n as f64 / p),
        },
    ])
}

// ---------------------------------------------------------------------------------------
// The fleet data set for cases 2, 3 and 5

async fn fleet_dataset(b: &FleetBench) -> Result<PathBuf> {
    let path = b.dir.join(format!("fleet-{}", b.scale.name));
    let done = path.join("complete");
    if done.exists() {
        eprintln!("reusing the {} fleet in {}", b.scale.name, path.display());
        return Ok(path);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path)?;
    let wh = Warehouse::open(path.to_str().context("non-UTF-8 path")?)?;
    let catalog = Catalog::new(wh);
    let t0 = Instant::now();
    let s = b.scale;
    stream::iter(0..s.devices)
        .map(|d| {
            let catalog = catalog.clone();
            async move {
                let name = format!("dev_{d:04}");
                let ident = TableIdent::parse(&format!("fleet.{name}"))?;
                let mut t = catalog.create_table(&ident, iot_definition()?).await?;
                let schema = DataWriter::new(&t)?.arrow_schema().clone();
                for day in 0..s.days {
                    append_batch(&mut t, day_batch(&schema, &name, day, s.rows_per_day)?).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await?;
    std::fs::write(&done, s.name)?;
    eprintln!(
        "wrote the fleet: {} tables, {} commits, {} rows in {:.1}s",
        s.devices,
        s.devices as i64 * s.days,
        s.devices as i64 * s.days * s.rows_per_day as i64,
        t0.elapsed().as_secs_f64()
    );
    Ok(path)
}

fn parquet_glob(wh: &Path) -> String {
    format!("{}/fleet/*/data/*/*.parquet", wh.display())
}

async fn listing_context(wh: &Path) -> Result<datafusion::prelude::SessionContext> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::ListingOptions;
    // The files sit in per-table, per-partition folders: list them all.
    let config = datafusion::prelude::SessionConfig::new().set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    ctx.register_listing_table(
        "readings",
        format!("{}/fleet/", wh.display()),
        options,
        None,
        None,
    )
    .await?;
    Ok(ctx)
}

async fn floe_query(wh: &Path, sql: &str) -> Result<(f64, Vec<String>, String)> {
    let catalog = Catalog::new(Warehouse::open(wh.to_str().context("non-UTF-8 path")?)?);
    let engine = QueryEngine::open(&catalog, EngineOptions::default()).await?;
    let t0 = Instant::now();
    let batches = engine.sql(sql).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (_, scans) = engine.explain(sql).await?;
    let detail = scans
        .iter()
        .map(|s| {
            format!(
                "tables {}/{}, files {}/{}, {} of {}",
                s.tables_scanned,
                s.tables_total,
                s.files_planned(),
                s.files_total.map_or("?".into(), |v| v.to_string()),
                report::bytes(s.bytes_planned()),
                s.bytes_total.map_or("?".into(), report::bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok((secs, result_strings(&batches)?, detail))
}

async fn listing_query(wh: &Path, sql: &str) -> Result<(f64, Vec<String>)> {
    let ctx = listing_context(wh).await?;
    let t0 = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((t0.elapsed().as_secs_f64(), result_strings(&batches)?))
}

fn result_strings(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            for c in b.columns() {
                out.push(arrow::util::display::array_value_to_string(c, row)?);
            }
        }
    }
    Ok(out)
}

/// Values agree to 6 significant digits (engines sum floats in different orders).
fn same_answer(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                    _ => false,
                }
        })
}

fn hour_window() -> (String, String) {
    let from = "2026-01-15T10:00:00+00:00".to_string();
    let to = "2026-01-15T11:00:00+00:00".to_string();
    (from, to)
}

// ---------------------------------------------------------------------------------------
// 2. Selective query

async fn selective(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
    let (from, to) = hour_window();
    let case = format!(
        "selective: one device, one hour of {} devices x {} days",
        b.scale.devices, b.scale.days
    );
    let floe_sql = format!(
        "SELECT count(*), avg(value) FROM fleet.all_devices \
         WHERE device = '{PROBE_DEVICE}' AND ts >= TIMESTAMP '{from}' AND ts < TIMESTAMP '{to}'"
    );
    let where_ = format!(
        "device_id = '{PROBE_DEVICE}' AND ts >= TIMESTAMP '{from}' AND ts < TIMESTAMP '{to}'"
    );
    let listing_sql = format!("SELECT count(*), avg(value) FROM readings WHERE {where_}");
    let duck_sql = format!(
        "SELECT count(*), avg(value) FROM read_parquet('{}') WHERE device_id = '{PROBE_DEVICE}' \
         AND ts >= TIMESTAMPTZ '{from}' AND ts < TIMESTAMPTZ '{to}'",
        parquet_glob(wh)
    );
    let metadata = latest_metadata(wh, PROBE_DEVICE)?;
    compare(
        b,
        wh,
        &case,
        &floe_sql,
        &listing_sql,
        &duck_sql,
        Some((&metadata, &from, &to)),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// 3. Full-scan aggregate

async fn full_scan(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
    let case = "full scan: avg, min, max per metric over the fleet".to_string();
    let q = |from: &str| {
        format!(
            "SELECT metric, count(*), avg(value), min(value), max(value) FROM {from} \
             GROUP BY metric ORDER BY metric"
        )
    };
    let duck = q(&format!("read_parquet('{}')", parquet_glob(wh)));
    compare(
        b,
        wh,
        &case,
        &q("fleet.all_devices"),
        &q("readings"),
        &duck,
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn compare(
    b: &FleetBench,
    wh: &Path,
    case: &str,
    floe_sql: &str,
    listing_sql: &str,
    duck_sql: &str,
    pyiceberg: Option<(&str, &str, &str)>,
) -> Result<Vec<Line>> {
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut floe_detail = String::new();
    let mut pyi_detail = String::new();
    for r in 0..b.repeats {
        let (t, want, detail) = floe_query(wh, floe_sql).await?;
        times[0].push(t);
        floe_detail = detail;
        let (t, got) = listing_query(wh, listing_sql).await?;
        ensure!(
            same_answer(&want, &got),
            "{case}: DataFusion listing answered {got:?}, Floe {want:?}"
        );
        times[1].push(t);
        let out = python(b, &["duckdb", duck_sql])?;
        let got: Vec<String> = out["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        ensure!(
            same_answer(&want, &got),
            "{case}: DuckDB answered {got:?}, Floe {want:?}"
        );
        times[2].push(out["seconds"].as_f64().context("duckdb seconds")?);
        if let Some((metadata, from, to)) = pyiceberg {
            let out = python(b, &["pyiceberg", metadata, PROBE_DEVICE, from, to])?;
            let got: Vec<String> = out["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect();
            ensure!(
                same_answer(&want, &got),
                "{case}: pyiceberg answered {got:?}, Floe {want:?}"
            );
            times[3].push(out["seconds"].as_f64().context("pyiceberg seconds")?);
            pyi_detail = format!(
                "one table's scan; files {}, {}",
                out["files"],
                report::bytes(out["bytes"].as_u64().unwrap_or(0))
            );
        }
        eprintln!("  {case} repeat {r}: done");
    }
    let mut lines = vec![
        Line {
            case: case.into(),
            system: "floe".into(),
            median_ms: median(times[0].clone()) * 1000.0,
            detail: floe_detail,
        },
        Line {
            case: case.into(),
            system: "datafusion listing table".into(),
            median_ms: median(times[1].clone()) * 1000.0,
            detail: "same files, registered untimed".into(),
        },
        Line {
            case: case.into(),
            system: "duckdb read_parquet".into(),
            median_ms: median(times[2].clone()) * 1000.0,
            detail: "same files".into(),
        },
    ];
    if !times[3].is_empty() {
        lines.push(Line {
            case: case.into(),
            system: "pyiceberg scan to arrow".into(),
            median_ms: median(times[3].clone()) * 1000.0,
            detail: pyi_detail,
        });
    }
    Ok(lines)
}

fn latest_metadata(wh: &Path, device: &str) -> Result<String> {
    let dir = wh.join("fleet").join(device).join("metadata");
    let hint = std::fs::read_to_string(dir.join("version-hint.text"))
        .with_context(|| format!("read {}", dir.display()))?;
    Ok(format!(
        "file://{}/v{}.metadata.json",
        dir.display(),
        hint.trim()
    ))
}

// ---------------------------------------------------------------------------------------
// 4. Ingest

async fn ingest(b: &FleetBench, input: &Path) -> Result<Vec<Line>> {
    let n = b.scale.ingest_rows;
    let case = format!("ingest: {n} rows into Parquet");
    let mut floe_s = Vec::new();
    let mut peer_s = Vec::new();
    let mut sizes = (0u64, 0u64);
    for r in 0..b.repeats {
        let dir = b
            .dir
            .join(format!("ingest-floe-{}-{r}", std::process::id()));
        let wh = Warehouse::open(dir.to_str().context("non-UTF-8 path")?)?;
        let mut t =
            Table::create(&wh, &TableIdent::parse("bench.ingest")?, iot_definition()?).await?;
        let schema = DataWriter::new(&t)?.arrow_schema().clone();
        let batches = ingest_batches(&schema, n)?;
        let t0 = Instant::now();
        let mut w = DataWriter::new(&t)?;
        for batch in batches.clone() {
            w.write(batch).await?;
        }
        let files = w.close().await?;
        sizes.0 = files.iter().map(|f| f.file_size_in_bytes()).sum();
        t.append(files, CommitOptions::default()).await?;
        floe_s.push(t0.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dir).ok();

        // arrow-rs's writer, same settings as Floe's (zstd, 64Ki-row groups, 20,000-row pages).
        let t0 = Instant::now();
        let file = std::fs::File::create(input)?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_max_row_group_row_count(Some(floe_table_format::writer::ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(20_000)
            .set_write_batch_size(1024)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        for batch in &batches {
            w.write(batch)?;
        }
        w.close()?;
        peer_s.push(t0.elapsed().as_secs_f64());
        sizes.1 = std::fs::metadata(input)?.len();
        eprintln!(
            "  {case} repeat {r}: floe {:.2}s, arrow-rs {:.2}s",
            floe_s[r], peer_s[r]
        );
    }
    let (f, p) = (median(floe_s), median(peer_s));
    Ok(vec![
        Line {
            case: case.clone(),
            system: "floe (write + commit)".into(),
            median_ms: f * 1000.0,
            detail: format!("{:.0} rows/s, {}", n as f64 / f, report::bytes(sizes.0)),
        },
        Line {
            case,
            system: "arrow-rs ArrowWriter".into(),
            median_ms: p * 1000.0,
            detail: format!("{:.0} rows/s, {}", n as f64 / p, report::bytes(sizes.1)),
        },
    ])
}

/// `n` rows of one device within one day (one partition), in 8,192-row batches.
fn ingest_batches(schema: &SchemaRef, n: usize) -> Result<Vec<RecordBatch>> {
    let all = day_batch(schema, "dev_ingest", 0, n)?;
    Ok((0..n)
        .step_by(8192)
        .map(|o| all.slice(o, 8192.min(n - o)))
        .collect())
}

// ---------------------------------------------------------------------------------------
// 5. Memory

async fn memory_append(b: &FleetBench, input: &Path) -> Result<Vec<Line>> {
    if !input.exists() {
        // The ingest case writes it; without that case, write it here.
        let tmp = Table::create(
            &Warehouse::open(&format!("memory://bench-{}", std::process::id()))?,
            &TableIdent::parse("bench.schema")?,
            iot_definition()?,
        )
        .await?;
        let schema = DataWriter::new(&tmp)?.arrow_schema().clone();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(input)?,
            schema.clone(),
            None,
        )?;
        for batch in ingest_batches(&schema, b.scale.ingest_rows)? {
            w.write(&batch)?;
        }
        w.close()?;
    }
    // The gateway's two jobs: append the rows to a local table, then project that table
    // into the cloud warehouse (a second local folder, and S3 when given).
    let mut binaries = vec![("floe".to_string(), b.floe_bin.clone())];
    if let Some(g) = &b.gateway_bin {
        ensure!(g.exists(), "--gateway-bin {}: not found", g.display());
        binaries.push(("floe (gateway build)".to_string(), g.clone()));
    }
    let mut targets = vec![("file", None)];
    if let Some(s3) = &b.s3 {
        targets.push(("s3", Some(s3.trim_end_matches('/').to_string())));
    }
    let goal = |peak: f64| {
        format!(
            "peak RSS {} (goal at most 32 MiB: {})",
            report::bytes(peak as u64),
            if peak <= 32.0 * 1024.0 * 1024.0 {
                "met"
            } else {
                "MISSED"
            }
        )
    };
    let pid = std::process::id();
    let mut append_lines = Vec::new();
    let mut sync_lines = Vec::new();
    for (i, (system, bin)) in binaries.iter().enumerate() {
        let mut append = Samples::default();
        let mut sync: Vec<Samples> = vec![Samples::default(); targets.len()];
        for r in 0..b.repeats {
            let wh = b.dir.join(format!("mem-append-{pid}-{r}"));
            append.add(peak_rss(
                Command::new(bin)
                    .arg("--warehouse")
                    .arg(&wh)
                    .args(["append", "bench.mem", "--create"])
                    .arg(input),
            )?);
            let cloud_dir = b.dir.join(format!("mem-cloud-{pid}-{r}"));
            for ((_, base), samples) in targets.iter().zip(sync.iter_mut()) {
                let to = match base {
                    Some(base) => format!("{base}/mem-sync-{pid}-{i}-{r}"),
                    None => format!("file://{}", cloud_dir.display()),
                };
                samples.add(peak_rss(
                    Command::new(bin)
                        .args(["sync", "--json", "--from"])
                        .arg(format!("file://{}", wh.display()))
                        .args(["--to", &to, "bench.mem"]),
                )?);
            }
            std::fs::remove_dir_all(&cloud_dir).ok();
            std::fs::remove_dir_all(&wh).ok();
        }
        append_lines.push(Line {
            case: format!("memory: floe append of {} rows", b.scale.ingest_rows),
            system: system.clone(),
            median_ms: append.median_secs() * 1000.0,
            detail: goal(append.median_rss()),
        });
        for ((kind, _), samples) in targets.iter().zip(sync) {
            sync_lines.push(Line {
                case: format!(
                    "memory: floe sync of that {}-row table to {kind}",
                    b.scale.ingest_rows
                ),
                system: system.clone(),
                median_ms: samples.median_secs() * 1000.0,
                detail: goal(samples.median_rss()),
            });
        }
    }
    sync_lines.sort_by(|a, b| a.case.cmp(&b.case));
    append_lines.extend(sync_lines);
    Ok(append_lines)
}

/// Peak RSS and wall time of repeated runs of one command.
#[derive(Default, Clone)]
struct Samples {
    rss: Vec<f64>,
    secs: Vec<f64>,
}

impl Samples {
    fn add(&mut self, (peak, secs): (u64, f64)) {
        self.rss.push(peak as f64);
        self.secs.push(secs);
    }
    fn median_rss(&self) -> f64 {
        median(self.rss.clone())
    }
    fn median_secs(&self) -> f64 {
        median(self.secs.clone())
    }
}

fn memory_query(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
    // As many groups as readings: the hash table is larger than the limit.
    let sql = "SELECT device, ts, count(*) AS n, sum(value) AS s FROM fleet.all_devices \
               GROUP BY device, ts ORDER BY s DESC LIMIT 3";
    let mut lines = Vec::new();
    for limit in [Some("64MB"), None] {
        let mut rss = Vec::new();
        let mut secs = Vec::new();
        for _ in 0..b.repeats {
            let mut cmd = Command::new(&b.floe_bin);
            cmd.arg("--warehouse")
                .arg(wh)
                .args(["sql", "--format", "csv"]);
            if let Some(l) = limit {
                cmd.args(["--memory-limit", l]);
            }
            cmd.arg(sql);
            let (peak, t) = peak_rss(&mut cmd)?;
            rss.push(peak as f64);
            secs.push(t);
        }
        lines.push(Line {
            case: "memory: GROUP BY every reading".into(),
            system: match limit {
                Some(l) => format!("floe sql --memory-limit {l}"),
                None => "floe sql, no limit".into(),
            },
            median_ms: median(secs) * 1000.0,
            detail: format!("completed; peak RSS {}", report::bytes(median(rss) as u64)),
        });
    }
    Ok(lines)
}

/// Run a child to completion, polling its peak resident set (VmHWM) from /proc.
fn peak_rss(cmd: &mut Command) -> Result<(u64, f64)> {
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("start floe")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
        }
        if let Some(status) = child.try_wait()? {
            let secs = t0.elapsed().as_secs_f64();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err).ok();
                }
                bail!("{cmd:?} failed: {err}");
            }
            return Ok((peak, secs));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn python(b: &FleetBench, args: &[&str]) -> Result<serde_json::Value> {
    let script = b.dir.join("bench_peers.py");
    std::fs::write(&script, PEERS_SCRIPT)?;
    let out = Command::new(&b.python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("run {}", b.python.display()))?;
    ensure!(
        out.status.success(),
        "peer {} failed: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("peer {} printed no JSON", args[0]))
}

/// The peers' script, compiled in so the binary runs from anywhere.
const PEERS_SCRIPT: &str = include_str!("../../scripts/bench_peers.py");
