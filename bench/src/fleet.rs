//! `floe-bench fleet`: Floe beside what users would pick instead, on the same generated IoT
//! data, in one run. Every case alternates Floe and its peers, repeats, and prints medians
//! and Floe/peer ratios.
//!
//! Peers: pyiceberg 0.12 with its SQLite catalog (commits; a one-table scan), DataFusion
//! over the same Parquet files as a listing table, DuckDB's `read_parquet` over them, and
//! arrow-rs's own Parquet writer (ingest). The Python peers run from the venv
//! `scripts/setup-bench.sh` creates; they time only their work, not Python's start-up.
//! The memory case measures whole `floe` processes (append, sync, sql): the product binary,
//! and the gateway build when given, beside pyiceberg's whole process appending the same file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;

use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{CommitOptions, DataWriter, Table, TableDefinition};

use crate::report;

mod commits;
mod dataset;
mod ingest;
mod memory;
mod query;
mod sweep;

use commits::commits;
use dataset::fleet_dataset;
use ingest::ingest;
use memory::{memory_append, memory_query};
use query::{full_scan, selective};

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

/// `small` (a few minutes on 2 cores; many tiny files), `small-days` (one file of 5,760
/// readings per device-day), `medium`, `large`.
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
        // The second data shape: one file per device-day of a reading every 15 s.
        "small-days" => Scale {
            name: "small-days",
            devices: 20,
            days: 14,
            rows_per_day: 5760,
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
        other => bail!("--scale '{other}': expected small, small-days, medium or large"),
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
    /// Fleet sizes of the sweep case.
    pub sweep_sizes: Vec<usize>,
}

const DAY0_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const DAY_US: i64 = 86_400_000_000;

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

impl Line {
    fn new(case: String, system: &str, median_ms: f64, detail: String) -> Self {
        Self {
            case,
            system: system.to_string(),
            median_ms,
            detail,
        }
    }
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
    // The sweep creates fleets of up to 10,000 tables: only when asked for.
    if b.cases.iter().any(|c| c == "sweep") {
        let target = format!("file://{}", b.dir.join("sweep").display());
        lines.extend(sweep::sweep(&b, &target, "file").await?);
        if let Some(s3) = &b.s3 {
            lines.extend(sweep::sweep(&b, s3, "s3").await?);
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
