//! The squashed sync (spec/sync.md, "Squashing"): everything the cloud has not seen goes as
//! one cloud commit per table, small files combined into one file per partition sorted by
//! `ts`, with at most a handful of requests beyond the data files; and the cloud table
//! follows the local table's schema before the data that needs it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use floe_catalog::Catalog;
use floe_sync::SyncOptions;
use floe_table_format::external::ApplyUpdates;
use floe_table_format::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use floe_table_format::iceberg::TableUpdate;
use floe_table_format::rewrite::{live_files, read_data_file};
use floe_table_format::{CommitOptions, DataWriter, RetryPolicy, Table, TableIdent, Warehouse};

use object_store::ObjectStoreExt;

use crate::faults::FaultyStore;
use crate::support::*;

/// `n` local appends of `rows_each` rows, in `days` day partitions (append `i` in day
/// `i % days`, so the appends of one day overlap in time).
async fn appends(t: &mut Table, n: usize, rows_each: usize, days: i64) {
    for i in 0..n {
        append_batch(
            t,
            |s| {
                rows(
                    s,
                    "g",
                    DAY0_US + (i as i64 % days) * DAY_US + i as i64 * 1_000,
                    rows_each,
                    i as f64 * 1_000.0,
                )
            },
            CommitOptions::default(),
        )
        .await
        .unwrap();
    }
}

fn options() -> SyncOptions {
    SyncOptions {
        policy: crate::operation_faults::quick_policy(),
        reach_attempts: 2,
        reach_backoff: std::time::Duration::from_millis(1),
        ..SyncOptions::default()
    }
}

/// Every `ts` of a cloud data file, in file order.
async fn ts_of(t: &Table, path: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in read_data_file(t, path).await.unwrap() {
        let col = b
            .column_by_name("ts")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap()
            .clone();
        out.extend(col.values().iter().copied());
    }
    out
}

#[tokio::test]
async fn many_small_appends_sync_as_one_commit_with_one_sorted_file_per_partition() {
    let local = memory_warehouse();
    let ident = TableIdent::parse("gw.dev_1").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    appends(&mut t, 40, 6, 2).await;
    let cloud = Catalog::new(memory_warehouse());

    // The dry run plans one commit, one file per partition, and the requests; writes nothing.
    let dry = SyncOptions {
        dry_run: true,
        ..options()
    };
    let plan = floe_sync::sync_table(&mut t, &cloud, &dry).await.unwrap();
    assert_eq!(
        (
            plan.snapshots_projected,
            plan.cloud_commits,
            plan.files_copied
        ),
        (40, 1, 2),
        "{plan:?}"
    );
    assert_eq!(plan.files_combined, 40);
    assert_eq!(plan.requests_planned, 3 + 2 * 2 + 5, "{plan:?}");
    assert!(cloud
        .warehouse()
        .list_all(cloud.warehouse().url())
        .await
        .unwrap()
        .is_empty());

    let r = floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();
    assert_eq!((r.snapshots_projected, r.cloud_commits), (40, 1), "{r:?}");
    let c = cloud.load_table(&ident).await.unwrap();
    assert_eq!(c.metadata().snapshots().count(), 1);
    let summary = &c
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(summary[floe_sync::SOURCE_SNAPSHOTS_KEY], "40");
    let last = t.metadata().current_snapshot().unwrap().sequence_number();
    let first = last - 39;
    assert_eq!(
        summary[floe_sync::SOURCE_RANGE_KEY],
        format!("{first}-{last}")
    );
    // One file per partition, its rows sorted by ts although the appends overlapped.
    let files = live_files(&c).await.unwrap();
    let partitions: HashSet<String> = files
        .iter()
        .map(|f| format!("{:?}", f.data_file.partition()))
        .collect();
    assert_eq!((files.len(), partitions.len()), (2, 2));
    for f in &files {
        let ts = ts_of(&c, f.data_file.file_path()).await;
        assert_eq!(ts.len(), 120);
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "not sorted by ts");
    }
    assert_eq!(scan(&c).await, scan(&t).await);
    // The staging is gone from the local table.
    let left: Vec<String> = local
        .list_all(t.location())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|p| p.contains("/metadata/sync/") || p.contains("/sync-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Goal of issue 19: at most 10 cloud requests per table per sync beyond the data files.
#[tokio::test]
async fn a_squashed_sync_makes_at_most_ten_requests_beyond_its_data_files() {
    let local = memory_warehouse();
    let ident = TableIdent::parse("gw.dev_2").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    appends(&mut t, 30, 5, 1).await;
    let url = format!("memory://squash-{}", uuid::Uuid::new_v4());
    let plain = Warehouse::open(&url).unwrap();
    // The cloud table exists already (its creation is a one-off), with one earlier sync.
    floe_sync::sync_table(&mut t, &Catalog::new(plain.clone()), &options())
        .await
        .unwrap();
    appends(&mut t, 30, 5, 1).await;
    let recording = Arc::new(FaultyStore::recording(plain.store().clone()));
    let cloud = Catalog::new(Warehouse::with_store(&url, recording.clone()).unwrap());
    let r = floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();
    assert_eq!((r.snapshots_projected, r.cloud_commits), (30, 1), "{r:?}");
    let log = recording.take_log();
    let (data, other): (Vec<_>, Vec<_>) = log.iter().partition(|(_, k)| k.ends_with(".parquet"));
    assert!(
        other.len() <= 10,
        "{} requests beyond the data files: {other:?}",
        other.len()
    );
    assert!(data.len() <= 2, "one file, HEAD and PUT: {data:?}");
}

/// A local schema change (a firmware adds a column) reaches the cloud table before the
/// data that needs it; old rows read null in the new column.
#[tokio::test]
async fn a_local_schema_change_reaches_the_cloud_before_its_data() {
    let local = memory_warehouse();
    let ident = TableIdent::parse("gw.dev_3").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    appends(&mut t, 3, 5, 1).await;
    let cloud = Catalog::new(memory_warehouse());
    floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();

    // Add an optional column `soc` locally, then append rows that carry it.
    let current = t.metadata().current_schema().clone();
    let id = t.metadata().last_column_id() + 1;
    let mut fields: Vec<_> = current.as_struct().fields().to_vec();
    fields.push(Arc::new(NestedField::optional(
        id,
        "soc",
        Type::Primitive(PrimitiveType::Double),
    )));
    let evolved = Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .build()
        .unwrap();
    let mut action = ApplyUpdates::new(
        vec![],
        vec![
            TableUpdate::AddSchema { schema: evolved },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ],
    );
    t.commit("add-soc", &RetryPolicy::default(), &mut action)
        .await
        .unwrap();
    let mut w = DataWriter::new(&t).unwrap();
    let schema = w.arrow_schema().clone();
    let base = rows(
        &schema_without(&schema, "soc"),
        "g",
        DAY0_US + 500,
        4,
        9_000.0,
    );
    let mut cols = base.columns().to_vec();
    cols.push(Arc::new(arrow::array::Float64Array::from(vec![0.5; 4])));
    let batch = arrow::record_batch::RecordBatch::try_new(schema, cols).unwrap();
    w.write(batch).await.unwrap();
    let files = w.close().await.unwrap();
    t.append(files, CommitOptions::default()).await.unwrap();

    let r = floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();
    assert_eq!(r.cloud_commits, 1, "{r:?}");
    let c = cloud.load_table(&ident).await.unwrap();
    let soc = c.metadata().current_schema().field_by_name("soc").unwrap();
    assert_eq!(soc.id, id, "the same field id as the local table");
    // Old rows: null; new rows: 0.5.
    let it = c.iceberg().unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        it.scan()
            .select(["soc"])
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for b in &batches {
        let a = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        for v in a.iter() {
            *counts.entry(format!("{v:?}")).or_default() += 1;
        }
    }
    assert_eq!(counts.get("None"), Some(&15), "{counts:?}");
    assert_eq!(counts.get("Some(0.5)"), Some(&4), "{counts:?}");
}

/// `schema` without the column `name`.
fn schema_without(schema: &arrow::datatypes::SchemaRef, name: &str) -> arrow::datatypes::SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != name)
        .cloned()
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// A large data file goes up as a multipart upload whose parts are journaled locally: a
/// sync killed after some parts were sent resumes the same upload and sends only the rest.
#[tokio::test]
async fn a_sync_killed_mid_upload_resumes_without_resending_parts() {
    let Some(cloud) = s3_warehouse() else { return };
    let (local, _) = local_warehouse();
    let ident = TableIdent::parse("gw.dev_big").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    // About 12 MiB of incompressible values: three 5 MiB parts.
    let n = 1_500_000usize;
    let mut w = DataWriter::new(&t).unwrap();
    let schema = w.arrow_schema().clone();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let values: Vec<f64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f64::from_bits((x >> 12) | 0x3ff0_0000_0000_0000)
        })
        .collect();
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["big"; n])),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(
                    (0..n as i64)
                        .map(|i| DAY0_US + i * 1_000)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("+00:00"),
            ),
            Arc::new(arrow::array::StringArray::from(vec!["power_kw"; n])),
            Arc::new(arrow::array::Float64Array::from(values)),
        ],
    )
    .unwrap();
    w.write(batch).await.unwrap();
    let files = w.close().await.unwrap();
    assert_eq!(files.len(), 1);
    let size = files[0].file_size_in_bytes();
    assert!(
        size > 10 << 20,
        "{size} bytes: not large enough for three parts"
    );
    t.append(files, CommitOptions::default()).await.unwrap();

    let sync = |extra: &[&str]| {
        let mut c = std::process::Command::new(floe_bin());
        c.args([
            "--warehouse",
            local.url(),
            "sync",
            "--to",
            cloud.url(),
            "--json",
        ])
        .args(extra);
        c
    };
    // 4 MB/s: a part about every 1.3 s. Kill once the journal records a part.
    let mut child = sync(&["--max-bytes-per-sec", "4MB"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let uploads = format!("{}/metadata/sync/uploads", t.location());
    let started = std::time::Instant::now();
    let mut parts_seen = 0;
    while parts_seen == 0 && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        for m in local.list_all(&uploads).await.unwrap_or_default() {
            let Ok(got) = local.store().get(&m.location).await else {
                continue;
            };
            if let Ok(body) = got.bytes().await {
                if let Ok(j) = serde_json::from_slice::<serde_json::Value>(&body) {
                    parts_seen = j["parts"].as_array().map_or(0, Vec::len);
                }
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before a part was journaled"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(parts_seen >= 1, "no part journaled");
    assert!(
        Table::load(&cloud, &ident)
            .await
            .map_or(true, |c| c.metadata().current_snapshot().is_none()),
        "nothing committed before the upload completed"
    );

    let out = sync(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = got["bytes_copied"].as_u64().unwrap();
    assert!(
        sent > 0 && sent <= size - (5 << 20),
        "the rerun sent {sent} of {size} bytes: parts sent before the kill were sent again"
    );
    let c = Table::load(&cloud, &ident).await.unwrap();
    assert_eq!(scan(&c).await, scan(&t).await);
    assert!(
        local.list_all(&uploads).await.unwrap().is_empty(),
        "the upload journal is removed once the upload completes"
    );
}

/// A local partition spec change (`floe alter --partition`) reaches the cloud before the
/// data; files of the older spec in the batch are rewritten into the current one, and
/// `--per-commit`, which copies files as they are, refuses a spec the cloud lacks.
#[tokio::test]
async fn a_local_partition_change_reaches_the_cloud_and_old_spec_files_are_rewritten() {
    let local = memory_warehouse();
    let ident = TableIdent::parse("gw.dev_4").unwrap();
    let mut t = Table::create(&local, &ident, iot_definition())
        .await
        .unwrap();
    appends(&mut t, 2, 5, 1).await;
    let cloud = Catalog::new(memory_warehouse());
    floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();
    // One more append under day(ts), then the spec moves to hour(ts), then another.
    appends(&mut t, 1, 5, 1).await;
    let schema = t.metadata().current_schema().clone();
    let hourly = floe_table_format::schema::parse_partition_spec("hour(ts)", &schema).unwrap();
    let mut action = ApplyUpdates::new(
        vec![],
        vec![
            TableUpdate::AddSpec { spec: hourly },
            TableUpdate::SetDefaultSpec { spec_id: -1 },
        ],
    );
    t.commit("hourly", &RetryPolicy::default(), &mut action)
        .await
        .unwrap();
    appends(&mut t, 1, 5, 1).await;
    let fresh = Catalog::new(memory_warehouse());

    let r = floe_sync::sync_table(&mut t, &cloud, &options())
        .await
        .unwrap();
    assert_eq!((r.snapshots_projected, r.cloud_commits), (2, 1), "{r:?}");
    let c = cloud.load_table(&ident).await.unwrap();
    assert_eq!(
        c.metadata().default_partition_spec().fields(),
        t.metadata().default_partition_spec().fields()
    );
    assert_eq!(scan(&c).await, scan(&t).await);
    // The day-spec file was rewritten into the hourly spec; the hourly one, alone in its
    // partition, is carried as it is.
    assert_eq!((r.files_combined, r.files_copied), (1, 2), "{r:?}");

    let per_commit = SyncOptions {
        per_commit: true,
        ..options()
    };
    let e = floe_sync::sync_table(&mut t, &fresh, &per_commit)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("partition spec") && e.contains("--per-commit"),
        "{e}"
    );
}
