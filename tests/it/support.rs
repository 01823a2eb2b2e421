//! Shared helpers: warehouses on every backend, test data, reading a table back.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use futures::TryStreamExt;

use floe_table_format::schema::{self, DEFAULT_PARTITION};
use floe_table_format::{
    CommitOptions, CommitReport, DataWriter, Table, TableDefinition, TableView, Warehouse,
};

/// A fresh, empty warehouse on a local temp folder.
pub fn local_warehouse() -> (Warehouse, PathBuf) {
    let dir = std::env::temp_dir().join(format!("floe-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    (Warehouse::open(dir.to_str().unwrap()).unwrap(), dir)
}

/// A fresh prefix of the process's memory store.
pub fn memory_warehouse() -> Warehouse {
    Warehouse::open(&format!("memory://it-{}", uuid::Uuid::new_v4())).unwrap()
}

/// A fresh prefix of the S3 test bucket, when the environment names one
/// (`FLOE_TEST_S3_URL`, set by `scripts/localstack.sh`). In CI its absence is a failure.
pub fn s3_warehouse() -> Option<Warehouse> {
    match std::env::var("FLOE_TEST_S3_URL") {
        Ok(url) => Some(
            Warehouse::open(&format!(
                "{}/it-{}",
                url.trim_end_matches('/'),
                uuid::Uuid::new_v4()
            ))
            .unwrap(),
        ),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "FLOE_TEST_S3_URL is not set in CI: the S3 tests must run (start scripts/localstack.sh)"
            );
            eprintln!("note: FLOE_TEST_S3_URL not set; S3 backend not exercised in this run");
            None
        }
    }
}

/// Every backend this run can reach: memory, local files, and S3 when configured.
pub fn all_warehouses() -> Vec<(&'static str, Warehouse)> {
    let mut v = vec![
        ("memory", memory_warehouse()),
        ("file", local_warehouse().0),
    ];
    if let Some(s3) = s3_warehouse() {
        v.push(("s3", s3));
    }
    v
}

/// The default IoT table definition.
pub fn iot_definition() -> TableDefinition {
    let s = schema::default_iot_schema();
    let partition = schema::parse_partition_spec(DEFAULT_PARTITION, &s).unwrap();
    TableDefinition {
        schema: s,
        partition,
        properties: Default::default(),
    }
}

/// `n` rows for `device`, one per minute from `start_us`, values `base + i`.
pub fn rows(
    schema: &arrow::datatypes::SchemaRef,
    device: &str,
    start_us: i64,
    n: usize,
    base: f64,
) -> RecordBatch {
    let ids: Vec<&str> = vec![device; n];
    let ts: Vec<i64> = (0..n as i64).map(|i| start_us + i * 60_000_000).collect();
    let metric: Vec<&str> = vec!["power_kw"; n];
    let value: Vec<f64> = (0..n).map(|i| base + i as f64).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
            Arc::new(StringArray::from(metric)),
            Arc::new(Float64Array::from(value)),
        ],
    )
    .unwrap()
}

/// 2026-01-01T00:00:00Z in microseconds.
pub const DAY0_US: i64 = 1_767_225_600_000_000;
/// One day in microseconds.
pub const DAY_US: i64 = 86_400_000_000;

/// Write one batch and commit it.
pub async fn append_batch(
    table: &mut Table,
    batch_of: impl FnOnce(&arrow::datatypes::SchemaRef) -> RecordBatch,
    options: CommitOptions,
) -> floe_table_format::Result<CommitReport> {
    let mut w = DataWriter::new(table)?;
    let b = batch_of(w.arrow_schema());
    w.write(b).await?;
    let files = w.close().await?;
    table.append(files, options).await
}

/// Scan the whole table with iceberg's reader (through Floe's storage): (rows, sum of value).
pub async fn scan(table: &TableView) -> (usize, f64) {
    let t = table.iceberg().unwrap();
    let stream = t.scan().build().unwrap().to_arrow().await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let mut n = 0;
    let mut sum = 0.0;
    for b in &batches {
        n += b.num_rows();
        if let Some(col) = b.column_by_name("value") {
            let v = col.as_any().downcast_ref::<Float64Array>().unwrap();
            sum += (0..v.len())
                .filter(|i| v.is_valid(*i))
                .map(|i| v.value(i))
                .sum::<f64>();
        }
    }
    (n, sum)
}

/// Commit ids of all snapshots, in sequence order.
pub fn commit_ids(table: &TableView) -> Vec<String> {
    let mut snaps: Vec<_> = table.metadata().snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    snaps
        .iter()
        .filter_map(|s| {
            s.summary()
                .additional_properties
                .get(floe_table_format::COMMIT_ID_KEY)
                .cloned()
        })
        .collect()
}

/// The `floe` binary built from this workspace (`cargo build -p floe-cli` builds it; the
/// test script does so before running the tests).
pub fn floe_bin() -> PathBuf {
    workspace_bin("floe", "floe-cli")
}

/// The `floe-bench` binary built from this workspace (`cargo build -p floe-bench`; the test
/// script's `cargo build --workspace --bins` builds it).
pub fn floe_bench_bin() -> PathBuf {
    workspace_bin("floe-bench", "floe-bench")
}

/// Binary `name` of workspace package `package`, beside this test binary's folder.
fn workspace_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|p| p.parent()).unwrap();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p {package}` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The interop venv's python (`scripts/setup-python.sh` creates it). Missing is a failure:
/// the interop tests never skip.
pub fn python() -> PathBuf {
    let p = std::env::var_os("FLOE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/interop/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run scripts/setup-python.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run a Python script of the repo with the interop venv; it must succeed and print one
/// JSON object.
pub fn run_python(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(python())
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python {args:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Append `n` rows of device "d" from DAY0_US (values 0, 1, …) as one commit; it must succeed.
pub async fn append_rows(table: &mut Table, n: usize) {
    append_batch(
        table,
        |s| rows(s, "d", DAY0_US, n, 0.0),
        CommitOptions::default(),
    )
    .await
    .unwrap();
}

/// Run the `floe` binary on warehouse `wh`.
pub fn floe(wh: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(floe_bin())
        .arg("--warehouse")
        .arg(wh)
        .args(args)
        .output()
        .unwrap()
}

/// Run the `floe` binary on warehouse `wh`; it must succeed.
pub fn floe_ok(wh: &str, args: &[&str]) -> std::process::Output {
    let out = floe(wh, args);
    assert!(
        out.status.success(),
        "floe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
