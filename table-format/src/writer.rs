//! Writing Parquet data files for a table: batches are split by the table's partition
//! spec and streamed into one rolling Parquet file per partition, with Iceberg field ids
//! and per-column metrics, through iceberg's writer stack.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef as ArrowSchemaRef;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::metadata::clip;
use crate::table::TableView;

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// The table property of the size at which a data file rolls over.
const TARGET_FILE_SIZE: &str = "write.target-file-size-bytes";
/// The table property capping a Parquet row group's size (Iceberg's name; estimated,
/// compressed bytes). Unset: no byte cap (see [`set_default_row_group_bytes`]).
pub const ROW_GROUP_SIZE: &str = "write.parquet.row-group-size-bytes";
/// The table property capping a Parquet data page's size (Iceberg's name; default 1 MiB).
pub const PAGE_SIZE: &str = "write.parquet.page-size-bytes";
/// The table property capping a Parquet data page's rows (Iceberg's name; default 20,000).
const PAGE_ROW_LIMIT: &str = "write.parquet.page-row-limit";

/// The row-group byte cap of tables that do not set [`ROW_GROUP_SIZE`]; 0 is none.
static DEFAULT_ROW_GROUP_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Set this process's row-group byte cap for tables that do not set [`ROW_GROUP_SIZE`]
/// (`None`: row groups end at [`ROW_GROUP_ROWS`] only). The gateway build lowers it to
/// bound its memory; a table's own property always wins.
pub fn set_default_row_group_bytes(bytes: Option<usize>) {
    DEFAULT_ROW_GROUP_BYTES.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

fn default_row_group_bytes() -> Option<usize> {
    Some(DEFAULT_ROW_GROUP_BYTES.load(Ordering::Relaxed)).filter(|n| *n > 0)
}

/// Rows per Parquet row group. A row group is buffered in memory until it is flushed, so
/// this bounds a writer's memory (about 2–4 MB per open partition for IoT rows) while
/// keeping row-group statistics useful for pruning.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The table's target data-file size ([`TARGET_FILE_SIZE`], else Iceberg's default); an
/// unreadable value counts as the default (writing reports it).
pub fn target_file_size(table: &TableView) -> u64 {
    table
        .metadata()
        .properties()
        .get(TARGET_FILE_SIZE)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(
            iceberg::spec::TableProperties::PROPERTY_WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT as u64,
        )
}

struct Partitioned {
    splitter: RecordBatchPartitionSplitter,
    writer: FanoutWriter<Builder>,
}

enum Inner {
    Unpartitioned(Box<UnpartitionedWriter<Builder>>),
    Partitioned(Box<Partitioned>),
}

/// Streams record batches into a table's data files. Nothing is visible to readers until
/// the returned files are committed with [`Table::append`].
pub struct DataWriter {
    inner: Inner,
    arrow_schema: ArrowSchemaRef,
    table: String,
    rows: u64,
}

impl DataWriter {
    /// A writer for `table`'s current schema and default partition spec. Data file names
    /// start with a fresh UUID, so no two writers (nor two runs of one commit) ever write
    /// the same object.
    pub fn new(table: &TableView) -> Result<Self> {
        Self::with_schema(table, table.metadata().current_schema().clone())
    }

    /// A writer whose data files are named `<prefix>-<n>.parquet` (n = 00000, 00001, …),
    /// each in its partition's folder under the table's `data/`. The caller owns the
    /// prefix's uniqueness: sync stages its combined files under a name a rerun finds again.
    pub fn with_file_prefix(table: &TableView, file_prefix: String) -> Result<Self> {
        Self::build(
            table,
            table.metadata().current_schema().clone(),
            file_prefix,
        )
    }

    /// A writer for `table`'s default partition spec whose files carry `schema`'s field
    /// ids: a schema evolution's plan (see [`crate::evolve::plan`]), committed with
    /// [`crate::Table::append_evolving`].
    pub fn with_schema(table: &TableView, schema: iceberg::spec::SchemaRef) -> Result<Self> {
        Self::build(table, schema, uuid::Uuid::new_v4().to_string())
    }

    fn build(
        table: &TableView,
        schema: iceberg::spec::SchemaRef,
        file_prefix: String,
    ) -> Result<Self> {
        let metadata = table.metadata();
        let spec = metadata.default_partition_spec().clone();
        let arrow_schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&schema)
                .map_err(|e| Error::iceberg(format!("arrow schema of {}", table.name()), e))?,
        );
        let codec = metadata
            .properties()
            .get("write.parquet.compression-codec")
            .map(|s| s.to_ascii_lowercase());
        let compression = match codec.as_deref() {
            None | Some("zstd") => Compression::ZSTD(ZstdLevel::default()),
            Some("uncompressed") | Some("none") => Compression::UNCOMPRESSED,
            Some("snappy") => Compression::SNAPPY,
            Some("gzip") => Compression::GZIP(Default::default()),
            Some("lz4") => Compression::LZ4_RAW,
            Some("brotli") => Compression::BROTLI(Default::default()),
            Some(other) => {
                return Err(Error::InvalidArgument {
                    argument: format!("write.parquet.compression-codec of {}", table.name()),
                    reason: format!(
                        "unsupported codec '{}' (zstd, snappy, gzip, lz4, brotli, uncompressed)",
                        clip(other)
                    ),
                })
            }
        };
        // Only the properties a write needs are parsed (iceberg's `table_properties()` would
        // refuse the table over any unparsable one, used here or not).
        let positive = |key: &str, unit: &str| -> Result<Option<usize>> {
            metadata
                .properties()
                .get(key)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Error::InvalidArgument {
                            argument: format!("{key} of {}", table.name()),
                            reason: format!("'{}' is not a positive number of {unit}", clip(v)),
                        })
                })
                .transpose()
        };
        // Iceberg's standard page-row limit (default 20,000): smaller pages make the page
        // index prune finer. Parquet checks the limit once per write batch.
        let page_rows = positive(PAGE_ROW_LIMIT, "rows")?.unwrap_or(20_000);
        let target_file_bytes = positive(TARGET_FILE_SIZE, "bytes")?.unwrap_or(
            iceberg::spec::TableProperties::PROPERTY_WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        );
        // A row group is buffered in memory until it is flushed: its size bounds a writer's
        // memory. Rows cap it always; bytes (estimated, compressed) when the table or the
        // build says so.
        let row_group_bytes = positive(ROW_GROUP_SIZE, "bytes")?.or_else(default_row_group_bytes);
        let page_bytes =
            positive(PAGE_SIZE, "bytes")?.unwrap_or(parquet::file::properties::DEFAULT_PAGE_SIZE);
        let writer_props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(row_group_bytes)
            .set_data_page_size_limit(page_bytes)
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows.min(1024))
            .build();
        let location = DefaultLocationGenerator::new(metadata.as_ref())
            .map_err(|e| Error::iceberg("data location", e))?;
        let names = DefaultFileNameGenerator::new(file_prefix, None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(writer_props, schema.clone()),
            target_file_bytes,
            table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let inner = if spec.is_unpartitioned() {
            Inner::Unpartitioned(Box::new(UnpartitionedWriter::new(builder)))
        } else {
            Inner::Partitioned(Box::new(Partitioned {
                splitter: RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
                    .map_err(|e| Error::iceberg("partition splitter", e))?,
                writer: FanoutWriter::new(builder),
            }))
        };
        Ok(Self {
            inner,
            arrow_schema,
            table: table.name().to_string(),
            rows: 0,
        })
    }

    /// The Arrow schema batches must have (see [`crate::ingest::conform`]).
    pub fn arrow_schema(&self) -> &ArrowSchemaRef {
        &self.arrow_schema
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Write one batch, which must already have [`Self::arrow_schema`].
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let n = batch.num_rows() as u64;
        let step = format!("write data files of {}", self.table);
        match &mut self.inner {
            Inner::Unpartitioned(w) => w.write(batch).await.map_err(|e| Error::iceberg(step, e))?,
            Inner::Partitioned(p) => {
                let Partitioned { splitter, writer } = p.as_mut();
                let parts = splitter
                    .split(&batch)
                    .map_err(|e| Error::iceberg(format!("partition rows of {}", self.table), e))?;
                for (key, part) in parts {
                    writer
                        .write(key, part)
                        .await
                        .map_err(|e| Error::iceberg(step.clone(), e))?;
                }
            }
        }
        self.rows += n;
        Ok(())
    }

    /// Finish every open file and return the data files to commit.
    pub async fn close(self) -> Result<Vec<DataFile>> {
        let step = format!("finish data files of {}", self.table);
        match self.inner {
            Inner::Unpartitioned(w) => w.close().await,
            Inner::Partitioned(p) => p.writer.close().await,
        }
        .map_err(|e| Error::iceberg(step, e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::DataType;
    use object_store::ObjectStoreExt;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::schema::{self, DEFAULT_PARTITION};
    use crate::{Table, TableDefinition, TableIdent, Warehouse};

    /// `n` readings of one device within one day.
    fn rows(schema: &ArrowSchemaRef, n: usize) -> RecordBatch {
        let tz = match schema.field(1).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            other => panic!("ts is {other}"),
        };
        let ts: Vec<i64> = (0..n as i64).map(|i| 1_767_225_600_000_000 + i).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["d1"; n])),
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone_opt(tz)),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                    if i % 2 == 0 {
                        "power_kw"
                    } else {
                        "temp_c"
                    }
                }))),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| ((i * 7919) % 1000) as f64),
                )),
            ],
        )
        .unwrap()
    }

    /// Write 20,000 rows in 1,000-row batches to a table with `properties`; return the
    /// data file's row groups and the first row group's data pages of `value`.
    async fn write(properties: &[(&str, &str)]) -> Result<(usize, usize)> {
        let wh = Warehouse::open(&format!("memory://writer-{}", uuid::Uuid::new_v4()))?;
        let s = schema::default_iot_schema();
        let definition = TableDefinition {
            partition: schema::parse_partition_spec(DEFAULT_PARTITION, &s)?,
            schema: s,
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        };
        let table = Table::create(&wh, &TableIdent::parse("w.t")?, definition).await?;
        let mut w = DataWriter::new(&table)?;
        for _ in 0..20 {
            w.write(rows(w.arrow_schema(), 1_000)).await?;
        }
        let files = w.close().await?;
        assert_eq!(files.len(), 1);
        let body = wh
            .store()
            .get(&wh.object_path(files[0].file_path())?)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = SerializedFileReader::new(body).unwrap();
        let groups = reader.metadata().num_row_groups();
        let pages = reader
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(3)
            .unwrap()
            .filter(|p| !matches!(p, Ok(Page::DictionaryPage { .. })))
            .count();
        Ok((groups, pages))
    }

    #[tokio::test]
    async fn row_group_and_page_sizes_follow_the_table_and_the_build_default() {
        let (groups, pages) = write(&[]).await.unwrap();
        assert_eq!(groups, 1, "20,000 rows fit one row group by default");
        assert_eq!(pages, 1, "and one page (20,000-row limit, 1 MiB)");

        let (groups, _) = write(&[(ROW_GROUP_SIZE, "8192")]).await.unwrap();
        assert!(groups >= 3, "8 KiB row groups: {groups}");
        let (groups, pages) = write(&[(PAGE_SIZE, "4096")]).await.unwrap();
        assert_eq!(groups, 1);
        assert!(pages >= 3, "4 KiB pages: {pages}");

        // The build's default applies to tables without the property, not over it.
        set_default_row_group_bytes(Some(8192));
        let defaulted = write(&[]).await.unwrap().0;
        let own = write(&[(ROW_GROUP_SIZE, "134217728")]).await.unwrap().0;
        set_default_row_group_bytes(None);
        assert!(
            defaulted >= 3,
            "the default's 8 KiB row groups: {defaulted}"
        );
        assert_eq!(own, 1, "the table's 128 MiB wins over the default");

        for key in [ROW_GROUP_SIZE, PAGE_SIZE] {
            let e = write(&[(key, "lots")]).await.unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("lots"), "{e}");
        }
    }
}
