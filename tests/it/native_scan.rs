//! The native scan (DataFusion's Parquet scan over iceberg's planned files) resolves columns
//! by Iceberg field id: a renamed column, an added column, a foreign file whose column
//! names do not match its field ids, and a fleet whose tables number the same names
//! differently all read as iceberg's own reader reads them, and it really is the native
//! scan that read them.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine, ScanOptions};
use floe_table_format::external::ApplyUpdates;
use floe_table_format::iceberg;
use floe_table_format::schema::parse_partition_spec;
use floe_table_format::{CommitOptions, Table, TableDefinition, TableIdent, Warehouse};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, NestedField, PrimitiveType, Schema, Type,
};
use iceberg::TableUpdate;
use object_store::ObjectStoreExt;

use crate::support::*;

/// Replace the table's current schema by `change(current)` (same field ids unless the
/// change adds one), as another engine's schema update would.
pub async fn evolve_schema(table: &mut Table, change: impl FnOnce(&Schema) -> Vec<NestedField>) {
    let meta = table.metadata().clone();
    let current = meta.current_schema();
    let fields = change(current);
    let next_id = meta
        .schemas_iter()
        .map(|s| s.schema_id())
        .max()
        .unwrap_or(0)
        + 1;
    let schema = Schema::builder()
        .with_schema_id(next_id)
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .unwrap();
    let mut action = ApplyUpdates::new(
        vec![],
        vec![
            TableUpdate::AddSchema { schema },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ],
    );
    table
        .commit(
            &format!("evolve-{}", uuid::Uuid::new_v4()),
            &Default::default(),
            &mut action,
        )
        .await
        .unwrap();
}

/// Rename `from` to `to` and add the optional string columns `added`.
pub fn rename_and_add(
    from: &str,
    to: &str,
    added: &[&str],
) -> impl FnOnce(&Schema) -> Vec<NestedField> {
    let (from, to) = (from.to_string(), to.to_string());
    let added: Vec<String> = added.iter().map(|s| s.to_string()).collect();
    move |s: &Schema| {
        let mut fields: Vec<NestedField> = s
            .as_struct()
            .fields()
            .iter()
            .map(|f| {
                let mut f = f.as_ref().clone();
                if f.name == from {
                    f.name = to.clone();
                }
                f
            })
            .collect();
        for (id, name) in (s.highest_field_id() + 1..).zip(added) {
            fields.push(NestedField::optional(
                id,
                name,
                Type::Primitive(PrimitiveType::String),
            ));
        }
        fields
    }
}

fn with_id(name: &str, ty: DataType, id: i32) -> Field {
    Field::new(name, ty, true)
        .with_metadata([("PARQUET:field_id".to_string(), id.to_string())].into())
}

/// A Parquet file written by "another engine" into the table's `data/` folder, whose
/// column names do not match its field ids: `site` holds field 3 (`metric`), `metric`
/// holds field 5 (`site`), and `value` holds field 4 (today's `reading`). Returns its rows'
/// readings (`500 + i`).
async fn add_foreign_file(wh: &Warehouse, table: &mut Table, n: usize) {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let schema = Arc::new(ArrowSchema::new(vec![
        with_id("ts", ts, 2),
        with_id("site", DataType::Utf8, 3),
        with_id("metric", DataType::Utf8, 5),
        with_id("value", DataType::Float64, 4),
        with_id("device_id", DataType::Utf8, 1),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(
                    (0..n as i64)
                        .map(|i| DAY0_US + DAY_US + i * 60_000_000)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from(vec!["foreign_metric"; n])),
            Arc::new(StringArray::from(vec!["foreign_site"; n])),
            Arc::new(Float64Array::from(
                (0..n).map(|i| 500.0 + i as f64).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["dev"; n])),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let location = format!(
        "{}/data/foreign-{}.parquet",
        table.location(),
        uuid::Uuid::new_v4()
    );
    let size = bytes.len() as u64;
    wh.store()
        .put(&wh.object_path(&location).unwrap(), bytes.into())
        .await
        .unwrap();
    let file = DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(location)
        .file_format(DataFileFormat::Parquet)
        .record_count(n as u64)
        .file_size_in_bytes(size)
        .partition_spec_id(0)
        .build()
        .unwrap();
    table
        .append(vec![file], CommitOptions::default())
        .await
        .unwrap();
}

fn engine_options(native: bool) -> EngineOptions {
    EngineOptions {
        scan: ScanOptions {
            native,
            ..Default::default()
        },
        target_partitions: Some(3),
        ..Default::default()
    }
}

async fn text(e: &QueryEngine, q: &str) -> String {
    pretty_format_batches(&e.sql(q).await.unwrap())
        .unwrap()
        .to_string()
}

async fn explain(e: &QueryEngine, q: &str) -> String {
    let (plan, _) = e.explain(q).await.unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    text
}

#[tokio::test]
async fn evolved_tables_and_foreign_files_read_by_field_id() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let s = floe_table_format::schema::default_iot_schema();
        let definition = TableDefinition {
            partition: parse_partition_spec("", &s).unwrap(),
            schema: s,
            properties: Default::default(),
        };
        // File A: the original schema (value).
        let ident = TableIdent::parse("evo.t").unwrap();
        let mut t = cat.create_table(&ident, definition).await.unwrap();
        append_batch(
            &mut t,
            |s| rows(s, "dev", DAY0_US, 10, 0.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        // `value` becomes `reading`; `site` is added. File B is written with both.
        evolve_schema(&mut t, rename_and_add("value", "reading", &["site"])).await;
        append_batch(
            &mut t,
            |s| {
                let first4 = Arc::new(ArrowSchema::new(s.fields()[..4].to_vec()));
                let base = rows(&first4, "dev", DAY0_US + 10 * 60_000_000, 5, 100.0);
                let mut cols = base.columns().to_vec();
                cols.push(Arc::new(StringArray::from(vec!["b_site"; 5])));
                RecordBatch::try_new(s.clone(), cols).unwrap()
            },
            CommitOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
        // File C: another engine's, its names crossed with its field ids.
        add_foreign_file(&wh, &mut t, 4).await;

        // A second device table numbers the same names differently (value 3, metric 4).
        let reordered = Schema::builder()
            .with_schema_id(0)
            .with_fields(vec![
                Arc::new(NestedField::optional(
                    1,
                    "device_id",
                    Type::Primitive(PrimitiveType::String),
                )),
                Arc::new(NestedField::optional(
                    2,
                    "ts",
                    Type::Primitive(PrimitiveType::Timestamptz),
                )),
                Arc::new(NestedField::optional(
                    3,
                    "value",
                    Type::Primitive(PrimitiveType::Double),
                )),
                Arc::new(NestedField::optional(
                    4,
                    "metric",
                    Type::Primitive(PrimitiveType::String),
                )),
            ])
            .build()
            .unwrap();
        let mut u = cat
            .create_table(
                &TableIdent::parse("evo.u").unwrap(),
                TableDefinition {
                    partition: parse_partition_spec("", &reordered).unwrap(),
                    schema: reordered,
                    properties: Default::default(),
                },
            )
            .await
            .unwrap();
        append_batch(
            &mut u,
            |s| {
                RecordBatch::try_new(
                    s.clone(),
                    vec![
                        Arc::new(StringArray::from(vec!["u"; 3])),
                        Arc::new(
                            TimestampMicrosecondArray::from(vec![
                                DAY0_US,
                                DAY0_US + 1,
                                DAY0_US + 2,
                            ])
                            .with_timezone("+00:00"),
                        ),
                        Arc::new(Float64Array::from(vec![7.0, 8.0, 9.0])),
                        Arc::new(StringArray::from(vec!["u_metric"; 3])),
                    ],
                )
                .unwrap()
            },
            CommitOptions::default(),
        )
        .await
        .unwrap();

        let native = QueryEngine::open(&cat, engine_options(true)).await.unwrap();
        let iceberg_reader = QueryEngine::open(&cat, engine_options(false))
            .await
            .unwrap();

        // What iceberg's reader and the field ids say, spelled out.
        let q = "SELECT metric, site, count(*) AS n, sum(reading) AS total FROM evo.t \
                 GROUP BY metric, site ORDER BY metric, site";
        let want = [
            "+----------------+--------------+----+--------+",
            "| metric         | site         | n  | total  |",
            "+----------------+--------------+----+--------+",
            "| foreign_metric | foreign_site | 4  | 2006.0 |",
            "| power_kw       | b_site       | 5  | 510.0  |",
            "| power_kw       |              | 10 | 45.0   |",
            "+----------------+--------------+----+--------+",
        ]
        .join("\n");
        assert_eq!(text(&native, q).await, want, "{backend}: native");
        assert_eq!(
            text(&iceberg_reader, q).await,
            want,
            "{backend}: iceberg's reader"
        );
        let plan = explain(&native, q).await;
        assert!(plan.contains("native_files=3"), "{backend}: {plan}");
        let plan = explain(&iceberg_reader, q).await;
        assert!(!plan.contains("native_files"), "{backend}: {plan}");

        // Filters prune by the renamed and the crossed columns alike.
        for q in [
            "SELECT ts, reading, site FROM evo.t WHERE reading >= 100 ORDER BY ts",
            "SELECT ts, metric FROM evo.t WHERE site = 'foreign_site' ORDER BY ts",
            "SELECT count(*) FROM evo.t WHERE site IS NULL",
            "SELECT ts, reading FROM evo.t WHERE metric = 'foreign_metric' AND reading < 502 ORDER BY ts",
            "SELECT * FROM evo.t ORDER BY ts",
        ] {
            assert_eq!(
                text(&native, q).await,
                text(&iceberg_reader, q).await,
                "{backend}: {q}"
            );
        }
        let got = text(
            &native,
            "SELECT reading FROM evo.t WHERE metric = 'foreign_metric' AND reading < 502 ORDER BY reading",
        )
        .await;
        assert!(
            got.contains("500.0") && got.contains("501.0") && !got.contains("502.0"),
            "{backend}: {got}"
        );

        // The fleet view: both tables, two numberings of the same names, one union by name.
        for q in [
            "SELECT device, metric, value, reading, site FROM evo.all_devices \
             ORDER BY device, ts, metric, value, reading",
            "SELECT device, count(*), sum(value), sum(reading) FROM evo.all_devices \
             WHERE metric <> 'nope' GROUP BY device ORDER BY device",
        ] {
            let a = text(&native, q).await;
            assert_eq!(a, text(&iceberg_reader, q).await, "{backend}: {q}");
        }
        let got = text(
            &native,
            "SELECT device, metric, sum(value) AS v FROM evo.all_devices WHERE device = 'u' \
             GROUP BY device, metric",
        )
        .await;
        assert!(
            got.contains("u_metric") && got.contains("24.0"),
            "{backend}: {got}"
        );
        let plan = explain(&native, "SELECT * FROM evo.all_devices").await;
        assert!(plan.contains("native_files=4"), "{backend}: {plan}");
    }
}

/// The native scan reads the data files through the catalog's own store (so a cache or any
/// other wrapper in front of the warehouse sees every read), even on the local file system
/// where DataFusion has a store of its own, and never asks a data file's size: the
/// manifests hold it.
#[tokio::test]
async fn the_native_scan_reads_through_the_catalogs_store_without_heads() {
    use crate::faults::{Fault, FaultyStore, Op, Rule};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let (wh, _dir) = local_warehouse();
    let plain = Catalog::new(wh.clone());
    for d in 0..3 {
        let ident = TableIdent::parse(&format!("fleet.dev_{d}")).unwrap();
        let mut t = plain.create_table(&ident, iot_definition()).await.unwrap();
        for k in 0..2 {
            append_batch(
                &mut t,
                |s| rows(s, &format!("dev_{d}"), DAY0_US + k * DAY_US, 20, 0.0),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
    }
    // Two counting layers: data-file GETs on the outside, data-file HEADs inside.
    let count =
        |op| Rule::new(op, ".parquet", 1, Fault::Delay(Duration::ZERO)).times(usize::MAX / 2);
    let heads = Arc::new(FaultyStore::new(wh.store().clone(), vec![count(Op::Head)]));
    let gets = Arc::new(FaultyStore::new(heads.clone(), vec![count(Op::Get)]));
    let counted = Catalog::new(Warehouse::with_store(wh.url(), gets.clone()).unwrap());
    let e = QueryEngine::open(&counted, engine_options(true))
        .await
        .unwrap();
    let q = "SELECT device, count(*), sum(value) FROM fleet.all_devices GROUP BY device ORDER BY device";
    let plan = explain(&e, q).await;
    assert!(plan.contains("native_files=6"), "{plan}");
    let before = gets.fired.load(Ordering::SeqCst);
    let got = text(&e, q).await;
    assert!(got.contains("| dev_2  | 40 "), "{got}");
    let read = gets.fired.load(Ordering::SeqCst) - before;
    assert!(
        read >= 6,
        "every data file's footer is read through the catalog's store: {read}"
    );
    assert_eq!(
        heads.fired.load(Ordering::SeqCst),
        0,
        "no HEAD of a data file"
    );
}
