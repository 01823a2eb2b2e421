//! Case 1 of `floe-bench fleet`: commit throughput, Floe against pyiceberg.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::RecordBatch;

use floe_table_format::{DataWriter, Table, TableIdent, Warehouse};

use super::{append_batch, day_batch, iot_definition, median, python, FleetBench, Line};
use crate::counting::Counting;

pub(super) async fn commits(b: &FleetBench, target: &str, backend: &str) -> Result<Vec<Line>> {
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
