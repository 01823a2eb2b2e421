//! `floe-bench sync`: one day of a gateway that commits every minute, synced once, with the
//! squashed projection beside the per-commit one, in one run. Counts the cloud requests by
//! kind (and those beyond the data files), the bytes sent, and the data files a query of
//! the cloud table then opens per partition.
//!
//! One local table (`--appends` appends of `--rows` readings, one minute apart) is synced
//! into two fresh cloud prefixes under `--to`, each through a counting store: first per
//! commit, then squashed. Both cloud tables already exist (created by a first sync of one
//! earlier append, not counted), as they do for a gateway that has synced before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use floe_catalog::Catalog;
use floe_sync::{SyncOptions, LOCAL_WATERMARK};
use floe_table_format::rewrite::live_files;
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{
    CommitOptions, DataWriter, Namespace, Table, TableDefinition, TableIdent, Warehouse,
};

use crate::counting::{Counting, KINDS};

const DAY0_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

/// `rows` readings, one second apart, starting at minute `minute` of the day.
fn minute_batch(schema: &SchemaRef, minute: i64, rows: usize) -> Result<RecordBatch> {
    let values = (0..rows)
        .map(|i| ((minute * 61 + i as i64) % 1000) as f64 / 10.0)
        .collect();
    crate::commits::readings(schema, "gw-1", DAY0_US + minute * 60_000_000, values)
}

async fn append_minute(table: &mut Table, minute: i64, rows: usize) -> Result<()> {
    let mut w = DataWriter::new(table)?;
    let b = minute_batch(w.arrow_schema(), minute, rows)?;
    w.write(b).await?;
    let files = w.close().await?;
    table.append(files, CommitOptions::default()).await?;
    Ok(())
}

/// Run the case: `appends` local appends of `rows` rows, then one sync each way into
/// fresh prefixes of the `to` warehouse URL.
pub async fn sync(to: &str, appends: usize, rows: usize) -> Result<()> {
    ensure!(
        appends > 0 && rows > 0,
        "--appends and --rows must be positive"
    );
    let stamp = uuid::Uuid::new_v4().simple().to_string();
    let local_dir = std::env::temp_dir().join(format!("floe-bench-sync-{stamp}"));
    std::fs::create_dir_all(&local_dir)?;
    let local = Warehouse::open(local_dir.to_str().expect("a UTF-8 temp path"))?;
    let s = schema::default_iot_schema();
    // A gateway that has synced before carries the local watermark: every unprojected
    // append stays in its history (spec/sync.md, "Local maintenance").
    let definition = TableDefinition {
        partition: schema::parse_partition_spec(DEFAULT_PARTITION, &s)?,
        schema: s,
        properties: HashMap::from([(LOCAL_WATERMARK.to_string(), "0".to_string())]),
    };
    let ident = TableIdent::new(Namespace::parse("gw")?, "dev_1".to_string())?;
    let mut table = Table::create(&local, &ident, definition).await?;
    let modes = [("per commit", true), ("squashed", false)];
    let clouds: Vec<String> = modes
        .iter()
        .map(|(m, _)| {
            format!(
                "{}/bench-sync-{stamp}-{}",
                to.trim_end_matches('/'),
                m.replace(' ', "-")
            )
        })
        .collect();
    // The clouds exist: one earlier append (the day before), synced each way.
    append_minute(&mut table, -60, rows).await?;
    for ((_, per_commit), url) in modes.iter().zip(&clouds) {
        let cloud = Catalog::new(Warehouse::open(url)?);
        let options = SyncOptions {
            per_commit: *per_commit,
            ..SyncOptions::default()
        };
        floe_sync::sync_table(&mut table, &cloud, &options).await?;
    }
    eprintln!("{appends} local appends of {rows} readings, one minute apart …");
    let t0 = Instant::now();
    for m in 0..appends as i64 {
        append_minute(&mut table, m, rows).await?;
    }
    eprintln!("  done in {:.1} s", t0.elapsed().as_secs_f64());
    println!(
        "sync of {appends} local appends of {rows} readings (one day of a gateway committing every minute), synced once into {to}"
    );
    println!(
        "{:<12} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>12} {:>12} {:>12} {:>9}",
        "projection",
        "commits",
        KINDS[0],
        KINDS[1],
        KINDS[2],
        KINDS[3],
        KINDS[4],
        "all",
        "beyond data",
        "bytes sent",
        "files/part.",
        "seconds"
    );
    let mut totals = Vec::new();
    for ((mode, per_commit), url) in modes.iter().zip(&clouds) {
        let plain = Warehouse::open(url)?;
        let counting = Arc::new(Counting::new(plain.store().clone()));
        let cloud = Catalog::new(Warehouse::with_store(url, counting.clone())?);
        let options = SyncOptions {
            per_commit: *per_commit,
            ..SyncOptions::default()
        };
        let mut local_table = Table::load(&local, &ident).await?;
        let t0 = Instant::now();
        let report = floe_sync::sync_table(&mut local_table, &cloud, &options).await?;
        let took = t0.elapsed().as_secs_f64();
        ensure!(
            report.snapshots_projected == appends,
            "{mode}: projected {} of {appends} appends",
            report.snapshots_projected
        );
        let counts = counting.snapshot();
        let all = counting.total();
        let beyond = all - counting.data_requests();
        // What a query of the cloud table opens: live data files per partition.
        let c = Table::load(&plain, &ident).await?;
        let mut per_partition: HashMap<String, usize> = HashMap::new();
        for f in live_files(&c).await? {
            *per_partition
                .entry(format!("{:?}", f.data_file.partition()))
                .or_default() += 1;
        }
        let max_files = per_partition.values().copied().max().unwrap_or(0);
        println!(
            "{:<12} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>12} {:>12} {:>12} {:>9.1}",
            mode,
            report.cloud_commits,
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            counts[4],
            all,
            beyond,
            counting.bytes_put(),
            format!("{max_files} (max)"),
            took
        );
        totals.push((all, beyond, counting.bytes_put()));
    }
    let (pc, sq) = (totals[0], totals[1]);
    println!(
        "squashed vs per commit: {:.0}x fewer requests ({} vs {}), {:.0}x fewer beyond the data files ({} vs {}), {:.0}x fewer bytes sent; goal at most 10 beyond the data files: {}",
        pc.0 as f64 / sq.0.max(1) as f64,
        sq.0,
        pc.0,
        pc.1 as f64 / sq.1.max(1) as f64,
        sq.1,
        pc.1,
        pc.2 as f64 / sq.2.max(1) as f64,
        if sq.1 <= 10 { "met" } else { "MISSED" }
    );
    std::fs::remove_dir_all(&local_dir).ok();
    Ok(())
}
