//! Metadata tables: `"dev_0042$snapshots"`, `$history`, `$manifests` and `$files`.
//!
//! They are built in memory from the table metadata (snapshots, history) or from the
//! snapshot's manifest list and manifests (manifests, files) when a query names them.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::TableProvider;
use futures::{stream, StreamExt, TryStreamExt};
use iceberg::spec::{ManifestStatus, Snapshot, TableMetadata};

/// The metadata tables a table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataTable {
    /// Every snapshot in the metadata: id, parent, time, operation, summary.
    Snapshots,
    /// The snapshot log: when each snapshot became current.
    History,
    /// The manifests of the snapshot.
    Manifests,
    /// The live data and delete files of the snapshot, with their column bounds.
    Files,
}

impl MetadataTable {
    /// Parse the part after `$`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "snapshots" => Some(Self::Snapshots),
            "history" => Some(Self::History),
            "manifests" => Some(Self::Manifests),
            "files" => Some(Self::Files),
            _ => None,
        }
    }
}

fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
}

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn map_field(name: &str) -> Field {
    let mut b = map_builder();
    let ty = datafusion::arrow::array::Array::data_type(&b.finish()).clone();
    Field::new(name, ty, true)
}

fn err(label: &str, what: &str, e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(format!("{label}: read {what}: {e}").into())
}

/// Build the metadata table `kind` of `table` as of `snapshot_id` (None: current).
pub async fn metadata_table(
    label: &str,
    table: &iceberg::table::Table,
    snapshot_id: Option<i64>,
    kind: MetadataTable,
) -> DFResult<Arc<dyn TableProvider>> {
    let metadata = table.metadata();
    let snapshot = match snapshot_id {
        Some(id) => Some(metadata.snapshot_by_id(id).ok_or_else(|| {
            DataFusionError::Plan(format!("{label} has no snapshot {id} (expired?)"))
        })?),
        None => metadata.current_snapshot(),
    };
    let batch = match kind {
        MetadataTable::Snapshots => snapshots(metadata)?,
        MetadataTable::History => history(metadata)?,
        MetadataTable::Manifests => manifests(label, table, snapshot).await?,
        MetadataTable::Files => files(label, table, snapshot).await?,
    };
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

fn snapshots(metadata: &TableMetadata) -> DFResult<RecordBatch> {
    let mut all: Vec<_> = metadata.snapshots().collect();
    all.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let mut committed_at = TimestampMillisecondBuilder::new().with_timezone("+00:00");
    let mut id = Int64Builder::new();
    let mut parent = Int64Builder::new();
    let mut seq = Int64Builder::new();
    let mut operation = StringBuilder::new();
    let mut manifest_list = StringBuilder::new();
    let mut summary = map_builder();
    for s in all {
        committed_at.append_value(s.timestamp_ms());
        id.append_value(s.snapshot_id());
        parent.append_option(s.parent_snapshot_id());
        seq.append_value(s.sequence_number());
        operation.append_value(s.summary().operation.as_str());
        manifest_list.append_value(s.manifest_list());
        let mut props: Vec<_> = s.summary().additional_properties.iter().collect();
        props.sort();
        for (k, v) in props {
            summary.keys().append_value(k);
            summary.values().append_value(v);
        }
        summary.append(true)?;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(committed_at.finish()),
        Arc::new(id.finish()),
        Arc::new(parent.finish()),
        Arc::new(seq.finish()),
        Arc::new(operation.finish()),
        Arc::new(manifest_list.finish()),
        Arc::new(summary.finish()),
    ];
    let schema = Schema::new(vec![
        Field::new("committed_at", ts_ms(), false),
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("sequence_number", DataType::Int64, false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("manifest_list", DataType::Utf8, false),
        map_field("summary"),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn history(metadata: &TableMetadata) -> DFResult<RecordBatch> {
    // A snapshot is a current ancestor if it is on the current snapshot's parent chain.
    let mut ancestors = std::collections::HashSet::new();
    let mut next = metadata.current_snapshot().map(|s| s.snapshot_id());
    while let Some(id) = next {
        if !ancestors.insert(id) {
            break;
        }
        next = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    let mut made_current_at = TimestampMillisecondBuilder::new().with_timezone("+00:00");
    let mut id = Int64Builder::new();
    let mut parent = Int64Builder::new();
    let mut is_ancestor = BooleanBuilder::new();
    for entry in metadata.history() {
        made_current_at.append_value(entry.timestamp_ms);
        id.append_value(entry.snapshot_id);
        parent.append_option(
            metadata
                .snapshot_by_id(entry.snapshot_id)
                .and_then(|s| s.parent_snapshot_id()),
        );
        is_ancestor.append_value(ancestors.contains(&entry.snapshot_id));
    }
    let schema = Schema::new(vec![
        Field::new("made_current_at", ts_ms(), false),
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("is_current_ancestor", DataType::Boolean, false),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(made_current_at.finish()),
            Arc::new(id.finish()),
            Arc::new(parent.finish()),
            Arc::new(is_ancestor.finish()),
        ],
    )?)
}

async fn manifest_list(
    label: &str,
    table: &iceberg::table::Table,
    snapshot: &Arc<Snapshot>,
) -> DFResult<Vec<iceberg::spec::ManifestFile>> {
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| err(label, snapshot.manifest_list(), e))?;
    Ok(list.entries().to_vec())
}

async fn manifests(
    label: &str,
    table: &iceberg::table::Table,
    snapshot: Option<&Arc<Snapshot>>,
) -> DFResult<RecordBatch> {
    let entries = match snapshot {
        Some(s) => manifest_list(label, table, s).await?,
        None => Vec::new(),
    };
    let mut path = StringBuilder::new();
    let mut length = Int64Builder::new();
    let mut spec = Int32Builder::new();
    let mut content = StringBuilder::new();
    let mut seq = Int64Builder::new();
    let mut added_by = Int64Builder::new();
    let mut added = Int32Builder::new();
    let mut existing = Int32Builder::new();
    let mut deleted = Int32Builder::new();
    let mut rows = Int64Builder::new();
    for m in &entries {
        path.append_value(&m.manifest_path);
        length.append_value(m.manifest_length);
        spec.append_value(m.partition_spec_id);
        content.append_value(format!("{:?}", m.content).to_lowercase());
        seq.append_value(m.sequence_number);
        added_by.append_value(m.added_snapshot_id);
        added.append_option(m.added_files_count.map(|v| v as i32));
        existing.append_option(m.existing_files_count.map(|v| v as i32));
        deleted.append_option(m.deleted_files_count.map(|v| v as i32));
        rows.append_option(
            m.added_rows_count
                .zip(m.existing_rows_count)
                .map(|(a, e)| (a + e) as i64),
        );
    }
    let schema = Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("length", DataType::Int64, false),
        Field::new("partition_spec_id", DataType::Int32, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Int64, false),
        Field::new("added_snapshot_id", DataType::Int64, false),
        Field::new("added_data_files_count", DataType::Int32, true),
        Field::new("existing_data_files_count", DataType::Int32, true),
        Field::new("deleted_data_files_count", DataType::Int32, true),
        Field::new("live_rows_count", DataType::Int64, true),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(path.finish()),
            Arc::new(length.finish()),
            Arc::new(spec.finish()),
            Arc::new(content.finish()),
            Arc::new(seq.finish()),
            Arc::new(added_by.finish()),
            Arc::new(added.finish()),
            Arc::new(existing.finish()),
            Arc::new(deleted.finish()),
            Arc::new(rows.finish()),
        ],
    )?)
}

async fn files(
    label: &str,
    table: &iceberg::table::Table,
    snapshot: Option<&Arc<Snapshot>>,
) -> DFResult<RecordBatch> {
    let entries = match snapshot {
        Some(s) => manifest_list(label, table, s).await?,
        None => Vec::new(),
    };
    let file_io = table.file_io().clone();
    let loaded: Vec<iceberg::spec::Manifest> = stream::iter(entries)
        .map(|m| {
            let file_io = file_io.clone();
            async move {
                m.load_manifest(&file_io)
                    .await
                    .map_err(|e| err(label, &m.manifest_path, e))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let metadata = table.metadata();
    let schema_for_names = snapshot
        .and_then(|s| s.schema(metadata).ok())
        .unwrap_or_else(|| metadata.current_schema().clone());
    let name_of = |id: &i32| {
        schema_for_names
            .name_by_field_id(*id)
            .map_or_else(|| id.to_string(), |n| n.to_string())
    };
    let mut content = StringBuilder::new();
    let mut path = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut spec = Int32Builder::new();
    let mut partition = StringBuilder::new();
    let mut records = Int64Builder::new();
    let mut size = Int64Builder::new();
    let mut seq = Int64Builder::new();
    let mut lower = map_builder();
    let mut upper = map_builder();
    let mut nulls = map_builder();
    for manifest in &loaded {
        for entry in manifest.entries() {
            if entry.status() == ManifestStatus::Deleted {
                continue;
            }
            let f = entry.data_file();
            content.append_value(format!("{:?}", f.content_type()).to_lowercase());
            path.append_value(f.file_path());
            format.append_value(f.file_format().to_string());
            spec.append_value(manifest.metadata().partition_spec().spec_id());
            partition.append_value(partition_text(
                manifest.metadata().partition_spec(),
                f.partition(),
            ));
            records.append_value(f.record_count() as i64);
            size.append_value(f.file_size_in_bytes() as i64);
            seq.append_option(entry.sequence_number());
            for (builder, bounds) in [
                (&mut lower, f.lower_bounds()),
                (&mut upper, f.upper_bounds()),
            ] {
                let mut sorted: Vec<_> = bounds.iter().collect();
                sorted.sort_by_key(|(id, _)| **id);
                for (id, datum) in sorted {
                    builder.keys().append_value(name_of(id));
                    builder.values().append_value(datum.to_string());
                }
                builder.append(true)?;
            }
            let mut sorted: Vec<_> = f.null_value_counts().iter().collect();
            sorted.sort_by_key(|(id, _)| **id);
            for (id, n) in sorted {
                nulls.keys().append_value(name_of(id));
                nulls.values().append_value(n.to_string());
            }
            nulls.append(true)?;
        }
    }
    let schema = Schema::new(vec![
        Field::new("content", DataType::Utf8, false),
        Field::new("file_path", DataType::Utf8, false),
        Field::new("file_format", DataType::Utf8, false),
        Field::new("spec_id", DataType::Int32, false),
        Field::new("partition", DataType::Utf8, false),
        Field::new("record_count", DataType::Int64, false),
        Field::new("file_size_in_bytes", DataType::Int64, false),
        Field::new("sequence_number", DataType::Int64, true),
        map_field("lower_bounds"),
        map_field("upper_bounds"),
        map_field("null_value_counts"),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(content.finish()),
            Arc::new(path.finish()),
            Arc::new(format.finish()),
            Arc::new(spec.finish()),
            Arc::new(partition.finish()),
            Arc::new(records.finish()),
            Arc::new(size.finish()),
            Arc::new(seq.finish()),
            Arc::new(lower.finish()),
            Arc::new(upper.finish()),
            Arc::new(nulls.finish()),
        ],
    )?)
}

/// `name=value/...` for a file's partition tuple (`""` when unpartitioned).
fn partition_text(spec: &iceberg::spec::PartitionSpec, values: &iceberg::spec::Struct) -> String {
    use iceberg::spec::{Literal, PrimitiveLiteral, Transform};
    spec.fields()
        .iter()
        .zip(values.iter())
        .map(|(field, value)| {
            let text = match value {
                None => "null".to_string(),
                Some(Literal::Primitive(p)) => match (field.transform, p) {
                    (Transform::Day, PrimitiveLiteral::Int(v)) => {
                        chrono::DateTime::from_timestamp(i64::from(*v) * 86_400, 0)
                            .map_or_else(|| v.to_string(), |d| d.format("%Y-%m-%d").to_string())
                    }
                    (Transform::Hour, PrimitiveLiteral::Int(v)) => {
                        chrono::DateTime::from_timestamp(i64::from(*v) * 3_600, 0)
                            .map_or_else(|| v.to_string(), |d| d.format("%Y-%m-%d-%H").to_string())
                    }
                    (_, p) => primitive_text(p),
                },
                Some(other) => format!("{other:?}"),
            };
            format!("{}={text}", field.name)
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn primitive_text(p: &iceberg::spec::PrimitiveLiteral) -> String {
    use iceberg::spec::PrimitiveLiteral;
    match p {
        PrimitiveLiteral::Int(v) => v.to_string(),
        PrimitiveLiteral::Long(v) => v.to_string(),
        PrimitiveLiteral::String(v) => v.clone(),
        PrimitiveLiteral::Boolean(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}
