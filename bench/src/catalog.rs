//! `floe-bench catalog`: listing and loading device tables as a namespace grows, Floe's
//! `list_tables` beside a raw delimiter LIST of the same prefix.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::ObjectStore;

use floe_catalog::Catalog;
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Warehouse};

use crate::report::{self, ms};

const CREATE_CONCURRENCY: usize = 32;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Create `steps` tables (cumulatively) in a fresh namespace; at each step time listing
/// them (Floe's `list_tables` vs a raw delimiter LIST) and loading one table cold.
pub async fn catalog(warehouse: &Warehouse, steps: &[usize], repeats: usize) -> Result<()> {
    ensure!(
        !steps.is_empty() && repeats > 0,
        "--steps and --repeats must not be empty/zero"
    );
    let catalog = Catalog::new(warehouse.clone());
    let ns = Namespace::parse(&format!(
        "bench_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    ))?;
    let s = schema::default_iot_schema();
    let definition = TableDefinition {
        partition: schema::parse_partition_spec(DEFAULT_PARTITION, &s)?,
        schema: s,
        properties: Default::default(),
    };
    eprintln!(
        "catalog scale on {} in namespace {ns}, {repeats} repeats per figure",
        warehouse.url()
    );
    let mut rows = Vec::new();
    let mut created = 0usize;
    for &target in steps {
        let t0 = Instant::now();
        let n = target.saturating_sub(created);
        stream::iter(created..target)
            .map(|i| {
                let definition = definition.clone();
                let ns = ns.clone();
                let wh = warehouse.clone();
                async move {
                    let ident = TableIdent::new(ns, format!("dev_{i:06}"))?;
                    Table::create(&wh, &ident, definition).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let create_time = t0.elapsed();
        created = target;
        let (mut floe, mut raw, mut load) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            let t = Instant::now();
            let listed = catalog.list_tables(&ns).await?;
            floe.push(t.elapsed());
            ensure!(
                listed.len() == target,
                "listed {} tables, expected {target}",
                listed.len()
            );
            let t = Instant::now();
            let prefix = warehouse.object_path(&warehouse.location(&ns.path()))?;
            let r = warehouse.store().list_with_delimiter(Some(&prefix)).await?;
            raw.push(t.elapsed());
            ensure!(
                r.common_prefixes.len() >= target,
                "raw LIST saw {}",
                r.common_prefixes.len()
            );
            // Cold: a fresh warehouse handle (a new S3 client, no connection reuse).
            let fresh = Warehouse::open(warehouse.url())?;
            let t = Instant::now();
            Table::load(
                &fresh,
                &TableIdent::new(ns.clone(), format!("dev_{:06}", target / 2))?,
            )
            .await?;
            load.push(t.elapsed());
        }
        let (f, r) = (median(floe), median(raw));
        rows.push(vec![
            target.to_string(),
            format!("{:.0}", n as f64 / create_time.as_secs_f64()),
            ms(f),
            ms(r),
            format!("{:.1}x", f.as_secs_f64() / r.as_secs_f64().max(1e-9)),
            format!("{:.0}", f.as_micros() as f64 / target as f64),
            ms(median(load)),
        ]);
    }
    print!(
        "{}",
        report::table(
            &[
                "tables",
                "creates/s",
                "floe list ms",
                "raw LIST ms",
                "floe/raw",
                "µs per table",
                "cold load ms"
            ],
            &rows
        )
    );
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let (a, b): (f64, f64) = (first[2].parse()?, last[2].parse()?);
        println!(
            "list time grew {:.1}x for {:.0}x the tables",
            b / a.max(1e-9),
            steps[steps.len() - 1] as f64 / steps[0] as f64
        );
    }
    Ok(())
}
