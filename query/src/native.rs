//! The native scan: iceberg plans the files, DataFusion's own Parquet scan reads them.
//!
//! iceberg's `ArrowReader` opens every file with its own metadata round trips and reads a
//! file on one core; DataFusion's `ParquetSource` brings footer handling with known sizes,
//! row-group and page-index pruning, and byte ranges that split files over every core. What
//! it lacks is Iceberg's column resolution and delete files, so [`plan_scan`] gives it only
//! the files it can read right:
//!
//! - columns resolve by Iceberg field id ([`crate::field_ids`]): renamed and added columns,
//!   type promotion and foreign files read as iceberg's reader would read them;
//! - files with delete files (merge-on-read), non-Parquet files, tables with nested columns
//!   or a name mapping, and files outside the warehouse stay with iceberg's reader, in the
//!   same [`FloeScanExec`] (its first partitions), so a scan can mix both;
//! - the fleet view's `device` column is a partition value of each file;
//! - the files are read through the catalog's own object store (registered on the session
//!   by [`install`] under a URL of its own), so a caching store in front of the warehouse
//!   (`floe serve --pg`) serves the footers, and the manifests' file sizes spare a HEAD.
//!
//! Filters stay `Inexact`: the predicate only prunes row groups and pages; the rows are
//! filtered above the scan whichever way they were read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result as DFResult, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use iceberg::spec::DataFileFormat;

use floe_table_format::Warehouse;

use crate::field_ids::{with_field_id, FieldIdAdapterFactory};
use crate::scan::{FloeScanExec, NativeScans, ScanSummary};
use crate::{ScanOptions, DEVICE_COLUMN};

/// Where the native scan finds the warehouse's files: a session extension set by
/// [`install`].
#[derive(Debug)]
pub struct NativeStore {
    url: ObjectStoreUrl,
    warehouse: Warehouse,
}

/// Let the sessions of `ctx` read `warehouse` natively: its store is registered under a
/// URL of its own (so two catalogs on the same bucket, one behind a cache, never share a
/// registration), and the scans find it through a session extension.
pub fn install(ctx: &SessionContext, warehouse: &Warehouse) -> DFResult<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let url = ObjectStoreUrl::parse(format!("floe-warehouse://w{n}"))?;
    ctx.runtime_env()
        .register_object_store(url.as_ref(), warehouse.store().clone());
    let store = NativeStore {
        url,
        warehouse: warehouse.clone(),
    };
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(store));
    Ok(())
}

/// The scan of `summary`'s planned files, in `table_schema` projected by `projection`:
/// natively where it can be (see the module docs), by iceberg's reader elsewhere. `filters`
/// are the query's filters on data columns (for row-group and page pruning).
pub fn plan_scan(
    state: &dyn Session,
    summary: ScanSummary,
    table_schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
    options: ScanOptions,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let output = match projection {
        Some(p) => Arc::new(table_schema.project(p)?),
        None => table_schema.clone(),
    };
    let target_partitions = state.config().target_partitions();
    let native = match state.config().get_extension::<NativeStore>() {
        Some(store) if options.native => NativeScan {
            state,
            store: &store,
            summary: &summary,
            table_schema,
            output: &output,
            filters,
            limit,
            pruning: options.pruning,
        }
        .plan()?,
        _ => NativeScans::default(),
    };
    Ok(Arc::new(FloeScanExec::with_native(
        summary,
        output,
        target_partitions,
        limit,
        options.pruning,
        options.batch_size,
        native,
    )))
}

struct NativeScan<'a> {
    state: &'a dyn Session,
    store: &'a NativeStore,
    summary: &'a ScanSummary,
    table_schema: &'a SchemaRef,
    output: &'a SchemaRef,
    filters: &'a [Expr],
    limit: Option<usize>,
    pruning: bool,
}

/// Field ids of a group's file columns (None: the tables lack the column).
type IdKey = Vec<Option<i32>>;

impl NativeScan<'_> {
    fn plan(&self) -> DFResult<NativeScans> {
        let fleet = self.summary.tables.iter().any(|t| t.device.is_some());
        let file_fields: Vec<&Field> = self
            .table_schema
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .filter(|f| !(fleet && f.name() == DEVICE_COLUMN))
            .collect();
        // Tables whose columns have the same field ids share one scan (a fleet's tables
        // usually all do).
        let mut groups: BTreeMap<IdKey, Vec<(usize, usize)>> = BTreeMap::new();
        let mut out = NativeScans::default();
        for (t, table) in self.summary.tables.iter().enumerate() {
            let Some(ids) = &table.field_ids else {
                continue;
            };
            let key: IdKey = file_fields
                .iter()
                .map(|f| ids.get(f.name()).copied())
                .collect();
            for (i, task) in table.tasks.iter().enumerate() {
                let readable = task.deletes.is_empty()
                    && task.data_file_format == DataFileFormat::Parquet
                    && self
                        .store
                        .warehouse
                        .object_path(&task.data_file_path)
                        .is_ok();
                if readable {
                    groups.entry(key.clone()).or_default().push((t, i));
                    out.tasks.insert((t, i));
                }
            }
        }
        for (key, files) in groups {
            out.plans
                .push(self.group_scan(&file_fields, &key, &files, fleet)?);
        }
        Ok(out)
    }

    /// One `DataSourceExec` over `files` (table, task), whose columns have the field ids `key`.
    fn group_scan(
        &self,
        file_fields: &[&Field],
        key: &IdKey,
        files: &[(usize, usize)],
        fleet: bool,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let logical: SchemaRef = Arc::new(Schema::new(
            file_fields
                .iter()
                .zip(key)
                .map(|(f, id)| {
                    let field = Field::new(f.name(), f.data_type().clone(), true);
                    match id {
                        Some(id) => with_field_id(field, *id),
                        None => field,
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let partition_cols = if fleet {
            vec![Arc::new(Field::new(DEVICE_COLUMN, DataType::Utf8, false))]
        } else {
            vec![]
        };
        let table_schema = TableSchema::new(logical.clone(), partition_cols);
        let projection = self
            .output
            .fields()
            .iter()
            .map(|f| match (fleet, f.name().as_str()) {
                (true, DEVICE_COLUMN) => Ok(logical.fields().len()),
                _ => logical.index_of(f.name()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut parquet = self.state.table_options().parquet.clone();
        if !self.pruning {
            parquet.global.pruning = false;
            parquet.global.enable_page_index = false;
            parquet.global.bloom_filter_on_read = false;
        }
        let mut source =
            ParquetSource::new(table_schema.clone()).with_table_parquet_options(parquet);
        if let Some(predicate) = self.predicate(table_schema.table_schema())? {
            source = source.with_predicate(predicate);
        }
        let partitioned: Vec<(PartitionedFile, u64)> = files
            .iter()
            .map(|&(t, i)| {
                let table = &self.summary.tables[t];
                let task = &table.tasks[i];
                let mut file = PartitionedFile::new(String::new(), task.file_size_in_bytes);
                file.object_meta.location = self
                    .store
                    .warehouse
                    .object_path(&task.data_file_path)
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                if fleet {
                    let device = table.device.as_deref().unwrap_or_default();
                    file = file
                        .with_partition_values(vec![ScalarValue::Utf8(Some(device.to_string()))]);
                }
                Ok((file, task.file_size_in_bytes))
            })
            .collect::<DFResult<_>>()?;
        let target = self.state.config().target_partitions().max(1);
        let mut file_groups = balanced(partitioned, target);
        let optimizer = &self.state.config_options().optimizer;
        if optimizer.repartition_file_scans {
            if let Some(split) = FileGroupPartitioner::new()
                .with_target_partitions(target)
                .with_repartition_file_min_size(optimizer.repartition_file_min_size)
                .repartition_file_groups(&file_groups)
            {
                file_groups = split;
            }
        }
        let config = FileScanConfigBuilder::new(self.store.url.clone(), Arc::new(source))
            .with_file_groups(file_groups)
            .with_projection_indices(Some(projection))?
            .with_limit(self.limit)
            .with_expr_adapter(Some(Arc::new(FieldIdAdapterFactory)))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// The filters as one physical predicate over `schema`, for pruning. Left out (the rows
    /// are filtered above anyway): what DataFusion cannot turn into a physical expression,
    /// and every conjunct on a floating-point column, because Parquet's min/max statistics
    /// leave NaN out while DataFusion orders NaN above every number: `value > 39` would
    /// prune a page of 3s and NaNs whose NaNs match (iceberg's planner, which knows the
    /// files' NaN counts, still prunes whole files by them).
    fn predicate(&self, schema: &SchemaRef) -> DFResult<Option<Arc<dyn PhysicalExpr>>> {
        if !self.pruning {
            return Ok(None);
        }
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let floating = |e: &Expr| {
            e.column_refs().iter().any(|c| {
                schema
                    .field_with_name(&c.name)
                    .map_or(true, |f| f.data_type().is_floating())
            })
        };
        let usable: Vec<Expr> = self
            .filters
            .iter()
            .flat_map(|f| split_conjunction_owned(unnormalize_col(f.clone())))
            .filter(|f| !floating(f))
            .filter(|f| {
                self.state
                    .create_physical_expr(f.clone(), &df_schema)
                    .is_ok()
            })
            .collect();
        conjunction(usable)
            .map(|e| self.state.create_physical_expr(e, &df_schema))
            .transpose()
    }
}

/// `files` (with their sizes) spread over at most `target` groups, largest first onto the
/// least-loaded group.
fn balanced(mut files: Vec<(PartitionedFile, u64)>, target: usize) -> Vec<FileGroup> {
    let n = target.min(files.len()).max(1);
    files.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.object_meta.location.cmp(&b.0.object_meta.location))
    });
    let mut load = vec![0u64; n];
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
    for (file, size) in files {
        let p = (0..n)
            .min_by_key(|p| (load[*p], *p))
            .expect("at least one group");
        load[p] += size.max(1);
        groups[p].push(file);
    }
    groups.into_iter().map(FileGroup::new).collect()
}
