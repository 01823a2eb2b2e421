//! Deletes written by other engines: a position-delete file and an equality-delete file,
//! committed as a `delete` snapshot the way Spark or Flink would, are applied by Floe's SQL
//! (merge-on-read), with pruning on and off, and a later append is not touched by them.
//! Compaction and retention never bring deleted rows back.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};

use floe_catalog::Catalog;
use floe_query::{EngineOptions, QueryEngine, ScanOptions};
use floe_table_format::iceberg;
use floe_table_format::{Action, Applied, CommitOptions, Table, TableDefinition, TableIdent};
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, ManifestListWriter, ManifestWriterBuilder,
    NestedField, Operation, PartitionKey, PrimitiveType, Schema, Snapshot, Struct, Summary,
    TableMetadata, TableMetadataBuilder, Type, UnboundPartitionSpec, MAIN_BRANCH,
};
use iceberg::writer::base_writer::equality_delete_writer::{
    EqualityDeleteFileWriterBuilder, EqualityDeleteWriterConfig,
};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::file::properties::WriterProperties;

use crate::support::*;

const ROWS: usize = 100;

fn rolling(
    table: &Table,
    schema: Arc<Schema>,
) -> RollingFileWriterBuilder<
    ParquetWriterBuilder,
    DefaultLocationGenerator,
    DefaultFileNameGenerator,
> {
    RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(WriterProperties::builder().build(), schema),
        table.file_io().clone(),
        DefaultLocationGenerator::new(table.metadata().as_ref()).unwrap(),
        DefaultFileNameGenerator::new(
            format!("delete-{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        ),
    )
}

/// A position-delete file removing rows `positions` of the data file at `path`, in that
/// file's `partition` (the default spec's), as Spark writes them.
async fn position_deletes(
    table: &Table,
    path: &str,
    partition: Struct,
    positions: &[i64],
) -> DataFile {
    let schema = Arc::new(
        Schema::builder()
            .with_fields(vec![
                Arc::new(NestedField::required(
                    2_147_483_546,
                    "file_path",
                    Type::Primitive(PrimitiveType::String),
                )),
                Arc::new(NestedField::required(
                    2_147_483_545,
                    "pos",
                    Type::Primitive(PrimitiveType::Long),
                )),
            ])
            .build()
            .unwrap(),
    );
    let arrow_schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
    let batch = RecordBatch::try_new(
        arrow_schema,
        vec![
            Arc::new(StringArray::from(vec![path; positions.len()])),
            Arc::new(Int64Array::from(positions.to_vec())),
        ],
    )
    .unwrap();
    let mut writer = rolling(table, schema).build();
    writer.write(&None, &batch).await.unwrap();
    let mut built = writer.close().await.unwrap();
    assert_eq!(built.len(), 1);
    let mut b = built.pop().unwrap();
    b.content(DataContentType::PositionDeletes)
        .partition(partition)
        .partition_spec_id(table.metadata().default_partition_spec_id());
    b.build().unwrap()
}

/// An equality-delete file on `ts`: every row (of an older sequence number, in `partition`
/// when one is given) whose `ts` is one of `batch`'s is deleted.
async fn equality_deletes(
    table: &Table,
    partition: Option<Struct>,
    batch: RecordBatch,
) -> DataFile {
    let schema = table.metadata().current_schema().clone();
    let ts_id = schema.field_by_name("ts").unwrap().id;
    let config = EqualityDeleteWriterConfig::new(vec![ts_id], schema.clone()).unwrap();
    let projected = Arc::new(
        iceberg::arrow::arrow_schema_to_schema(config.projected_arrow_schema_ref()).unwrap(),
    );
    let key = partition.map(|data| {
        PartitionKey::new(
            table.metadata().default_partition_spec().as_ref().clone(),
            schema.clone(),
            data,
        )
    });
    let mut writer = EqualityDeleteFileWriterBuilder::new(rolling(table, projected), config)
        .build(key)
        .await
        .unwrap();
    writer.write(batch).await.unwrap();
    let mut files = writer.close().await.unwrap();
    assert_eq!(files.len(), 1);
    files.pop().unwrap()
}

/// Commit `deletes` as one `delete` snapshot: the parent's manifests plus a delete manifest.
async fn commit_deletes(table: &mut Table, deletes: Vec<DataFile>) {
    let meta = table.metadata().clone();
    let parent = meta.current_snapshot().unwrap().clone();
    let snapshot_id = (uuid::Uuid::new_v4().as_u64_pair().0 >> 2) as i64;
    let seq = meta.next_sequence_number();
    let io = table.file_io().clone();
    let id = uuid::Uuid::new_v4();
    let manifest_path = format!("{}/metadata/{id}-m0.avro", table.location());
    let mut w = ManifestWriterBuilder::new(
        io.new_output(&manifest_path).unwrap(),
        Some(snapshot_id),
        meta.current_schema().clone(),
        meta.default_partition_spec().as_ref().clone(),
    )
    .build_v2_deletes();
    for f in &deletes {
        w.add_file(f.clone(), seq).unwrap();
    }
    let delete_manifest = w.write_manifest_file().await.unwrap();
    let existing = table
        .iceberg()
        .unwrap()
        .manifest_list_reader(&parent)
        .load()
        .await
        .unwrap()
        .consume_entries();
    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{id}.avro",
        table.location()
    );
    let mut list = ManifestListWriter::v2(
        io.new_output(&list_path).unwrap().writer().await.unwrap(),
        snapshot_id,
        Some(parent.snapshot_id()),
        seq,
    );
    list.add_manifests(existing.into_iter().chain([delete_manifest]))
        .unwrap();
    list.close().await.unwrap();
    let mut props: HashMap<String, String> = parent.summary().additional_properties.clone();
    props.retain(|k, _| k.starts_with("total-"));
    props.insert("total-delete-files".into(), deletes.len().to_string());
    props.insert("engine-name".into(), "test-other-engine".into());
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(parent.snapshot_id()))
        .with_sequence_number(seq)
        .with_summary(Summary {
            operation: Operation::Delete,
            additional_properties: props,
        })
        .with_schema_id(meta.current_schema_id())
        .with_timestamp_ms(meta.last_updated_ms() + 1)
        .build();
    let next = TableMetadataBuilder::new_from_metadata(
        meta.as_ref().clone(),
        Some(table.metadata_location().to_string()),
    )
    .set_branch_snapshot(snapshot, MAIN_BRANCH)
    .unwrap()
    .build()
    .unwrap()
    .metadata;
    // Another engine's prebuilt commit, through the one commit driver.
    struct Prebuilt(Option<TableMetadata>);
    #[async_trait::async_trait]
    impl Action for Prebuilt {
        fn kind(&self) -> &'static str {
            "prebuilt"
        }
        async fn apply(&mut self, _: &Table, _: u32) -> floe_table_format::Result<Option<Applied>> {
            Ok(self.0.take().map(Applied::new))
        }
    }
    let before = table.version();
    let done = table
        .commit(
            "prebuilt-delete",
            &Default::default(),
            &mut Prebuilt(Some(next)),
        )
        .await
        .unwrap();
    assert_eq!(Some(done.version), before.next());
    assert!(!done.already_committed);
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[tokio::test]
async fn position_and_equality_deletes_are_applied_on_read() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ident = TableIdent::parse("fleet.dels").unwrap();
        // Unpartitioned, so the equality delete applies to every older data file.
        let mut t = cat
            .create_table(
                &ident,
                TableDefinition {
                    partition: UnboundPartitionSpec::builder().build(),
                    ..iot_definition()
                },
            )
            .await
            .unwrap();
        // File A: minutes 0..100, values 0..100; file B: minutes 1000..1100, values 1000..
        for start in [0i64, 1000] {
            append_batch(
                &mut t,
                |s| rows(s, "dev", DAY0_US + start * 60_000_000, ROWS, start as f64),
                CommitOptions::default(),
            )
            .await
            .unwrap();
        }
        // Which file is A: the one holding minute 0 (read its lower bound from $files).
        let e = QueryEngine::open(&cat, EngineOptions::default())
            .await
            .unwrap();
        let files = e
            .sql("SELECT file_path, lower_bounds['value'] AS lo FROM fleet.\"dels$files\" ORDER BY lo")
            .await
            .unwrap();
        let files = arrow::compute::concat_batches(&files[0].schema(), &files).unwrap();
        let path_a = column::<StringArray>(&files, "file_path")
            .value(0)
            .to_string();

        // Position deletes: rows 0..10 and 50 of A. Equality deletes on ts: B's first six
        // minutes, and A's minute 60.
        let pos: Vec<i64> = (0..10).chain([50]).collect();
        let pd = position_deletes(&t, &path_a, Struct::empty(), &pos).await;
        let eq_rows = {
            let s = floe_table_format::DataWriter::new(&t)
                .unwrap()
                .arrow_schema()
                .clone();
            let b = rows(&s, "dev", DAY0_US + 1000 * 60_000_000, 6, 0.0);
            let a60 = rows(&s, "dev", DAY0_US + 60 * 60_000_000, 1, 0.0);
            arrow::compute::concat_batches(&s, &[b, a60]).unwrap()
        };
        let ed = equality_deletes(&t, None, eq_rows).await;
        commit_deletes(&mut t, vec![pd, ed]).await;

        // File C, appended after the deletes, repeats B's first minute: a newer row the
        // equality delete must not touch.
        append_batch(
            &mut t,
            |s| rows(s, "dev", DAY0_US + 1000 * 60_000_000, 1, 5000.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();

        let mut want_values: Vec<f64> = (0..ROWS as i64)
            .filter(|i| !pos.contains(i) && *i != 60)
            .map(|i| i as f64)
            .chain((6..ROWS).map(|i| 1000.0 + i as f64))
            .chain([5000.0])
            .collect();
        want_values.sort_by(f64::total_cmp);

        for pruning in [true, false] {
            let e = QueryEngine::open(
                &cat,
                EngineOptions {
                    scan: ScanOptions {
                        pruning,
                        batch_size: 16,
                        ..Default::default()
                    },
                    target_partitions: Some(2),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            for table in ["fleet.dels", "fleet.all_devices"] {
                let got = e
                    .sql(&format!("SELECT value FROM {table} ORDER BY value"))
                    .await
                    .unwrap();
                let got: Vec<f64> = got
                    .iter()
                    .flat_map(|b| column::<Float64Array>(b, "value").values().to_vec())
                    .collect();
                assert_eq!(got, want_values, "{backend} {table} pruning={pruning}");
                // Filters and counts see the same rows.
                let got = e
                    .sql(&format!(
                        "SELECT count(*) AS n FROM {table} WHERE value < 100 OR value >= 5000"
                    ))
                    .await
                    .unwrap();
                let n = column::<Int64Array>(&got[0], "n").value(0);
                assert_eq!(n as usize, ROWS - pos.len() - 1 + 1, "{backend} {table}");
            }
            // The plan says delete files are merged: A and B (with deletes) by iceberg's
            // reader, C (appended after them) by the native Parquet scan.
            let (plan, scans) = e.explain("SELECT * FROM fleet.dels").await.unwrap();
            assert_eq!(scans[0].tables[0].delete_files, 2, "{backend}");
            let plan = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            assert!(plan.contains("native_files=1"), "{backend}: {plan}");
        }
        // Time travel to before the deletes: every row of A and B is back.
        let before = t
            .metadata()
            .snapshots()
            .filter(|s| s.summary().operation == Operation::Append)
            .map(|s| (s.sequence_number(), s.snapshot_id()))
            .filter(|(seq, _)| *seq == 2)
            .map(|(_, id)| id)
            .next()
            .unwrap();
        let e = QueryEngine::open(&cat, EngineOptions::default())
            .await
            .unwrap();
        let got = e
            .sql(&format!(
                "SELECT count(*) AS n FROM fleet.\"dels@{before}\""
            ))
            .await
            .unwrap();
        assert_eq!(
            column::<Int64Array>(&got[0], "n").value(0) as usize,
            2 * ROWS,
            "{backend}"
        );
    }
}

/// `SELECT count(*)` of `query` (a FROM clause and optional WHERE) through Floe's SQL.
async fn sql_count(cat: &Catalog, query: &str) -> usize {
    let e = QueryEngine::open(cat, EngineOptions::default())
        .await
        .unwrap();
    let got = e
        .sql(&format!("SELECT count(*) AS n FROM {query}"))
        .await
        .unwrap();
    column::<Int64Array>(&got[0], "n").value(0) as usize
}

/// The live files of `t`: (data files by partition, delete files).
async fn live_by_kind(t: &Table) -> (HashMap<String, usize>, usize) {
    let mut data: HashMap<String, usize> = HashMap::new();
    let mut deletes = 0;
    for f in floe_table_format::rewrite::live_files(t).await.unwrap() {
        match f.data_file.content_type() {
            DataContentType::Data => {
                *data
                    .entry(format!("{:?}", f.data_file.partition()))
                    .or_default() += 1
            }
            _ => deletes += 1,
        }
    }
    (data, deletes)
}

/// Compaction beside deletes another engine wrote (Spark merge-on-read): a day with a
/// position or an equality delete file is skipped, never rewritten (a rewritten file would
/// carry a newer sequence number, out of the deletes' reach, and the deleted rows would come
/// back); the delete file is never binned as data; a day without deletes is still
/// compacted. Floe's SQL and pyiceberg count the same rows before and after.
#[tokio::test]
async fn compaction_never_resurrects_rows_under_delete_files() {
    for (backend, wh) in all_warehouses() {
        for kind in ["position", "equality"] {
            let cat = Catalog::new(wh.clone());
            let name = format!("fleet.c_{kind}");
            let ident = TableIdent::parse(&name).unwrap();
            let mut t = cat.create_table(&ident, iot_definition()).await.unwrap();
            // Days 0 and 1 (day(ts) partitions), three files of ten rows each; values are
            // 100 * day + minute, so values 0..3 are day 0's first three rows.
            let mut day0 = None;
            for day in 0..2i64 {
                for k in 0..3i64 {
                    append_batch(
                        &mut t,
                        |s| {
                            rows(
                                s,
                                "dev",
                                DAY0_US + day * DAY_US + k * 10 * 60_000_000,
                                10,
                                (100 * day + 10 * k) as f64,
                            )
                        },
                        CommitOptions::default(),
                    )
                    .await
                    .unwrap();
                }
                if day == 0 {
                    let first = floe_table_format::rewrite::live_files(&t)
                        .await
                        .unwrap()
                        .into_iter()
                        .min_by_key(|f| f.sequence_number)
                        .unwrap()
                        .data_file;
                    day0 = Some(first);
                }
            }
            let day0 = day0.unwrap();
            // Another engine deletes day 0's first three rows (values 0, 1, 2).
            let delete = match kind {
                "position" => {
                    position_deletes(&t, day0.file_path(), day0.partition().clone(), &[0, 1, 2])
                        .await
                }
                _ => {
                    let s = floe_table_format::DataWriter::new(&t)
                        .unwrap()
                        .arrow_schema()
                        .clone();
                    let batch = rows(&s, "dev", DAY0_US, 3, 0.0);
                    equality_deletes(&t, Some(day0.partition().clone()), batch).await
                }
            };
            commit_deletes(&mut t, vec![delete]).await;
            let what = format!("{backend} {kind}");
            assert_eq!(sql_count(&cat, &name).await, 57, "{what}: deletes applied");
            let day0_key = format!("{:?}", day0.partition());
            let (data, deletes) = live_by_kind(&t).await;
            assert_eq!((data.len(), data[&day0_key], deletes), (2, 3, 1), "{what}");

            let r = floe_table_format::rewrite::compact(&mut t, 64 << 20)
                .await
                .unwrap();
            assert_eq!(
                r.skipped_partitions_with_deletes, 1,
                "{what}: day 0 skipped"
            );
            let rewrite = r.rewrite.expect("day 1 has small files to compact");
            assert_eq!(
                (rewrite.removed, rewrite.added),
                (3, 1),
                "{what}: day 1 only"
            );

            let t = Table::load(&wh, &ident).await.unwrap();
            let (data, deletes) = live_by_kind(&t).await;
            assert_eq!(deletes, 1, "{what}: the delete file is still live");
            assert_eq!(data[&day0_key], 3, "{what}: day 0 (with deletes) untouched");
            assert_eq!(
                data.iter().find(|(k, _)| **k != day0_key).map(|(_, n)| *n),
                Some(1),
                "{what}: day 1 (no deletes) compacted into one file"
            );
            assert_eq!(sql_count(&cat, &name).await, 57, "{what}: no row came back");
            assert_eq!(
                sql_count(&cat, &format!("{name} WHERE value < 3")).await,
                0,
                "{what}: the deleted rows stay deleted"
            );
            // pyiceberg (no equality deletes yet, so position only) counts the same rows.
            if kind == "position" && backend != "memory" {
                let got = run_python(&["tests/interop/read_table.py", t.metadata_location()]);
                assert_eq!(got["row_count"], 57, "{what}: {got}");
            }
            // The CLI says what it left alone and why.
            if backend == "file" {
                let out = floe_ok(wh.url(), &["compact", &name]);
                let out = String::from_utf8_lossy(&out.stdout);
                assert!(out.contains("nothing to compact"), "{what}: {out}");
                assert!(
                    out.contains("skipped 1 partition(s) with delete files"),
                    "{what}: {out}"
                );
            }
        }
    }
}

/// Retention judges files by their `ts` bounds; an equality delete on `ts` has such bounds
/// too. Retention drops old data files only: dropping the delete file would bring back the
/// rows it deletes from files that are not old.
#[tokio::test]
async fn retention_never_drops_a_delete_file() {
    for (backend, wh) in all_warehouses() {
        let cat = Catalog::new(wh.clone());
        let ident = TableIdent::parse("fleet.r").unwrap();
        // Unpartitioned, so file A spans day 0 and day 10.
        let mut t = cat
            .create_table(
                &ident,
                TableDefinition {
                    partition: UnboundPartitionSpec::builder().build(),
                    ..iot_definition()
                },
            )
            .await
            .unwrap();
        // A: one row at day 0 (value 0) and one at day 10 (value 1): not old as a whole.
        append_batch(
            &mut t,
            |s| {
                let old = rows(s, "dev", DAY0_US, 1, 0.0);
                let new = rows(s, "dev", DAY0_US + 10 * DAY_US, 1, 1.0);
                arrow::compute::concat_batches(s, &[old, new]).unwrap()
            },
            CommitOptions::default(),
        )
        .await
        .unwrap();
        // C: five rows at day 0 from minute 500: old.
        append_batch(
            &mut t,
            |s| rows(s, "dev", DAY0_US + 500 * 60_000_000, 5, 100.0),
            CommitOptions::default(),
        )
        .await
        .unwrap();
        // Another engine deletes A's day-0 row by equality on ts: its bounds are day 0.
        let s = floe_table_format::DataWriter::new(&t)
            .unwrap()
            .arrow_schema()
            .clone();
        let ed = equality_deletes(&t, None, rows(&s, "dev", DAY0_US, 1, 0.0)).await;
        commit_deletes(&mut t, vec![ed]).await;
        assert_eq!(sql_count(&cat, "fleet.r").await, 6, "{backend}");

        // Drop what is older than day 1.
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let older_than = std::time::Duration::from_micros((now_us - DAY0_US - DAY_US) as u64);
        let r = floe_table_format::rewrite::retain(&mut t, older_than, "ts")
            .await
            .unwrap()
            .expect("C is old");
        assert_eq!(r.removed, 1, "{backend}: only C, never the delete file");
        let t = Table::load(&wh, &ident).await.unwrap();
        let (_, deletes) = live_by_kind(&t).await;
        assert_eq!(deletes, 1, "{backend}: the delete file is still live");
        assert_eq!(
            sql_count(&cat, "fleet.r").await,
            1,
            "{backend}: A's day-10 row only; its deleted day-0 row stays deleted"
        );
    }
}
