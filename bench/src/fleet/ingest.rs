//! Case 4 of `floe-bench fleet`: ingest, Floe's writer and commit against arrow-rs's
//! Parquet writer.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use floe_table_format::{CommitOptions, DataWriter, Table, TableIdent, Warehouse};

use super::{day_batch, iot_definition, median, FleetBench, Line};
use crate::report;

pub(super) async fn ingest(b: &FleetBench, input: &Path) -> Result<Vec<Line>> {
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
pub(super) fn ingest_batches(schema: &SchemaRef, n: usize) -> Result<Vec<RecordBatch>> {
    let all = day_batch(schema, "dev_ingest", 0, n)?;
    Ok((0..n)
        .step_by(8192)
        .map(|o| all.slice(o, 8192.min(n - o)))
        .collect())
}
