//! Case 5 of `floe-bench fleet`: peak memory of whole `floe` processes (append, sync, sql),
//! and of pyiceberg appending the same file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use floe_table_format::{DataWriter, Table, TableIdent, Warehouse};

use super::ingest::ingest_batches;
use super::{iot_definition, median, FleetBench, Line, PEERS_SCRIPT};
use crate::report;

pub(super) async fn memory_append(b: &FleetBench, input: &Path) -> Result<Vec<Line>> {
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
    // Issue 19's goal is for the gateway build; the full binary carries DataFusion.
    let goal = |peak: f64, gateway: bool| {
        let shown = format!("peak RSS {}", report::bytes(peak as u64));
        if !gateway {
            return shown;
        }
        let met = peak <= GOAL_MIB * 1024.0 * 1024.0;
        format!(
            "{shown} (goal at most {GOAL_MIB} MiB: {})",
            if met { "met" } else { "MISSED" }
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
            detail: goal(append.median_rss(), i > 0),
        });
        for ((kind, _), samples) in targets.iter().zip(sync) {
            sync_lines.push(Line {
                case: format!(
                    "memory: floe sync of that {}-row table to {kind}",
                    b.scale.ingest_rows
                ),
                system: system.clone(),
                median_ms: samples.median_secs() * 1000.0,
                detail: goal(samples.median_rss(), i > 0),
            });
        }
    }
    // The peer: pyiceberg appending the same file to a fresh table (its whole process).
    let script = b.dir.join("bench_peers.py");
    std::fs::write(&script, PEERS_SCRIPT)?;
    let mut peer = Samples::default();
    for r in 0..b.repeats {
        let wh = b.dir.join(format!("mem-pyiceberg-{pid}-{r}"));
        peer.add(peak_rss(
            Command::new(&b.python)
                .arg(&script)
                .arg("append")
                .arg(format!("file://{}", wh.display()))
                .arg(input),
        )?);
        std::fs::remove_dir_all(&wh).ok();
    }
    append_lines.push(Line {
        case: format!("memory: floe append of {} rows", b.scale.ingest_rows),
        system: "pyiceberg table.append (sqlite catalog)".into(),
        median_ms: peer.median_secs() * 1000.0,
        detail: format!("peak RSS {}", report::bytes(peer.median_rss() as u64)),
    });
    sync_lines.sort_by(|a, b| a.case.cmp(&b.case));
    append_lines.extend(sync_lines);
    Ok(append_lines)
}

/// Issue 19's goal for the gateway build's append and sync.
const GOAL_MIB: f64 = 16.0;

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

pub(super) fn memory_query(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
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
