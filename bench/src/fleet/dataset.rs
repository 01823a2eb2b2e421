//! The generated fleet data set of `floe-bench fleet`'s query, scan and memory cases.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};

use floe_catalog::Catalog;
use floe_table_format::{DataWriter, TableIdent, Warehouse};

use super::{append_batch, day_batch, iot_definition, FleetBench};

pub(super) async fn fleet_dataset(b: &FleetBench) -> Result<PathBuf> {
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
