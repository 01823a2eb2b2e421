//! The fleet-size sweep of `floe-bench fleet --cases sweep`: planning as the fleet grows.
//!
//! For each size (100, 1,000 and 10,000 device tables of one small file each, by default)
//! on each backend (the local folder, and S3 with `--s3`), with a fresh session per query
//! as `floe sql` has:
//! - a one-table query, `fleet.dev_00042`;
//! - a one-device query through `all_devices`;
//! - a fleet-wide aggregate over the last day;
//! - the namespace listing, beside a raw paginated LIST of the same prefix.
//!
//! The report prints each figure and its growth from the smallest size.

use std::time::Instant;

use anyhow::{Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine};
use floe_table_format::{DataWriter, Namespace, TableIdent, Warehouse};

use super::{append_batch, day_batch, iot_definition, median, FleetBench, Line};

/// Readings per table (one file).
const ROWS: usize = 96;
const PROBE: usize = 42;

/// A fleet of `n` tables `sweep.dev_NNNNN` under `url`, created once (a `complete` marker
/// object records that it is whole).
async fn sweep_fleet(url: &str, n: usize) -> Result<Catalog> {
    let wh = Warehouse::open(url)?;
    let catalog = Catalog::new(wh.clone());
    let done = object_store::path::Path::from(format!(
        "{}/sweep-complete",
        wh.object_path(url)?.as_ref().trim_end_matches('/')
    ));
    use object_store::ObjectStoreExt;
    if wh.store().head(&done).await.is_ok() {
        eprintln!("reusing the sweep fleet of {n} tables in {url}");
        return Ok(catalog);
    }
    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|d| {
            let catalog = catalog.clone();
            async move {
                let name = format!("dev_{d:05}");
                let ident = TableIdent::parse(&format!("sweep.{name}"))?;
                let mut t = catalog
                    .create_or_load_table(&ident, iot_definition()?)
                    .await?;
                if t.metadata().current_snapshot().is_none() {
                    let schema = DataWriter::new(&t)?.arrow_schema().clone();
                    append_batch(&mut t, day_batch(&schema, &name, 0, ROWS)?).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    wh.store()
        .put(&done, object_store::PutPayload::default())
        .await
        .context("mark the sweep fleet complete")?;
    eprintln!(
        "created the sweep fleet of {n} tables in {url} in {:.0?}",
        t0.elapsed()
    );
    Ok(catalog)
}

async fn time_query(catalog: &Catalog, sql: &str, repeats: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t0 = Instant::now();
        let engine = QueryEngine::open(catalog, EngineOptions::default()).await?;
        let batches = engine.sql(sql).await?;
        anyhow::ensure!(!batches.is_empty(), "{sql}: no result");
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

async fn time_listing(catalog: &Catalog, repeats: usize, n: usize) -> Result<(f64, f64)> {
    let ns = Namespace::parse("sweep")?;
    let wh = catalog.warehouse();
    let prefix = wh.object_path(&wh.location("sweep"))?;
    let (mut floe, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let t0 = Instant::now();
        let tables = catalog.list_tables(&ns).await?;
        floe.push(t0.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(tables.len() == n, "listed {} of {n} tables", tables.len());
        let t0 = Instant::now();
        let listed = wh.store().list_with_delimiter(Some(&prefix)).await?;
        raw.push(t0.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(listed.common_prefixes.len() >= n, "raw LIST saw too few");
    }
    Ok((median(floe), median(raw)))
}

/// The sweep on one backend: `base` is a folder URL under which each size gets its own
/// warehouse.
pub(super) async fn sweep(b: &FleetBench, base: &str, backend: &str) -> Result<Vec<Line>> {
    let mut lines = Vec::new();
    let mut first: Option<[f64; 4]> = None;
    for &n in &b.sweep_sizes {
        let url = format!("{}/sweep-{n}", base.trim_end_matches('/'));
        let catalog = sweep_fleet(&url, n).await?;
        let probe = format!("dev_{:05}", PROBE.min(n - 1));
        let last_day = "TIMESTAMP '2026-01-01T00:00:00Z'";
        let one = time_query(
            &catalog,
            &format!("SELECT count(*), sum(value) FROM sweep.{probe}"),
            b.repeats,
        )
        .await?;
        let device = time_query(
            &catalog,
            &format!("SELECT count(*), sum(value) FROM sweep.all_devices WHERE device = '{probe}'"),
            b.repeats,
        )
        .await?;
        let fleet = time_query(
            &catalog,
            &format!(
                "SELECT device, avg(value) FROM sweep.all_devices WHERE ts >= {last_day} GROUP BY device"
            ),
            b.repeats.min(3),
        )
        .await?;
        let (listing, raw) = time_listing(&catalog, b.repeats, n).await?;
        let figures = [one, device, fleet, listing];
        let base_figures = *first.get_or_insert(figures);
        let growth =
            |i: usize| format!("x{:.2} of the smallest fleet", figures[i] / base_figures[i]);
        let case = |what: &str| format!("sweep {backend} {n}: {what}");
        lines.push(Line::new(case("one table"), "floe", one, growth(0)));
        lines.push(Line::new(
            case("one device (all_devices)"),
            "floe",
            device,
            growth(1),
        ));
        lines.push(Line::new(case("fleet, last day"), "floe", fleet, growth(2)));
        lines.push(Line::new(
            case("list namespace"),
            "floe",
            listing,
            growth(3),
        ));
        lines.push(Line::new(
            case("list namespace"),
            "raw LIST (delimiter)",
            raw,
            String::new(),
        ));
    }
    Ok(lines)
}
