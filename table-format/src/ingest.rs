//! Reading input files (Parquet, CSV, newline-delimited JSON) as record batches that fit a
//! table's schema. Input is streamed batch by batch; a column that does not fit is one
//! clear error naming the file and the column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use arrow::util::display::FormatOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::evolve::Evolution;

/// Rows per batch read from an input file. Small enough that a batch and its partition
/// split (iceberg's splitter builds a value per row) stay a few hundred KB: 8,192 cost
/// about 1 MiB more peak memory in `floe append`, and no time.
pub const BATCH_ROWS: usize = 2048;

/// The formats `floe append` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

impl InputFormat {
    /// Guess the format from a file name's extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("parquet") | Some("pq") => Ok(Self::Parquet),
            Some("csv") => Ok(Self::Csv),
            Some("json") | Some("ndjson") | Some("jsonl") => Ok(Self::Json),
            _ => Err(Error::Input {
                input: path.display().to_string(),
                reason: "unknown format: expected a .parquet, .csv, .json, .ndjson or .jsonl file"
                    .into(),
            }),
        }
    }
}

/// A stream of batches from one input file, conformed to a target schema.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

fn input_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Input {
        input: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Read the Arrow schema of a Parquet file (for `floe create --like`).
pub fn parquet_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).map_err(|e| input_err(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| input_err(path, e))?;
    Ok(builder.schema().clone())
}

/// Open `path` and return its batches conformed to `target`.
pub fn read_file(path: &Path, target: &SchemaRef) -> Result<BatchIter> {
    let format = InputFormat::from_path(path)?;
    let file = File::open(path).map_err(|e| input_err(path, e))?;
    let name = path.display().to_string();
    let target = target.clone();
    match format {
        InputFormat::Parquet => {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| input_err(path, e))?;
            check_columns(builder.schema().as_ref(), &target, &name)?;
            let reader = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| input_err(path, e))?;
            Ok(conformed(reader, target, name))
        }
        InputFormat::Csv => {
            let mut buf = BufReader::new(file);
            let mut header = String::new();
            buf.read_line(&mut header).map_err(|e| input_err(path, e))?;
            let columns: Vec<String> = header
                .trim_end_matches(['\r', '\n'])
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_string())
                .collect();
            if header.trim().is_empty() {
                return Err(input_err(
                    path,
                    "empty file: a CSV input starts with a header line",
                ));
            }
            // Read every column as text and cast to the table's types, so a bad value is
            // reported against its column by name.
            let text_schema = Arc::new(ArrowSchema::new(
                columns
                    .iter()
                    .map(|c| Field::new(c, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            check_columns(&text_schema, &target, &name)?;
            let reader = arrow::csv::ReaderBuilder::new(text_schema)
                .with_header(false)
                .with_batch_size(BATCH_ROWS)
                .build(buf)
                .map_err(|e| input_err(path, e))?;
            Ok(conformed(reader, target, name))
        }
        InputFormat::Json => {
            let plain = Arc::new(ArrowSchema::new(
                target
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            ));
            let reader = arrow::json::ReaderBuilder::new(plain)
                .with_batch_size(BATCH_ROWS)
                .with_strict_mode(true)
                .build(BufReader::new(file))
                .map_err(|e| input_err(path, e))?;
            Ok(conformed(reader, target, name))
        }
    }
}

/// Each batch of an Arrow reader, conformed to `target`; read errors name the input.
fn conformed<I>(reader: I, target: SchemaRef, name: String) -> BatchIter
where
    I: Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send + 'static,
{
    Box::new(reader.map(move |b| {
        let b = b.map_err(|e| Error::Input {
            input: name.clone(),
            reason: e.to_string(),
        })?;
        conform(&b, &target, &name)
    }))
}

/// Refuse inputs with columns the table does not have, or missing required ones.
fn check_columns(source: &ArrowSchema, target: &ArrowSchema, input: &str) -> Result<()> {
    for f in source.fields() {
        if target.field_with_name(f.name()).is_err() {
            return Err(Error::SchemaMismatch {
                input: input.to_string(),
                column: f.name().clone(),
                reason: format!(
                    "not in the table schema (table columns: {})",
                    target
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    for f in target.fields() {
        if !f.is_nullable() && source.field_with_name(f.name()).is_err() {
            return Err(Error::SchemaMismatch {
                input: input.to_string(),
                column: f.name().clone(),
                reason: "required by the table but missing from the input".into(),
            });
        }
    }
    Ok(())
}

/// Reorder, cast and fill a batch so it has exactly the `target` schema (with its field
/// ids). Missing nullable columns become nulls; a value that cannot be cast, a null in a
/// required column, or an unknown column is an error naming the column.
pub fn conform(batch: &RecordBatch, target: &SchemaRef, input: &str) -> Result<RecordBatch> {
    check_columns(batch.schema().as_ref(), target, input)?;
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match batch.column_by_name(field.name()) {
            None => new_null_array(field.data_type(), batch.num_rows()),
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => cast_with_options(c, field.data_type(), &options).map_err(|e| {
                Error::SchemaMismatch {
                    input: input.to_string(),
                    column: field.name().clone(),
                    reason: format!(
                        "cannot convert {} to {}: {e}",
                        c.data_type(),
                        field.data_type()
                    ),
                }
            })?,
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::SchemaMismatch {
                input: input.to_string(),
                column: field.name().clone(),
                reason: format!("{} null value(s) in a required column", column.null_count()),
            });
        }
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(|e| Error::SchemaMismatch {
        input: input.to_string(),
        column: "*".into(),
        reason: e.to_string(),
    })
}

/// What [`append_files`] committed.
#[derive(Debug, Clone)]
pub struct AppendReport {
    /// Rows appended.
    pub rows: u64,
    /// Data files written.
    pub data_files: usize,
    /// Bytes of data files written.
    pub bytes: u64,
    /// The commit.
    pub commit: crate::append::CommitReport,
}

/// Append input files to `table` as one commit: every file is read, conformed to the
/// table's schema and written as data files; only if all of them succeed is the append
/// committed. On any error nothing is committed (written files stay unreferenced). The
/// schema evolves only if the table's `floe.schema.evolution` property asks for it.
pub async fn append_files(
    table: &mut crate::table::Table,
    files: &[std::path::PathBuf],
    options: crate::append::CommitOptions,
) -> Result<AppendReport> {
    append_files_evolving(table, files, options, None).await
}

/// Times [`append_files_evolving`] writes the data again when the schema moved underneath
/// its commit (another writer took a planned field id).
pub const SCHEMA_REPLANS: u32 = 4;

/// [`append_files`] with an evolution mode for this call (`None`: the table's
/// `floe.schema.evolution` property; `floe append --evolve` passes
/// [`Evolution::AddColumns`]). With evolution, input columns the table lacks are added and
/// promotions widen columns in the same commit as the data ([`crate::evolve`]); when a
/// concurrent writer's schema change takes a planned field id, the files are planned and
/// written again against the new head (at most [`SCHEMA_REPLANS`] times; the files written
/// before stay unreferenced, for vacuum).
pub async fn append_files_evolving(
    table: &mut crate::table::Table,
    files: &[std::path::PathBuf],
    options: crate::append::CommitOptions,
    evolution: Option<Evolution>,
) -> Result<AppendReport> {
    let mut replans = 0;
    loop {
        // A rerun of a commit that already landed writes nothing.
        if let Some(snapshot_id) = table.find_commit(&options.commit_id) {
            return Ok(AppendReport {
                rows: 0,
                data_files: 0,
                bytes: 0,
                commit: crate::append::CommitReport {
                    version: table.version(),
                    snapshot_id,
                    attempts: 0,
                    already_committed: true,
                },
            });
        }
        let mode = evolution.unwrap_or_else(|| Evolution::of(table.metadata()));
        let current = table.metadata().current_schema().clone();
        let mut planned = current.as_ref().clone();
        for path in files {
            let columns = input_columns(path, &planned, mode)?;
            planned = crate::evolve::plan(
                table.metadata(),
                &planned,
                &columns,
                mode,
                &path.display().to_string(),
            )?;
        }
        let evolves = planned.as_struct() != current.as_struct();
        let (rows, data_files) = if evolves {
            write_files(table, files, Arc::new(planned.clone())).await?
        } else {
            write_files(table, files, current).await?
        };
        let bytes = data_files.iter().map(|f| f.file_size_in_bytes()).sum();
        let n = data_files.len();
        let committed = if evolves {
            table
                .append_evolving(data_files, planned, options.clone())
                .await
        } else {
            table.append(data_files, options.clone()).await
        };
        match committed {
            Err(Error::SchemaMoved { column, reason, .. }) if replans < SCHEMA_REPLANS => {
                replans += 1;
                tracing::info!(table = %table.name(), %column, %reason, replans, "the schema moved underneath the append; writing the data again");
                table.refresh().await?;
            }
            committed => {
                return Ok(AppendReport {
                    rows,
                    data_files: n,
                    bytes,
                    commit: committed?,
                })
            }
        }
    }
}

/// Read every input conformed to `schema` and write it as data files of `table`.
async fn write_files(
    table: &crate::table::Table,
    files: &[std::path::PathBuf],
    schema: iceberg::spec::SchemaRef,
) -> Result<(u64, Vec<iceberg::spec::DataFile>)> {
    let mut writer = crate::writer::DataWriter::with_schema(table, schema)?;
    let target = writer.arrow_schema().clone();
    for path in files {
        for batch in read_file(path, &target)? {
            writer.write(batch?).await?;
        }
    }
    let rows = writer.rows();
    if rows == 0 {
        return Err(Error::Input {
            input: files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            reason: "no rows to append".into(),
        });
    }
    Ok((rows, writer.close().await?))
}

/// Records read to infer the types of new CSV or JSON columns.
pub const INFER_RECORDS: usize = 100_000;

/// The columns of an input file with the types its values have: a Parquet file's own
/// types; for CSV and JSON, columns `schema` has are text (cast to the column's type when
/// read) and new ones are inferred as long, double, boolean or string (from up to
/// [`INFER_RECORDS`] records; without evolution, a JSON input's first 1,000).
pub fn input_columns(
    path: &Path,
    schema: &iceberg::spec::Schema,
    evolution: Evolution,
) -> Result<Vec<(String, DataType)>> {
    let format = InputFormat::from_path(path)?;
    let file = File::open(path).map_err(|e| input_err(path, e))?;
    let inferred = |ty: &DataType| match ty {
        DataType::Int64 | DataType::Float64 | DataType::Boolean => ty.clone(),
        _ => DataType::Utf8,
    };
    let arrow: ArrowSchema = match format {
        InputFormat::Parquet => {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| input_err(path, e))?;
            return Ok(builder
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect());
        }
        InputFormat::Csv => {
            let mut buf = BufReader::new(file);
            let mut header = String::new();
            buf.read_line(&mut header).map_err(|e| input_err(path, e))?;
            let names: Vec<String> = header
                .trim_end_matches(['\r', '\n'])
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_string())
                .filter(|c| !c.is_empty())
                .collect();
            // Only a header naming new columns costs a second pass over the values.
            if names.iter().all(|n| schema.field_by_name(n).is_some()) {
                return Ok(names.into_iter().map(|n| (n, DataType::Utf8)).collect());
            }
            let file = File::open(path).map_err(|e| input_err(path, e))?;
            arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(BufReader::new(file), Some(INFER_RECORDS))
                .map_err(|e| input_err(path, e))?
                .0
        }
        InputFormat::Json => {
            let records = match evolution {
                // Enough to name a new field in the refusal; the reader refuses later ones.
                Evolution::Off => 1_000,
                Evolution::AddColumns => INFER_RECORDS,
            };
            arrow::json::reader::infer_json_schema(BufReader::new(file), Some(records))
                .map_err(|e| input_err(path, e))?
                .0
        }
    };
    Ok(arrow
        .fields()
        .iter()
        .map(|f| {
            let name = f.name().trim().trim_matches('"').to_string();
            let ty = if schema.field_by_name(&name).is_some() {
                DataType::Utf8
            } else {
                inferred(f.data_type())
            };
            (name, ty)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn target() -> SchemaRef {
        Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&crate::schema::default_iot_schema()).unwrap(),
        )
    }

    fn tmp(name: &str, body: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("floe-ingest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        p
    }

    fn read_all(p: &Path) -> Result<Vec<RecordBatch>> {
        read_file(p, &target())?.collect()
    }

    #[test]
    fn reads_csv_in_any_column_order() {
        let p = tmp(
            "a.csv",
            "value,ts,device_id,metric\n1.5,2026-01-01T00:00:00Z,d1,power\n2.5,2026-01-01T00:01:00Z,d1,power\n",
        );
        let b = read_all(&p).unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(b[0].schema(), target());
    }

    #[test]
    fn reads_ndjson_with_missing_optional_columns() {
        let p = tmp(
            "a.jsonl",
            "{\"device_id\":\"d1\",\"ts\":\"2026-01-01T00:00:00Z\",\"value\":3}\n",
        );
        let b = read_all(&p).unwrap();
        assert_eq!(b[0].num_rows(), 1);
        assert_eq!(b[0].column(2).null_count(), 1);
    }

    #[test]
    fn new_csv_and_json_columns_are_inferred_known_ones_are_text() {
        let schema = crate::schema::default_iot_schema();
        let p = tmp(
            "fw2.csv",
            "device_id,ts,value,temp_c,ok,fw\nd1,2026-01-01T00:00:00Z,1.5,20,true,v2\nd1,2026-01-01T00:01:00Z,2,21.5,false,v2\n",
        );
        let cols = input_columns(&p, &schema, Evolution::AddColumns).unwrap();
        let ty = |n: &str| cols.iter().find(|(c, _)| c == n).unwrap().1.clone();
        assert_eq!(
            ty("value"),
            DataType::Utf8,
            "a known column is parsed into its type"
        );
        assert_eq!(ty("temp_c"), DataType::Float64);
        assert_eq!(ty("ok"), DataType::Boolean);
        assert_eq!(ty("fw"), DataType::Utf8);
        let p = tmp(
            "fw2.jsonl",
            "{\"device_id\":\"d1\",\"count\":3,\"ts\":\"2026-01-01T00:00:00Z\"}\n",
        );
        let cols = input_columns(&p, &schema, Evolution::AddColumns).unwrap();
        assert!(
            cols.contains(&("count".to_string(), DataType::Int64)),
            "{cols:?}"
        );
        assert!(
            cols.contains(&("ts".to_string(), DataType::Utf8)),
            "{cols:?}"
        );
    }

    #[test]
    fn bad_values_and_columns_name_the_column() {
        let p = tmp(
            "bad.csv",
            "device_id,ts,metric,value\nd1,2026-01-01T00:00:00Z,p,abc\n",
        );
        let e = read_all(&p).unwrap_err().to_string();
        assert!(e.contains("bad.csv") && e.contains("'value'"), "{e}");
        let p = tmp(
            "extra.csv",
            "device_id,ts,colour\nd1,2026-01-01T00:00:00Z,red\n",
        );
        let e = read_all(&p).unwrap_err().to_string();
        assert!(
            e.contains("'colour'") && e.contains("not in the table schema"),
            "{e}"
        );
        let p = tmp("x.txt", "hello");
        assert!(read_all(&p).unwrap_err().to_string().contains("x.txt"));
    }
}
