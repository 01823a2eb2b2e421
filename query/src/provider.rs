//! DataFusion table providers: one Floe table (at a snapshot), and a namespace's fleet view
//! `all_devices`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError, Result as DFResult};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::utils::expr_to_columns;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures::{stream, StreamExt, TryStreamExt};

use crate::predicate::{columns_in, filters_to_predicate, prunable};
use crate::scan::{plan_table, snapshot_totals, ScanRequest, ScanSummary};
use crate::{ScanOptions, DEVICE_COLUMN};

/// Tables planned at once by a fleet scan.
const PLAN_CONCURRENCY: usize = 16;

/// One table as of one snapshot.
#[derive(Debug, Clone)]
pub struct FloeTableProvider {
    label: String,
    table: iceberg::table::Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    options: ScanOptions,
}

impl FloeTableProvider {
    /// A provider for `table` as of `snapshot_id` (None: the current snapshot), with the
    /// schema that snapshot was written with.
    pub fn try_new(
        label: String,
        table: iceberg::table::Table,
        snapshot_id: Option<i64>,
        options: ScanOptions,
    ) -> DFResult<Self> {
        let metadata = table.metadata();
        let schema = match snapshot_id {
            Some(id) => metadata
                .snapshot_by_id(id)
                .ok_or_else(|| {
                    DataFusionError::Plan(format!("{label} has no snapshot {id} (expired?)"))
                })?
                .schema(metadata)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            None => metadata.current_schema().clone(),
        };
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&schema)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        Ok(Self {
            label,
            table,
            snapshot_id,
            schema,
            options,
        })
    }
}

fn projected(schema: &SchemaRef, projection: Option<&Vec<usize>>) -> DFResult<SchemaRef> {
    Ok(match projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => schema.clone(),
    })
}

#[async_trait]
impl TableProvider for FloeTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let output = projected(&self.schema, projection)?;
        let predicate = filters_to_predicate(filters, &prunable(&self.schema, &self.table));
        let limit = limit.filter(|_| filters.is_empty());
        let planned = plan_table(
            ScanRequest {
                label: self.label.clone(),
                device: None,
                table: self.table.clone(),
                snapshot_id: self.snapshot_id,
                columns: output.fields().iter().map(|f| f.name().clone()).collect(),
                predicate: predicate.clone(),
                limit,
            },
            self.options.pruning,
        )
        .await?;
        let summary = ScanSummary {
            label: self.label.clone(),
            tables_total: 1,
            tables_scanned: 0,
            files_total: planned.files_total,
            bytes_total: planned.bytes_total,
            tables: vec![planned],
            predicate: predicate
                .filter(|_| self.options.pruning)
                .map(|p| p.to_string()),
            partitions: 0,
        };
        crate::native::plan_scan(
            state,
            summary,
            &self.schema,
            projection,
            filters,
            limit,
            self.options,
        )
    }
}

/// One device table of a fleet view.
#[derive(Debug, Clone)]
pub struct FleetMember {
    /// The table's name: the value of the `device` column.
    pub name: Arc<str>,
    /// The table, or None while only the namespace's table index has been read: it is
    /// loaded by the scan, and only if the filters on `device` keep it.
    pub table: Option<iceberg::table::Table>,
    /// The snapshot to read (None: current).
    pub snapshot_id: Option<i64>,
    /// The Arrow schema of that snapshot (for a member not loaded yet, the schema the
    /// index records for the table).
    pub schema: SchemaRef,
}

/// Loads the fleet members a scan keeps that were not loaded when the view was built.
#[async_trait]
pub trait MemberLoader: Send + Sync + std::fmt::Debug {
    /// The table `name` and its current snapshot; None when it was dropped since the
    /// listing or has no data yet.
    async fn load(&self, name: &str) -> DFResult<Option<(iceberg::table::Table, i64)>>;
}

/// A kept member, loaded: its table, snapshot and Arrow schema.
struct Loaded {
    name: Arc<str>,
    table: iceberg::table::Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
}

/// `NAMESPACE.all_devices`: every table of a namespace, with its name as column `device`.
///
/// The schema is `device` followed by the union of the tables' columns by name (a table
/// lacking a column reads NULL there, as after firmware adds a metric to some devices; a
/// column some tables widened reads as the wider type).
/// Filters on `device` alone are evaluated against the table names before anything of a
/// table is read; the other filters prune each table by its own manifests.
#[derive(Debug, Clone)]
pub struct FleetProvider {
    label: String,
    members: Vec<FleetMember>,
    schema: SchemaRef,
    options: ScanOptions,
    loader: Option<Arc<dyn MemberLoader>>,
}

impl FleetProvider {
    /// Build the view; fails if two tables disagree on a column's type (other than by an
    /// Iceberg promotion, read as the wider type) or a table has its own `device` column. Members without a table are loaded by `loader` when a scan
    /// keeps them.
    pub fn try_new(
        label: String,
        mut members: Vec<FleetMember>,
        options: ScanOptions,
        loader: Option<Arc<dyn MemberLoader>>,
    ) -> DFResult<Self> {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let mut fields = vec![Field::new(DEVICE_COLUMN, DataType::Utf8, false)];
        let mut seen: HashMap<String, (DataType, Arc<str>)> = HashMap::new();
        for m in &members {
            for f in m.schema.fields() {
                if f.name() == DEVICE_COLUMN {
                    return Err(DataFusionError::Plan(format!(
                        "{label}: table {} has its own column `{DEVICE_COLUMN}`, which the \
                         fleet view reserves for the table name",
                        m.name
                    )));
                }
                match seen.get_mut(f.name()) {
                    Some((ty, _)) if ty == f.data_type() => {}
                    Some((ty, first)) => match wider(ty, f.data_type()).cloned() {
                        // Firmware widened it on some devices: the view reads the wider.
                        Some(wide) => {
                            *ty = wide.clone();
                            if let Some(field) = fields.iter_mut().find(|x| x.name() == f.name()) {
                                *field = Field::new(f.name(), wide, true);
                            }
                        }
                        None => {
                            return Err(DataFusionError::Plan(format!(
                                "{label}: column `{}` is {ty} in table {first} but {} in table {} \
                                 (the fleet view unions columns by name; types must be equal or \
                                 one an Iceberg promotion of the other)",
                                f.name(),
                                f.data_type(),
                                m.name
                            )))
                        }
                    },
                    None => {
                        seen.insert(f.name().clone(), (f.data_type().clone(), m.name.clone()));
                        fields.push(Field::new(f.name(), f.data_type().clone(), true));
                    }
                }
            }
        }
        Ok(Self {
            label,
            members,
            schema: Arc::new(Schema::new(fields)),
            options,
            loader,
        })
    }

    /// A kept member, loaded if it was not yet; None when it has nothing to read. A
    /// member loaded now is checked against the view's columns (its schema may have
    /// changed since the index recorded it): a column of another type is an error naming
    /// the table, a column the view lacks is not read.
    async fn load(&self, m: FleetMember) -> DFResult<Option<Loaded>> {
        if let Some(table) = &m.table {
            return Ok(Some(Loaded {
                name: m.name.clone(),
                table: table.clone(),
                snapshot_id: m.snapshot_id,
                schema: m.schema.clone(),
            }));
        }
        let Some(loader) = &self.loader else {
            return Ok(None);
        };
        let Some((table, snapshot_id)) = loader.load(&m.name).await? else {
            return Ok(None);
        };
        let schema = FloeTableProvider::try_new(
            m.name.to_string(),
            table.clone(),
            Some(snapshot_id),
            self.options,
        )?
        .schema();
        let mut fields = Vec::new();
        for f in schema.fields() {
            match self.schema.field_with_name(f.name()) {
                Ok(view) if view.data_type() == f.data_type() => fields.push(f.clone()),
                Ok(view) if wider(view.data_type(), f.data_type()) == Some(view.data_type()) => {
                    fields.push(f.clone())
                }
                Ok(view) => {
                    return Err(DataFusionError::Plan(format!(
                        "{}: column `{}` is {} in the fleet view but {} in table {}",
                        self.label,
                        f.name(),
                        view.data_type(),
                        f.data_type(),
                        m.name
                    )))
                }
                Err(_) => {}
            }
        }
        Ok(Some(Loaded {
            name: m.name.clone(),
            table,
            snapshot_id: Some(snapshot_id),
            schema: Arc::new(Schema::new(fields)),
        }))
    }

    /// Which members the filters on `device` alone keep.
    fn devices_kept(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<bool>> {
        let mut keep = vec![true; self.members.len()];
        let device_schema = Arc::new(Schema::new(vec![Field::new(
            DEVICE_COLUMN,
            DataType::Utf8,
            false,
        )]));
        let names = StringArray::from_iter_values(self.members.iter().map(|m| &*m.name));
        let batch = RecordBatch::try_new(device_schema.clone(), vec![Arc::new(names)])?;
        let df_schema = DFSchema::try_from(device_schema.as_ref().clone())?;
        for filter in filters.iter().filter(|f| only_device(f)) {
            let expr = datafusion::logical_expr::expr_rewriter::unnormalize_col(filter.clone());
            let physical = state.create_physical_expr(expr, &df_schema)?;
            let result = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
            let result = result.as_boolean_opt().ok_or_else(|| {
                DataFusionError::Internal("a filter on device is not boolean".into())
            })?;
            for (i, k) in keep.iter_mut().enumerate() {
                *k &= result.is_valid(i) && result.value(i);
            }
        }
        Ok(keep)
    }
}

/// The wider of two column types when one is an Iceberg promotion of the other (int →
/// long, float → double, decimal precision up at the same scale): a fleet's tables whose
/// schemas evolved apart still read as one view, each file's values cast up.
fn wider<'a>(a: &'a DataType, b: &'a DataType) -> Option<&'a DataType> {
    let promotes = |from: &DataType, to: &DataType| match (from, to) {
        (DataType::Int32, DataType::Int64) | (DataType::Float32, DataType::Float64) => true,
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => s1 == s2 && p2 > p1,
        _ => false,
    };
    if a == b || promotes(b, a) {
        Some(a)
    } else if promotes(a, b) {
        Some(b)
    } else {
        None
    }
}

fn referenced(expr: &Expr) -> Vec<String> {
    let mut columns = std::collections::HashSet::new();
    let _ = expr_to_columns(expr, &mut columns);
    columns.into_iter().map(|c| c.name).collect()
}

fn only_device(expr: &Expr) -> bool {
    let columns = referenced(expr);
    !columns.is_empty() && columns.iter().all(|c| c == DEVICE_COLUMN)
}

#[async_trait]
impl TableProvider for FleetProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let output = projected(&self.schema, projection)?;
        let keep = if self.options.pruning {
            self.devices_kept(state, filters)?
        } else {
            vec![true; self.members.len()]
        };
        let data_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| !referenced(f).iter().any(|c| c == DEVICE_COLUMN))
            .cloned()
            .collect();
        let limit = limit.filter(|_| filters.is_empty());
        let pruning = self.options.pruning;
        let kept: Vec<FleetMember> = self
            .members
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(m, _)| m.clone())
            .collect();
        let loaded: Vec<Loaded> = stream::iter(kept)
            .map(|m| self.load(m))
            .buffered(PLAN_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let totals: Vec<_> = loaded
            .iter()
            .map(|l| snapshot_totals(&l.table, l.snapshot_id))
            .collect();
        let requests: Vec<ScanRequest> = loaded
            .iter()
            .map(|l| {
                let own: Vec<Expr> = data_filters
                    .iter()
                    .filter(|f| columns_in(f, &l.schema))
                    .cloned()
                    .collect();
                ScanRequest {
                    label: format!("{}.{}", namespace_of(&self.label), l.name),
                    device: Some(l.name.clone()),
                    table: l.table.clone(),
                    snapshot_id: l.snapshot_id,
                    columns: output
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .filter(|c| c != DEVICE_COLUMN && l.schema.field_with_name(c).is_ok())
                        .collect(),
                    predicate: filters_to_predicate(&own, &prunable(&l.schema, &l.table)),
                    limit,
                }
            })
            .collect();
        let tables = stream::iter(requests)
            .map(|r| plan_table(r, pruning))
            .buffered(PLAN_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let predicate = filters_to_predicate(&data_filters, &self.schema)
            .filter(|_| pruning)
            .map(|p| p.to_string());
        let summary = ScanSummary {
            label: self.label.clone(),
            tables_total: self.members.len() as u64,
            tables_scanned: 0,
            files_total: totals.iter().map(|t| t.0).sum(),
            bytes_total: totals.iter().map(|t| t.1).sum(),
            tables,
            predicate,
            partitions: 0,
        };
        crate::native::plan_scan(
            state,
            summary,
            &self.schema,
            projection,
            &data_filters,
            limit,
            self.options,
        )
    }
}

fn namespace_of(label: &str) -> &str {
    label.rsplit_once('.').map_or(label, |(ns, _)| ns)
}
