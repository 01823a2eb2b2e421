//! Cases 2 and 3 of `floe-bench fleet`: a selective and a full-scan query, Floe against a
//! DataFusion listing table, DuckDB and pyiceberg over the same Parquet files.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use arrow::array::RecordBatch;

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine, ScanOptions};
use floe_table_format::Warehouse;

use super::{median, python, FleetBench, Line};
use crate::report;

/// The device the selective query reads: dev_0042, or the last of a smaller fleet.
fn probe_device(devices: usize) -> String {
    format!("dev_{:04}", 42.min(devices.saturating_sub(1)))
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

/// Run `sql` through Floe, reading with DataFusion's Parquet scan (`native`) or with
/// iceberg's reader alone.
async fn floe_query(wh: &Path, sql: &str, native: bool) -> Result<(f64, Vec<String>, String)> {
    let catalog = Catalog::new(Warehouse::open(wh.to_str().context("non-UTF-8 path")?)?);
    let options = EngineOptions {
        scan: ScanOptions {
            native,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = QueryEngine::open(&catalog, options).await?;
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

/// 10:00-11:00 of the fleet's middle day (the fleet starts 2026-01-01).
fn hour_window(days: i64) -> (String, String) {
    let day = 1 + days / 2;
    let from = format!("2026-01-{day:02}T10:00:00+00:00");
    let to = format!("2026-01-{day:02}T11:00:00+00:00");
    (from, to)
}

// ---------------------------------------------------------------------------------------
// 2. Selective query

pub(super) async fn selective(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
    let (from, to) = hour_window(b.scale.days);
    let probe = probe_device(b.scale.devices);
    let probe = probe.as_str();
    let case = format!(
        "selective: one device, one hour of {} devices x {} days",
        b.scale.devices, b.scale.days
    );
    let floe_sql = format!(
        "SELECT count(*), avg(value) FROM fleet.all_devices \
         WHERE device = '{probe}' AND ts >= TIMESTAMP '{from}' AND ts < TIMESTAMP '{to}'"
    );
    let where_ =
        format!("device_id = '{probe}' AND ts >= TIMESTAMP '{from}' AND ts < TIMESTAMP '{to}'");
    let listing_sql = format!("SELECT count(*), avg(value) FROM readings WHERE {where_}");
    let duck_sql = format!(
        "SELECT count(*), avg(value) FROM read_parquet('{}') WHERE device_id = '{probe}' \
         AND ts >= TIMESTAMPTZ '{from}' AND ts < TIMESTAMPTZ '{to}'",
        parquet_glob(wh)
    );
    let metadata = latest_metadata(wh, probe)?;
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

pub(super) async fn full_scan(b: &FleetBench, wh: &Path) -> Result<Vec<Line>> {
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
    let mut times: [Vec<f64>; 5] = Default::default();
    let mut floe_detail = String::new();
    let mut pyi_detail = String::new();
    for r in 0..b.repeats {
        let (t, want, detail) = floe_query(wh, floe_sql, true).await?;
        times[0].push(t);
        floe_detail = detail;
        let (t, got, _) = floe_query(wh, floe_sql, false).await?;
        ensure!(
            same_answer(&want, &got),
            "{case}: Floe with iceberg's reader answered {got:?}, with the native scan {want:?}"
        );
        times[4].push(t);
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
            let probe = probe_device(b.scale.devices);
            let out = python(b, &["pyiceberg", metadata, &probe, from, to])?;
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
            system: "floe (iceberg reader)".into(),
            median_ms: median(times[4].clone()) * 1000.0,
            detail: "every file by iceberg's ArrowReader (before the native scan)".into(),
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
