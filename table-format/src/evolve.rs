//! Schema evolution on append (spec: commit-protocol.md, "Schema and partition changes").
//!
//! When a table opts in (`floe.schema.evolution = add-columns`, or `floe append --evolve`),
//! an input column the table lacks is added as an optional column with a fresh field id,
//! and a column whose input type is a legal Iceberg promotion of the table's
//! (int → long, float → double, decimal precision up, same scale) is widened, in the same
//! commit as the data. Nothing else changes implicitly: a narrowing, a change of type that
//! is not a promotion, or a promotion that would change a partition transform's result is
//! refused with an error naming the column.
//!
//! Two pure steps:
//! - [`plan`]: before writing, the schema the input needs (the data files are written with
//!   its field ids);
//! - [`reconcile`]: on every head the commit builds on (a rebase may find another writer's
//!   schema change), the schema the commit must install, or [`Error::SchemaMoved`] when the
//!   files' field ids no longer fit the head (they are then rewritten against it).

use std::sync::Arc;

use arrow_schema::DataType;
use iceberg::spec::{NestedField, PrimitiveType, Schema, TableMetadata, Transform, Type};

use crate::error::{Error, Result};

/// The table property that opts a table into schema evolution.
pub const EVOLUTION_PROPERTY: &str = "floe.schema.evolution";

/// The one value of [`EVOLUTION_PROPERTY`] that enables it.
pub const ADD_COLUMNS: &str = "add-columns";

/// How to enable evolution, for errors that refuse a column.
pub const HOW_TO_ENABLE: &str =
    "to add it, enable schema evolution: `floe append --evolve`, or the table property floe.schema.evolution=add-columns";

/// Whether an append may change the table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evolution {
    /// An input column the table lacks is refused (the default).
    #[default]
    Off,
    /// New input columns are added and legal promotions widen columns.
    AddColumns,
}

impl Evolution {
    /// What the table's properties ask for. An unknown value means off, with a warning
    /// naming the property (a property from storage never stops an append by itself).
    pub fn of(metadata: &TableMetadata) -> Self {
        match metadata
            .properties()
            .get(EVOLUTION_PROPERTY)
            .map(|v| v.trim())
        {
            None | Some("") | Some("none") | Some("off") => Evolution::Off,
            Some(ADD_COLUMNS) => Evolution::AddColumns,
            Some(other) => {
                let value: String = other.chars().take(64).collect();
                tracing::warn!(property = EVOLUTION_PROPERTY, %value, "unknown schema evolution mode; evolution stays off");
                Evolution::Off
            }
        }
    }
}

/// Whether `to` is a legal Iceberg (v2) promotion of `from`: int → long, float → double,
/// decimal(P, S) → decimal(P', S) with P' > P. Equal types are not a promotion.
pub fn is_promotion(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (P::Int, P::Long) | (P::Float, P::Double) => true,
        (
            P::Decimal {
                precision: p1,
                scale: s1,
            },
            P::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 > p1,
        _ => false,
    }
}

/// Whether partition transform `t` gives the same value for a value of type `from` and
/// the same value promoted to `to` (Iceberg refuses a promotion of a partition source
/// column that would change a transform's result). Identity and truncate keep the value;
/// bucket hashes int and long alike, and a decimal by its unscaled value whatever its
/// precision; void is always null. A time transform never applies to a promotable type.
pub fn transform_keeps_result(t: &Transform, from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType as P;
    match t {
        Transform::Void => true,
        Transform::Identity | Transform::Truncate(_) => is_promotion(from, to),
        Transform::Bucket(_) => matches!(
            (from, to),
            (P::Int, P::Long) | (P::Decimal { .. }, P::Decimal { .. })
        ),
        _ => false,
    }
}

/// The Iceberg type of a new column read from input of Arrow type `ty` (a new CSV or JSON
/// column is inferred as long, double, boolean or string).
fn new_column_type(ty: &DataType, input: &str, column: &str) -> Result<PrimitiveType> {
    match iceberg::arrow::arrow_type_to_type(ty) {
        Ok(Type::Primitive(p)) if !matches!(p, PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs) => Ok(p),
        Ok(Type::Primitive(_)) => Err(Error::SchemaMismatch {
            input: input.to_string(),
            column: column.to_string(),
            reason: format!("a new column of type {ty} needs nanosecond timestamps, which an Iceberg v2 table cannot hold; write it in microseconds"),
        }),
        Ok(other) => Err(Error::SchemaMismatch {
            input: input.to_string(),
            column: column.to_string(),
            reason: format!("a new column must be of a primitive type, not {other}; add it with another engine"),
        }),
        Err(e) => Err(Error::SchemaMismatch {
            input: input.to_string(),
            column: column.to_string(),
            reason: format!("a new column of type {ty} has no Iceberg equivalent: {e}"),
        }),
    }
}

/// The Iceberg type an input column of Arrow type `ty` carries as data, if it is one the
/// planner compares (numbers); text and other types are cast to the table's type as before.
fn numeric(ty: &DataType) -> Option<PrimitiveType> {
    match ty {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => Some(PrimitiveType::Int),
        DataType::UInt8 | DataType::UInt16 => Some(PrimitiveType::Int),
        DataType::Int64 | DataType::UInt32 => Some(PrimitiveType::Long),
        DataType::Float16 | DataType::Float32 => Some(PrimitiveType::Float),
        DataType::Float64 => Some(PrimitiveType::Double),
        DataType::Decimal128(p, s) if *s >= 0 => Some(PrimitiveType::Decimal {
            precision: u32::from(*p),
            scale: *s as u32,
        }),
        _ => None,
    }
}

/// Whether a value of type `input` is stored in a column of type `table` without loss.
fn fits(input: &PrimitiveType, table: &PrimitiveType) -> bool {
    use PrimitiveType as P;
    input == table || is_promotion(input, table) || matches!((input, table), (P::Int, P::Double))
}

/// The schema input columns `input` (name, Arrow type) of `input_name` need, starting from
/// `base` (the table's current schema, or an earlier plan) on a table whose highest field id
/// ever assigned is `last_column_id`. Without evolution, a new column is refused naming it
/// and the option; with it, new columns get the next free ids and promotions widen.
pub fn plan(
    metadata: &TableMetadata,
    base: &Schema,
    input: &[(String, DataType)],
    evolution: Evolution,
    input_name: &str,
) -> Result<Schema> {
    let mut fields: Vec<NestedField> = base
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut next_id = metadata.last_column_id().max(base.highest_field_id()) + 1;
    let refuse = |column: &str, reason: String| Error::SchemaMismatch {
        input: input_name.to_string(),
        column: column.to_string(),
        reason,
    };
    for (name, ty) in input {
        match fields.iter_mut().find(|f| &f.name == name) {
            None if evolution == Evolution::Off => {
                let columns: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                return Err(refuse(
                    name,
                    format!(
                        "not in the table schema (table columns: {}); {HOW_TO_ENABLE}",
                        columns.join(", ")
                    ),
                ));
            }
            None => {
                let p = new_column_type(ty, input_name, name)?;
                fields.push(NestedField::optional(next_id, name, Type::Primitive(p)));
                next_id += 1;
            }
            Some(field) => {
                let (Some(input_ty), Some(table_ty)) =
                    (numeric(ty), field.field_type.as_primitive_type().cloned())
                else {
                    continue; // text and other types are cast to the column's type
                };
                if evolution == Evolution::Off || fits(&input_ty, &table_ty) {
                    continue; // cast value by value, as without evolution
                }
                if !is_promotion(&table_ty, &input_ty) {
                    return Err(refuse(
                        name,
                        format!(
                            "the table holds {table_ty} and the input {input_ty}: changing it is not an Iceberg type promotion (int to long, float to double, decimal precision up), and floe.schema.evolution=add-columns never narrows or retypes a column; convert the input or change the column with another engine"
                        ),
                    ));
                }
                check_partition_sources(metadata, field.id, &table_ty, &input_ty)
                    .map_err(|reason| refuse(name, reason))?;
                *field.field_type = Type::Primitive(input_ty);
            }
        }
    }
    Schema::builder()
        .with_schema_id(base.schema_id())
        .with_identifier_field_ids(base.identifier_field_ids())
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .map_err(|e| Error::iceberg("build the evolved schema", e))
}

/// Refuse widening field `id` from `from` to `to` when any partition spec of the table
/// (old ones too: their files stay) has a transform of it whose result would change.
fn check_partition_sources(
    metadata: &TableMetadata,
    id: i32,
    from: &PrimitiveType,
    to: &PrimitiveType,
) -> std::result::Result<(), String> {
    for spec in metadata.partition_specs_iter() {
        for pf in spec.fields().iter().filter(|pf| pf.source_id == id) {
            if !transform_keeps_result(&pf.transform, from, to) {
                return Err(format!(
                    "it is the source of partition field {} ({}) of spec {}, whose values would change if it were widened from {from} to {to}; Iceberg refuses such a promotion",
                    pf.name,
                    pf.transform,
                    spec.spec_id()
                ));
            }
        }
    }
    Ok(())
}

/// The schema a commit of files written with `planned` must install on the head `head`:
/// `None` when the head's current schema already holds every planned column (by id, name
/// and a type the file's values fit), `Some(schema)` when the commit adds columns (planned
/// ids above the head's `last-column-id`) or widens them. When the head gave a planned id
/// to another column, named a planned column with another id, or changed a type the files
/// do not fit, the files are wrong for it: [`Error::SchemaMoved`] (retryable; the caller
/// rewrites the files against the new head).
pub fn reconcile(table: &str, head: &TableMetadata, planned: &Schema) -> Result<Option<Schema>> {
    let current = head.current_schema();
    let moved = |column: &str, reason: String| Error::SchemaMoved {
        table: table.to_string(),
        column: column.to_string(),
        reason,
    };
    let mut fields: Vec<NestedField> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut changed = false;
    for f in planned.as_struct().fields() {
        if let Some(other) = current.field_by_name(&f.name) {
            if other.id != f.id {
                return Err(moved(
                    &f.name,
                    format!(
                        "the files hold it as field id {}, the table now as {}",
                        f.id, other.id
                    ),
                ));
            }
        }
        match current.field_by_id(f.id) {
            Some(h) if h.name != f.name => {
                return Err(moved(
                    &f.name,
                    format!("field id {} is now column '{}'", f.id, h.name),
                ))
            }
            Some(h) if h.field_type == f.field_type => {}
            Some(h) => {
                let (Some(table_ty), Some(file_ty)) =
                    (h.field_type.as_primitive_type(), f.field_type.as_primitive_type())
                else {
                    return Err(moved(&f.name, "its type changed".into()));
                };
                if is_promotion(file_ty, table_ty) {
                    continue; // widened by another writer: readers promote the file's values
                }
                if !is_promotion(table_ty, file_ty) {
                    return Err(moved(
                        &f.name,
                        format!("the table holds {table_ty}, the files {file_ty}"),
                    ));
                }
                check_partition_sources(head, f.id, table_ty, file_ty)
                    .map_err(|reason| moved(&f.name, reason))?;
                let slot = fields
                    .iter_mut()
                    .find(|x| x.id == f.id)
                    .expect("found by id above");
                slot.field_type = f.field_type.clone();
                changed = true;
            }
            None if f.id > head.last_column_id() => {
                let mut added = f.as_ref().clone();
                added.required = false;
                fields.push(added);
                changed = true;
            }
            None => {
                return Err(moved(
                    &f.name,
                    format!(
                        "field id {} was assigned since the files were written (the table's last column id is {})",
                        f.id,
                        head.last_column_id()
                    ),
                ))
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    Schema::builder()
        .with_schema_id(current.schema_id())
        .with_identifier_field_ids(current.identifier_field_ids())
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .map(Some)
        .map_err(|e| Error::iceberg(format!("build the evolved schema of {table}"), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iceberg::spec::{FormatVersion, SortOrder, TableMetadataBuilder};

    fn table(schema: Schema, partition: &str) -> TableMetadata {
        let spec = crate::schema::parse_partition_spec(partition, &schema).unwrap();
        TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            "memory://w/t".into(),
            FormatVersion::V2,
            Default::default(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    fn iot() -> TableMetadata {
        table(crate::schema::default_iot_schema(), "day(ts)")
    }

    fn col(name: &str, ty: DataType) -> (String, DataType) {
        (name.to_string(), ty)
    }

    #[test]
    fn promotions_are_the_iceberg_ones() {
        use PrimitiveType as P;
        let dec = |precision, scale| P::Decimal { precision, scale };
        assert!(is_promotion(&P::Int, &P::Long));
        assert!(is_promotion(&P::Float, &P::Double));
        assert!(is_promotion(&dec(9, 2), &dec(18, 2)));
        for (a, b) in [
            (P::Long, P::Int),
            (P::Double, P::Float),
            (P::Int, P::Double),
            (P::Int, P::Int),
            (dec(18, 2), dec(9, 2)),
            (dec(9, 2), dec(18, 3)),
            (P::Date, P::Timestamp),
        ] {
            assert!(!is_promotion(&a, &b), "{a} -> {b}");
        }
        assert!(transform_keeps_result(
            &Transform::Bucket(16),
            &P::Int,
            &P::Long
        ));
        assert!(transform_keeps_result(
            &Transform::Identity,
            &P::Int,
            &P::Long
        ));
        assert!(!transform_keeps_result(
            &Transform::Day,
            &P::Date,
            &P::Timestamp
        ));
        assert!(!transform_keeps_result(
            &Transform::Bucket(4),
            &P::Date,
            &P::Timestamp
        ));
    }

    #[test]
    fn a_new_column_is_refused_without_evolution_naming_it_and_the_option() {
        let m = iot();
        let e = plan(
            &m,
            m.current_schema(),
            &[col("temp_c", DataType::Float64)],
            Evolution::Off,
            "in.parquet",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'temp_c'")
                && e.contains("--evolve")
                && e.contains("floe.schema.evolution=add-columns"),
            "{e}"
        );
    }

    #[test]
    fn evolution_adds_optional_columns_with_fresh_ids() {
        let m = iot();
        let input = [
            col("temp_c", DataType::Float64),
            col("value", DataType::Float32),
            col("fw", DataType::Utf8),
        ];
        let s = plan(&m, m.current_schema(), &input, Evolution::AddColumns, "in").unwrap();
        let temp = s.field_by_name("temp_c").unwrap();
        assert_eq!((temp.id, temp.required), (5, false));
        assert_eq!(*temp.field_type, Type::Primitive(PrimitiveType::Double));
        assert_eq!(s.field_by_name("fw").unwrap().id, 6);
        assert_eq!(
            *s.field_by_name("value").unwrap().field_type,
            Type::Primitive(PrimitiveType::Double),
            "float input fits a double column"
        );
        // The head holds none of it yet: the commit installs it.
        let installed = reconcile("t", &m, &s).unwrap().unwrap();
        assert_eq!(installed.field_by_name("fw").unwrap().id, 6);
    }

    fn ints() -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![
                Arc::new(NestedField::optional(
                    1,
                    "n",
                    Type::Primitive(PrimitiveType::Int),
                )),
                Arc::new(NestedField::optional(
                    2,
                    "f",
                    Type::Primitive(PrimitiveType::Float),
                )),
                Arc::new(NestedField::optional(
                    3,
                    "k",
                    Type::Primitive(PrimitiveType::Long),
                )),
            ])
            .build()
            .unwrap();
        table(schema, "")
    }

    #[test]
    fn widening_only_by_promotion() {
        let m = ints();
        let s = plan(
            &m,
            m.current_schema(),
            &[col("n", DataType::Int64), col("f", DataType::Float64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        assert_eq!(
            *s.field_by_name("n").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        assert_eq!(
            *s.field_by_name("f").unwrap().field_type,
            Type::Primitive(PrimitiveType::Double)
        );
        // Narrower input is cast up; no change.
        let same = plan(
            &m,
            m.current_schema(),
            &[col("k", DataType::Int32)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        assert_eq!(same.as_struct(), m.current_schema().as_struct());
        // Not a promotion: refused, naming the column and the option.
        for (c, ty) in [("n", DataType::Float64), ("k", DataType::Float64)] {
            let e = plan(
                &m,
                m.current_schema(),
                &[col(c, ty.clone())],
                Evolution::AddColumns,
                "in.parquet",
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("'{c}'"))
                    && e.contains("not an Iceberg type promotion")
                    && e.contains("floe.schema.evolution"),
                "{e}"
            );
        }
        // Without evolution, values are cast as before (the table is not changed).
        let off = plan(
            &m,
            m.current_schema(),
            &[col("n", DataType::Int64)],
            Evolution::Off,
            "in",
        )
        .unwrap();
        assert_eq!(off.as_struct(), m.current_schema().as_struct());
    }

    #[test]
    fn a_partition_source_is_widened_only_if_its_transforms_keep_their_results() {
        let schema = ints().current_schema().as_ref().clone();
        let m = table(schema.clone(), "bucket(8, n)");
        assert!(plan(
            &m,
            m.current_schema(),
            &[col("n", DataType::Int64)],
            Evolution::AddColumns,
            "in"
        )
        .is_ok());
        let m = table(schema, "truncate(10, n)");
        let s = plan(
            &m,
            m.current_schema(),
            &[col("n", DataType::Int64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        assert_eq!(
            *s.field_by_name("n").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
    }

    #[test]
    fn a_widening_is_installed_once_and_survives_a_rebase_either_way() {
        let m = ints();
        let wide = plan(
            &m,
            m.current_schema(),
            &[col("n", DataType::Int64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        let installed = reconcile("t", &m, &wide).unwrap().unwrap();
        let long = Type::Primitive(PrimitiveType::Long);
        assert_eq!(*installed.field_by_name("n").unwrap().field_type, long);
        let widened = TableMetadataBuilder::new_from_metadata(m.clone(), None)
            .add_current_schema(installed)
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        // Another writer widened it first: nothing more to install.
        assert!(reconcile("t", &widened, &wide).unwrap().is_none());
        // Files planned before the widening (an added column, n still int) fit too: their
        // int values are read promoted.
        let narrow = plan(
            &m,
            m.current_schema(),
            &[col("extra", DataType::Utf8)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        let next = reconcile("t", &widened, &narrow).unwrap().unwrap();
        assert_eq!(*next.field_by_name("n").unwrap().field_type, long);
        assert_eq!(next.field_by_name("extra").unwrap().id, 4);
        // A type the files hold that is neither: moved.
        let odd = Schema::builder()
            .with_fields(
                widened
                    .current_schema()
                    .as_struct()
                    .fields()
                    .iter()
                    .map(|f| {
                        let mut f = f.as_ref().clone();
                        if f.name == "n" {
                            *f.field_type = Type::Primitive(PrimitiveType::Double);
                        }
                        Arc::new(f)
                    }),
            )
            .build()
            .unwrap();
        assert!(matches!(
            reconcile("t", &widened, &odd),
            Err(Error::SchemaMoved { .. })
        ));
    }

    #[test]
    fn concurrent_additions_converge_or_move() {
        let m = iot();
        let mine = plan(
            &m,
            m.current_schema(),
            &[col("temp_c", DataType::Float64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        // Another writer added the same column first (same fresh id): nothing to add.
        let theirs = TableMetadataBuilder::new_from_metadata(m.clone(), None)
            .add_current_schema(mine.clone())
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        assert!(reconcile("t", &theirs, &mine).unwrap().is_none());
        // Another writer added a different column with that id: the files must be rewritten.
        let other = plan(
            &m,
            m.current_schema(),
            &[col("humidity", DataType::Float64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        let theirs = TableMetadataBuilder::new_from_metadata(m.clone(), None)
            .add_current_schema(other)
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        let e = reconcile("t", &theirs, &mine).unwrap_err();
        assert!(
            matches!(e, Error::SchemaMoved { ref column, .. } if column == "temp_c"),
            "{e}"
        );
        assert!(e.is_retryable());
        // Re-planned on that head, it gets the next id and installs beside theirs.
        let again = plan(
            &theirs,
            theirs.current_schema(),
            &[col("temp_c", DataType::Float64)],
            Evolution::AddColumns,
            "in",
        )
        .unwrap();
        assert_eq!(again.field_by_name("temp_c").unwrap().id, 6);
        let installed = reconcile("t", &theirs, &again).unwrap().unwrap();
        assert_eq!(installed.field_by_name("humidity").unwrap().id, 5);
        assert_eq!(installed.field_by_name("temp_c").unwrap().id, 6);
    }
}
