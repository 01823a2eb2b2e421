//! Floe's scan: iceberg plans the files, DataFusion runs them on every core.
//!
//! [`plan_table`] asks iceberg for the file tasks (pruned by manifest-list partition
//! summaries, then by each file's partition values and column bounds). [`FloeScanExec`]
//! reads them two ways, side by side in one node (so `EXPLAIN` and
//! [`ScanSummary`] describe the whole scan):
//!
//! - most files go to DataFusion's own Parquet scan (`crate::native` builds it, columns
//!   resolved by field id), which splits files into byte ranges over every core and reads
//!   footers and pages with DataFusion's pruning;
//! - files with delete files (merge-on-read), and tables the native scan cannot read
//!   (nested columns, a name mapping), go to iceberg's `ArrowReader`, which applies
//!   position and equality deletes. Those are spread over the first partitions by size,
//!   each partition running its own reader over its files; the native scan's partitions
//!   follow.
//!
//! For iceberg's reader the unit of parallelism is a whole data file: it does not honour a
//! task's byte range. Within a partition, files are read a few at a time
//! ([`FILES_IN_FLIGHT_PER_TABLE`] per table, [`TABLES_IN_FLIGHT`] tables): a fleet's files
//! are many and small, so the cost of a file is mostly the round trips to open it, and
//! reading one at a time leaves the core waiting on each. The scan declares no output order.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    ExecutionPlanMetricsSet, MetricBuilder, MetricValue, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{stream, StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;

/// Data files of one table a partition reads at once.
pub const FILES_IN_FLIGHT_PER_TABLE: usize = 4;
/// Tables a partition reads from at once (each with up to [`FILES_IN_FLIGHT_PER_TABLE`]).
pub const TABLES_IN_FLIGHT: usize = 2;

/// What to read from one table.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Shown in plans: `fleet.dev_0042`, with `@snapshot` when time-travelling.
    pub label: String,
    /// The value of the `device` column (fleet scans only).
    pub device: Option<Arc<str>>,
    /// The table.
    pub table: iceberg::table::Table,
    /// The snapshot to read; None reads the current one.
    pub snapshot_id: Option<i64>,
    /// Table columns to read (by name). May be empty (e.g. `count(*)`).
    pub columns: Vec<String>,
    /// A predicate implied by the query's filters, used for pruning and as a row filter.
    pub predicate: Option<Predicate>,
    /// Rows wanted, when the query has a limit and no filter.
    pub limit: Option<usize>,
}

/// One table's planned files, with the figures `EXPLAIN` shows.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// See [`ScanRequest::label`].
    pub label: String,
    pub(crate) device: Option<Arc<str>>,
    file_io: iceberg::io::FileIO,
    pub(crate) tasks: Vec<FileScanTask>,
    /// The table's top-level columns by name with their field ids, at the snapshot read;
    /// None when only iceberg's reader can read the table (nested columns, a name mapping).
    pub(crate) field_ids: Option<Arc<std::collections::HashMap<String, i32>>>,
    /// Data files in the snapshot (from its summary), when known.
    pub files_total: Option<u64>,
    /// Bytes of all files in the snapshot (from its summary), when known.
    pub bytes_total: Option<u64>,
    /// Data files left after pruning.
    pub files_planned: u64,
    /// Their bytes.
    pub bytes_planned: u64,
    /// Delete files that apply to the planned files (merge-on-read).
    pub delete_files: u64,
}

/// Plan the files of one table (nothing is read beyond the manifest list and manifests).
pub async fn plan_table(request: ScanRequest, pruning: bool) -> DFResult<PlannedTable> {
    let metadata = request.table.metadata();
    let snapshot = match request.snapshot_id {
        Some(id) => metadata.snapshot_by_id(id).cloned(),
        None => metadata.current_snapshot().cloned(),
    };
    let (files_total, bytes_total) = snapshot_totals(&request.table, request.snapshot_id);
    let field_ids = snapshot
        .as_ref()
        .and_then(|s| plain_field_ids(&request.table, s));
    let mut tasks = Vec::new();
    if let Some(snapshot) = &snapshot {
        // The reader needs at least one column to count rows; the exec drops it again.
        let mut columns = request.columns.clone();
        if columns.is_empty() {
            if let Some(first) = metadata.current_schema().as_struct().fields().first() {
                columns.push(first.name.clone());
            }
        }
        let mut builder = request
            .table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select(columns)
            .with_row_group_filtering_enabled(pruning)
            .with_row_selection_enabled(pruning);
        if pruning {
            if let Some(predicate) = request.predicate.clone() {
                builder = builder.with_filter(predicate);
            }
        }
        let scan = builder.build().map_err(|e| external(&request.label, e))?;
        tasks = scan
            .plan_files()
            .await
            .map_err(|e| external(&request.label, e))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| external(&request.label, e))?;
        if let Some(limit) = request.limit {
            // Without a filter and without deletes, a file's record count is exact: stop
            // once the files planned so far hold enough rows.
            if tasks.iter().all(|t| t.deletes.is_empty()) {
                let mut rows = 0u64;
                let keep = tasks
                    .iter()
                    .position(|t| {
                        rows += t.record_count.unwrap_or(0);
                        t.record_count.is_none() || rows >= limit as u64
                    })
                    .map_or(tasks.len(), |i| i + 1);
                tasks.truncate(keep);
            }
        }
    }
    let mut delete_paths: Vec<&str> = tasks
        .iter()
        .flat_map(|t| t.deletes.iter().map(|d| d.file_path.as_str()))
        .collect();
    delete_paths.sort_unstable();
    delete_paths.dedup();
    let delete_files = delete_paths.len() as u64;
    Ok(PlannedTable {
        files_planned: tasks.len() as u64,
        bytes_planned: tasks.iter().map(|t| t.file_size_in_bytes).sum(),
        delete_files,
        label: request.label,
        device: request.device,
        field_ids,
        file_io: request.table.file_io().clone(),
        files_total,
        bytes_total,
        tasks,
    })
}

/// The top-level field ids of the schema `snapshot` was written with, when every column is
/// primitive without an initial default and the table has no name mapping (iceberg's reader
/// alone fills a column's default into files written before it, and reads files without
/// field ids by the mapping).
fn plain_field_ids(
    table: &iceberg::table::Table,
    snapshot: &iceberg::spec::SnapshotRef,
) -> Option<Arc<std::collections::HashMap<String, i32>>> {
    let metadata = table.metadata();
    if metadata
        .properties()
        .contains_key("schema.name-mapping.default")
    {
        return None;
    }
    let schema = snapshot.schema(metadata).ok()?;
    let fields = schema.as_struct().fields();
    if fields
        .iter()
        .any(|f| !f.field_type.is_primitive() || f.initial_default.is_some())
    {
        return None;
    }
    Some(Arc::new(
        fields.iter().map(|f| (f.name.clone(), f.id)).collect(),
    ))
}

/// Data files and bytes of a table's snapshot (None: current), from its summary.
pub fn snapshot_totals(
    table: &iceberg::table::Table,
    snapshot_id: Option<i64>,
) -> (Option<u64>, Option<u64>) {
    let metadata = table.metadata();
    let snapshot = match snapshot_id {
        Some(id) => metadata.snapshot_by_id(id),
        None => metadata.current_snapshot(),
    };
    let Some(snapshot) = snapshot else {
        return (Some(0), Some(0));
    };
    let figure = |key: &str| {
        snapshot
            .summary()
            .additional_properties
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
    };
    (figure("total-data-files"), figure("total-files-size"))
}

fn external(label: &str, e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(format!("plan the scan of {label}: {e}").into())
}

/// What a scan node planned, for `EXPLAIN` and `floe sql --explain`.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    /// `fleet.dev_0042` or `fleet.all_devices`.
    pub label: String,
    /// Tables in the scope of the scan (1, or every device table for a fleet scan).
    pub tables_total: u64,
    /// Tables with at least one planned file.
    pub tables_scanned: u64,
    /// Data files in scope (every table's snapshot, from the summaries), when known.
    pub files_total: Option<u64>,
    /// Bytes in scope, when known.
    pub bytes_total: Option<u64>,
    /// Per table that was planned (a fleet scan skips tables pruned by `device`).
    pub tables: Vec<PlannedTable>,
    /// The pushed-down predicate, as text.
    pub predicate: Option<String>,
    /// DataFusion partitions the files were spread over.
    pub partitions: usize,
}

impl ScanSummary {
    /// Data files to read.
    pub fn files_planned(&self) -> u64 {
        self.tables.iter().map(|t| t.files_planned).sum()
    }
    /// Bytes to read (whole files; row-group and page pruning read less).
    pub fn bytes_planned(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes_planned).sum()
    }
}

/// A scan of planned files over N partitions.
#[derive(Debug)]
pub struct FloeScanExec {
    summary: ScanSummary,
    schema: SchemaRef,
    /// Per partition: (index into summary.tables, task indexes).
    groups: Vec<Vec<(usize, Vec<usize>)>>,
    limit: Option<usize>,
    pruning: bool,
    batch_size: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// DataFusion Parquet scans of the files iceberg's reader does not read (see
    /// `crate::native`); their partitions follow those of `groups`.
    native: Vec<Arc<dyn ExecutionPlan>>,
    /// Files read by `native`.
    native_files: u64,
}

/// Files a [`FloeScanExec`] leaves to DataFusion's own Parquet scans, and those scans.
#[derive(Debug, Default)]
pub struct NativeScans {
    /// The scans, each over its own files, in the scan's output columns (by name).
    pub plans: Vec<Arc<dyn ExecutionPlan>>,
    /// (index into `ScanSummary::tables`, index into that table's tasks) of every file
    /// they read.
    pub tasks: std::collections::HashSet<(usize, usize)>,
}

impl FloeScanExec {
    /// Spread the planned files of `summary` over at most `target_partitions` partitions,
    /// largest files first onto the least-loaded partition.
    pub fn new(
        summary: ScanSummary,
        schema: SchemaRef,
        target_partitions: usize,
        limit: Option<usize>,
        pruning: bool,
        batch_size: usize,
    ) -> Self {
        Self::with_native(
            summary,
            schema,
            target_partitions,
            limit,
            pruning,
            batch_size,
            NativeScans::default(),
        )
    }

    /// Like [`FloeScanExec::new`], but the files in `native.tasks` are read by
    /// `native.plans` instead of iceberg's reader.
    pub fn with_native(
        summary: ScanSummary,
        schema: SchemaRef,
        target_partitions: usize,
        limit: Option<usize>,
        pruning: bool,
        batch_size: usize,
        native: NativeScans,
    ) -> Self {
        let mut files: Vec<(usize, usize, u64)> = summary
            .tables
            .iter()
            .enumerate()
            .flat_map(|(t, table)| {
                table
                    .tasks
                    .iter()
                    .enumerate()
                    .map(move |(i, task)| (t, i, task.file_size_in_bytes))
            })
            .filter(|(t, i, _)| !native.tasks.contains(&(*t, *i)))
            .collect();
        let native_partitions: usize = native
            .plans
            .iter()
            .map(|p| p.properties().partitioning.partition_count())
            .sum();
        let n = if files.is_empty() && native_partitions > 0 {
            0
        } else {
            target_partitions.max(1).min(files.len().max(1))
        };
        files.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        let mut load = vec![0u64; n];
        let mut assigned: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (t, i, size) in files {
            let (p, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(p, l)| (**l, *p))
                .expect("at least one partition");
            load[p] += size.max(1);
            assigned[p].push((t, i));
        }
        let groups = assigned
            .into_iter()
            .map(|mut files| {
                files.sort_unstable();
                let mut units: Vec<(usize, Vec<usize>)> = Vec::new();
                for (t, i) in files {
                    match units.last_mut() {
                        Some((last, tasks)) if *last == t => tasks.push(i),
                        _ => units.push((t, vec![i])),
                    }
                }
                units
            })
            .collect::<Vec<_>>();
        let mut summary = summary;
        summary.partitions = n + native_partitions;
        summary.tables_scanned = summary
            .tables
            .iter()
            .filter(|t| t.files_planned > 0)
            .count() as u64;
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(n + native_partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            summary,
            schema,
            groups,
            limit,
            pruning,
            batch_size,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            native_files: native.tasks.len() as u64,
            native: native.plans,
        }
    }

    /// The native scan and its partition that serve partition `partition` of this scan,
    /// if it is past iceberg's reader's partitions.
    fn native_partition(&self, partition: usize) -> Option<(&Arc<dyn ExecutionPlan>, usize)> {
        let mut p = partition.checked_sub(self.groups.len())?;
        for plan in &self.native {
            let n = plan.properties().partitioning.partition_count();
            if p < n {
                return Some((plan, p));
            }
            p -= n;
        }
        None
    }

    /// What this scan planned.
    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }
}

impl DisplayAs for FloeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.summary;
        write!(f, "FloeScanExec: {}", s.label)?;
        if s.tables_total > 1 || s.label.ends_with("all_devices") {
            write!(f, ", tables={}/{}", s.tables_scanned, s.tables_total)?;
        }
        write!(
            f,
            ", files={}/{}, bytes={}/{}, partitions={}",
            s.files_planned(),
            opt(s.files_total),
            s.bytes_planned(),
            opt(s.bytes_total),
            s.partitions
        )?;
        let deletes: u64 = s.tables.iter().map(|t| t.delete_files).sum();
        if deletes > 0 {
            write!(f, ", delete_files={deletes}")?;
        }
        if !self.native.is_empty() {
            write!(f, ", native_files={}", self.native_files)?;
        }
        if let Some(p) = &s.predicate {
            write!(f, ", predicate=[{p}]")?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

impl ExecutionPlan for FloeScanExec {
    fn name(&self) -> &str {
        "FloeScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut set = self.metrics.clone_inner();
        // The native scans' own figures (bytes scanned, row groups pruned, …); their output
        // rows are already counted in this node's.
        for metrics in self.native.iter().filter_map(|p| p.metrics()) {
            for m in metrics.iter() {
                if !matches!(m.value(), MetricValue::OutputRows(_)) {
                    set.push(m.clone());
                }
            }
        }
        Some(set)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        if let Some((plan, p)) = self.native_partition(partition) {
            let schema = self.schema.clone();
            let label = self.summary.label.clone();
            let batches = plan
                .execute(p, context)?
                .and_then(move |batch| futures::future::ready(adapt(&batch, &schema, None, &label)))
                .inspect_ok(move |b: &RecordBatch| output_rows.add(b.num_rows()));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                batches,
            )));
        }
        let units = self.groups.get(partition).cloned().unwrap_or_default();
        let files_read = MetricBuilder::new(&self.metrics).counter("files_read", partition);
        let bytes_read = MetricBuilder::new(&self.metrics).counter("bytes_read", partition);
        let schema = self.schema.clone();
        let batch_size = context.session_config().batch_size().min(self.batch_size);
        let pruning = self.pruning;
        let runtime =
            iceberg::Runtime::try_current().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let tables = self.summary.tables.clone();
        let out_schema = schema.clone();
        let batches = stream::iter(units)
            .map(move |(t, task_indexes)| {
                let table = &tables[t];
                let tasks: Vec<FileScanTask> = task_indexes
                    .iter()
                    .map(|i| table.tasks[*i].clone())
                    .collect();
                files_read.add(tasks.len());
                let reader = ArrowReaderBuilder::new(table.file_io.clone(), runtime.clone())
                    .with_batch_size(batch_size)
                    .with_data_file_concurrency_limit(FILES_IN_FLIGHT_PER_TABLE)
                    .with_row_group_filtering_enabled(pruning)
                    .with_row_selection_enabled(pruning)
                    .build();
                let label = table.label.clone();
                let device = table.device.clone();
                let schema = out_schema.clone();
                let bytes_read = bytes_read.clone();
                let result = reader
                    .read(Box::pin(stream::iter(tasks.into_iter().map(Ok))))
                    .map_err(|e| read_error(&label, e));
                match result {
                    Ok(result) => {
                        let metrics = result.metrics().clone();
                        let label2 = label.clone();
                        let batches = result
                            .stream()
                            .map_err(move |e| read_error(&label2, e))
                            .and_then(move |batch| {
                                let adapted = adapt(&batch, &schema, device.as_ref(), &label);
                                futures::future::ready(adapted)
                            });
                        let done = stream::once(async move {
                            bytes_read.add(metrics.bytes_read() as usize);
                            Ok(None)
                        });
                        batches.map_ok(Some).chain(done).boxed()
                    }
                    Err(e) => stream::once(futures::future::ready(Err(e))).boxed(),
                }
            })
            .flatten_unordered(Some(TABLES_IN_FLIGHT))
            .try_filter_map(|b| futures::future::ready(Ok(b)));
        let limited = batches
            .scan(self.limit, |left, item| {
                let out = match (item, left.as_mut()) {
                    (Err(e), _) => Some(Err(e)),
                    (Ok(_), Some(0)) => None,
                    (Ok(batch), Some(l)) => {
                        let take = batch.num_rows().min(*l);
                        *l -= take;
                        Some(Ok(batch.slice(0, take)))
                    }
                    (Ok(batch), None) => Some(Ok(batch)),
                };
                futures::future::ready(out)
            })
            .inspect_ok(move |b: &RecordBatch| output_rows.add(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, limited)))
    }
}

fn read_error(label: &str, e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(format!("read {label}: {e}").into())
}

/// Shape a batch from iceberg's reader into the scan's output schema: columns by name,
/// cast where types differ (fleet scans), NULL where a table lacks a column, and the
/// `device` column for fleet scans.
fn adapt(
    batch: &RecordBatch,
    schema: &SchemaRef,
    device: Option<&Arc<str>>,
    label: &str,
) -> DFResult<RecordBatch> {
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DFResult<ArrayRef> {
            if let (Some(device), crate::DEVICE_COLUMN) = (device, field.name().as_str()) {
                let values = datafusion::arrow::array::StringArray::from(vec![&**device; n]);
                return Ok(cast(&values, field.data_type())?);
            }
            match batch.column_by_name(field.name()) {
                Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
                Some(col) => cast(col, field.data_type()).map_err(|e| {
                    DataFusionError::External(
                        format!("read {label}: column {}: {e}", field.name()).into(),
                    )
                }),
                None => Ok(new_null_array(field.data_type(), n)),
            }
        })
        .collect::<DFResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}
