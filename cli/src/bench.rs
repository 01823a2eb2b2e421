//! `floe bench …`: benchmarks that print Floe beside a baseline, medians over repeats.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::ObjectStore;

use floe_catalog::Catalog;
use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{Namespace, Table, TableDefinition, TableIdent, Warehouse};

use crate::output;

const CREATE_CONCURRENCY: usize = 32;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
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
        output::table(
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

/// Counts requests by kind on the way to the real store.
#[derive(Debug)]
pub(crate) struct Counting {
    inner: std::sync::Arc<dyn ObjectStore>,
    counts: [std::sync::atomic::AtomicU64; 5],
}

const KINDS: [&str; 5] = ["PUT", "GET", "HEAD", "LIST", "DELETE"];

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl Counting {
    pub(crate) fn new(inner: std::sync::Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }
    /// Requests of every kind so far.
    #[cfg_attr(not(feature = "query"), allow(dead_code))]
    pub(crate) fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }
    fn bump(&self, k: usize) {
        self.counts[k].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.counts[i].load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.bump(0);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.bump(0);
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.bump(if options.head { 2 } else { 1 });
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.bump(4);
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.bump(3);
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.bump(3);
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.bump(0);
        self.inner.copy_opts(from, to, options).await
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Append `rows`-row commits to one table per mode (maintenance on, off); at each size in
/// `sizes` print latency percentiles and requests per commit over the latest window.
pub async fn commits(
    warehouse: &Warehouse,
    sizes: &[usize],
    rows: usize,
    window: usize,
    modes: &[String],
) -> Result<()> {
    for m in modes {
        ensure!(
            m == "on" || m == "off",
            "--modes takes on and/or off, not '{m}'"
        );
    }
    ensure!(
        !sizes.is_empty() && rows > 0 && window > 0,
        "--sizes, --rows and --window must not be empty/zero"
    );
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let s = schema::default_iot_schema();
    let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &s)?;
    let off: std::collections::HashMap<String, String> = [
        ("commit.manifest-merge.enabled", "false"),
        ("floe.history.max-snapshots", "1000000000"),
        ("history.expire.max-snapshot-age-ms", "1000000000000000"),
        ("write.metadata.delete-after-commit.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut out = Vec::new();
    let runs: [(&str, std::collections::HashMap<String, String>); 2] = [
        ("maintenance on", Default::default()),
        ("maintenance off", off),
    ];
    for (mode, properties) in runs
        .into_iter()
        .filter(|(m, _)| modes.iter().any(|x| m.ends_with(x.as_str())))
    {
        let counting = std::sync::Arc::new(Counting::new(warehouse.store().clone()));
        let wh = Warehouse::with_store(warehouse.url(), counting.clone())?;
        let ident = TableIdent::new(
            Namespace::parse("bench")?,
            format!(
                "commits_{}_{stamp}",
                if mode.ends_with("on") { "on" } else { "off" }
            ),
        )?;
        let definition = TableDefinition {
            schema: s.clone(),
            partition: partition.clone(),
            properties,
        };
        let mut table = Table::create(&wh, &ident, definition).await?;
        eprintln!(
            "{mode}: {} up to {} commits of {rows} rows …",
            ident,
            sizes[sizes.len() - 1]
        );
        let mut latencies: Vec<Duration> = Vec::new();
        let mut counts_at: Vec<[u64; 5]> = Vec::new();
        let mut done = 0usize;
        for &size in sizes {
            while done < size {
                let before = counting.snapshot();
                let t0 = Instant::now();
                let mut writer = floe_table_format::DataWriter::new(&table)?;
                let batch = crate::demo::sample_batch(writer.arrow_schema(), done as i64, rows)?;
                writer.write(batch).await?;
                let files = writer.close().await?;
                table
                    .append(files, floe_table_format::CommitOptions::default())
                    .await?;
                latencies.push(t0.elapsed());
                let after = counting.snapshot();
                counts_at.push(std::array::from_fn(|i| after[i] - before[i]));
                done += 1;
            }
            let w = window.min(size);
            let mut last: Vec<Duration> = latencies[size - w..size].to_vec();
            last.sort();
            let req: [u64; 5] =
                std::array::from_fn(|i| counts_at[size - w..size].iter().map(|c| c[i]).sum());
            let total: u64 = req.iter().sum();
            let per = |n: u64| format!("{:.2}", n as f64 / w as f64);
            out.push(vec![
                size.to_string(),
                mode.to_string(),
                ms(pct(&last, 0.5)),
                ms(pct(&last, 0.99)),
                per(total),
                KINDS
                    .iter()
                    .zip(req)
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| format!("{k} {}", per(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                table.metadata().snapshots().len().to_string(),
            ]);
        }
    }
    out.sort_by_key(|r| (r[0].parse::<usize>().unwrap_or(0), r[1].clone()));
    print!(
        "{}",
        output::table(
            &[
                "commits",
                "mode",
                "p50 ms",
                "p99 ms",
                "requests/commit",
                "by kind",
                "snapshots kept"
            ],
            &out
        )
    );
    println!("(latency: write a {rows}-row data file and commit it, over the last {window} commits at each size)");
    Ok(())
}
