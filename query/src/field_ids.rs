//! Reading Parquet files by Iceberg field id with DataFusion's own Parquet scan.
//!
//! DataFusion resolves the columns of an expression (the scan's projection and its pruning
//! predicate) against each file by *name*. Iceberg tables do not: a column keeps its field
//! id when renamed, a file written before a column was added lacks it, and a file written by
//! another engine may order or name its columns differently. [`FieldIdAdapterFactory`]
//! rewrites the expressions against each file by field id:
//!
//! - the table's columns carry their field id in the Arrow field metadata key
//!   `PARQUET:field_id` (the key arrow-rs uses for the ids it reads from Parquet);
//! - a table column is looked up in the file by that id, whatever the file calls it;
//! - a column the file lacks (added later, or one a fleet view's other tables have) reads
//!   NULL; one whose type was promoted (int → long, float → double) is cast;
//! - a file without any field ids gets Iceberg's fallback ids by position (1, 2, …), as
//!   iceberg's own reader does for a table without a name mapping (tables with one are
//!   left to that reader, see `crate::scan`).
//!
//! The work is done by renaming each table column to the name its field id has in the file
//! (or to a name no file column has) and handing the result to DataFusion's
//! [`DefaultPhysicalExprAdapter`], which resolves by name, casts and fills NULLs.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::Result as DFResult;
use datafusion::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

/// The field id an Arrow field carries, if any.
pub fn field_id(field: &Field) -> Option<i32> {
    field
        .metadata()
        .get(PARQUET_FIELD_ID_META_KEY)
        .and_then(|v| v.parse().ok())
}

/// `field` carrying `id` as its field id.
pub fn with_field_id(field: Field, id: i32) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string());
    field.with_metadata(metadata)
}

/// Makes a [`FieldIdAdapter`] per file (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FieldIdAdapterFactory;

impl PhysicalExprAdapterFactory for FieldIdAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DFResult<Arc<dyn PhysicalExprAdapter>> {
        Ok(Arc::new(FieldIdAdapter::new(
            logical_file_schema,
            physical_file_schema,
        )))
    }
}

/// Rewrites expressions over the table's columns into expressions over one file's columns,
/// matched by field id.
#[derive(Debug)]
pub struct FieldIdAdapter {
    /// The table's column names, by index.
    logical_names: Vec<String>,
    /// The name each table column has in the file (or a name no file column has).
    file_names: Vec<String>,
    inner: DefaultPhysicalExprAdapter,
}

impl FieldIdAdapter {
    /// The adapter from the table columns `logical` to the file columns `physical`.
    pub fn new(logical: SchemaRef, physical: SchemaRef) -> Self {
        let mut by_id: HashMap<i32, &str> = physical
            .fields()
            .iter()
            .filter_map(|f| Some((field_id(f)?, f.name().as_str())))
            .collect();
        if by_id.is_empty() {
            // No ids at all: Iceberg's fallback, ids by position.
            by_id = physical
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (i as i32 + 1, f.name().as_str()))
                .collect();
        }
        let file_names: Vec<String> = logical
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match field_id(f).and_then(|id| by_id.get(&id)) {
                Some(name) => (*name).to_string(),
                None => unmatched_name(i, &physical),
            })
            .collect();
        let renamed = Schema::new_with_metadata(
            logical
                .fields()
                .iter()
                .zip(&file_names)
                .map(|(f, name)| {
                    // A column a file lacks reads NULL, even if the table requires it.
                    let missing = physical.field_with_name(name).is_err();
                    Field::new(name, f.data_type().clone(), f.is_nullable() || missing)
                        .with_metadata(f.metadata().clone())
                })
                .collect::<Vec<_>>(),
            logical.metadata().clone(),
        );
        Self {
            logical_names: logical.fields().iter().map(|f| f.name().clone()).collect(),
            file_names,
            inner: DefaultPhysicalExprAdapter::new(Arc::new(renamed), physical),
        }
    }
}

/// A name for table column `index` that no column of `physical` has.
fn unmatched_name(index: usize, physical: &Schema) -> String {
    let mut name = format!("\u{1}floe:missing:{index}");
    while physical.field_with_name(&name).is_ok() {
        name.push('_');
    }
    name
}

impl PhysicalExprAdapter for FieldIdAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DFResult<Arc<dyn PhysicalExpr>> {
        let renamed = expr
            .transform(|e| {
                let Some(column) = e.as_any().downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                let i = column.index();
                if self.logical_names.get(i) != Some(&column.name().to_string()) {
                    return Ok(Transformed::no(e));
                }
                let name = &self.file_names[i];
                if name == column.name() {
                    return Ok(Transformed::no(e));
                }
                Ok(Transformed::yes(
                    Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>
                ))
            })
            .data()?;
        self.inner.rewrite(renamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::DataType;

    fn field(name: &str, ty: DataType, id: Option<i32>) -> Field {
        let f = Field::new(name, ty, true);
        match id {
            Some(id) => with_field_id(f, id),
            None => f,
        }
    }

    fn eval(
        adapter: &FieldIdAdapter,
        logical: &Schema,
        name: &str,
        batch: &RecordBatch,
    ) -> Arc<dyn Array> {
        let column = Arc::new(Column::new_with_schema(name, logical).unwrap());
        let expr = adapter.rewrite(column).unwrap();
        expr.evaluate(batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap()
    }

    #[test]
    fn columns_resolve_by_field_id_not_by_name() {
        // The table: a (id 1, long, promoted from int), b (id 2, renamed from "old_b"),
        // c (id 3, added after the file was written).
        let logical = Arc::new(Schema::new(vec![
            field("a", DataType::Int64, Some(1)),
            field("b", DataType::Utf8, Some(2)),
            field("c", DataType::Utf8, Some(3)),
        ]));
        // The file names its columns the other way round: "b" holds id 1, "a" holds id 2.
        let physical = Arc::new(Schema::new(vec![
            field("b", DataType::Int32, Some(1)),
            field("a", DataType::Utf8, Some(2)),
        ]));
        let batch = RecordBatch::try_new(
            physical.clone(),
            vec![
                Arc::new(Int32Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        let adapter = FieldIdAdapter::new(logical.clone(), physical);
        let a = eval(&adapter, &logical, "a", &batch);
        assert_eq!(
            a.as_any().downcast_ref::<Int64Array>().unwrap(),
            &Int64Array::from(vec![7, 8])
        );
        let b = eval(&adapter, &logical, "b", &batch);
        assert_eq!(
            b.as_any().downcast_ref::<StringArray>().unwrap(),
            &StringArray::from(vec!["x", "y"])
        );
        let c = eval(&adapter, &logical, "c", &batch);
        assert_eq!(c.null_count(), 2);
    }

    #[test]
    fn a_file_without_ids_gets_ids_by_position() {
        let logical = Arc::new(Schema::new(vec![
            field("x", DataType::Int32, Some(2)),
            field("y", DataType::Int32, Some(1)),
        ]));
        let physical = Arc::new(Schema::new(vec![
            field("x", DataType::Int32, None),
            field("y", DataType::Int32, None),
        ]));
        let batch = RecordBatch::try_new(
            physical.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(Int32Array::from(vec![2])),
            ],
        )
        .unwrap();
        let adapter = FieldIdAdapter::new(logical.clone(), physical);
        let x = eval(&adapter, &logical, "x", &batch);
        assert_eq!(
            x.as_any().downcast_ref::<Int32Array>().unwrap(),
            &Int32Array::from(vec![2])
        );
    }
}
