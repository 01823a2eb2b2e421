//! DataFusion filters → an Iceberg predicate that is *implied* by them.
//!
//! The predicate drives pruning (manifests, files, row groups, pages) and iceberg's reader
//! also applies it as a row filter, so it must never reject a row the SQL filter keeps.
//! DataFusion re-applies the original filters above the scan (pushdown is `Inexact`), so a
//! weaker predicate only costs reading more.
//!
//! We do not use iceberg-datafusion's `convert_filters_to_predicate`: it drops an
//! unconvertible side of an `AND` and then negates what is left (`NOT (a AND x)` becomes
//! `NOT a`, which rejects rows the query keeps), and it strips casts (`CAST(v AS INT) = 3`
//! becomes `v = 3`). Here two functions keep the two guarantees apart:
//! - [`implied`] returns a predicate every matching row satisfies (it may keep more);
//! - [`exact`] returns one that is equivalent, and is the only thing ever negated.
//!
//! Floating-point columns are never exact. DataFusion (Arrow's kernels) compares floats by
//! IEEE total order: NaN sorts above every number (a negative NaN below), and -0.0 below
//! 0.0. Iceberg's bounds leave NaN out and treat -0.0 and 0.0 as equal. So a float
//! comparison is pushed only as a weaker predicate: strict bounds become non-strict,
//! `OR is_nan(column)` keeps files that hold NaN (their NaN count says so), and `<>` /
//! `NOT IN` are not pushed at all.

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;

/// The conjunction of what each filter implies, or `None` when nothing can be pushed.
pub fn filters_to_predicate(filters: &[Expr], schema: &Schema) -> Option<Predicate> {
    filters
        .iter()
        .filter_map(|f| implied(f, schema))
        .reduce(Predicate::and)
}

/// `schema` without the columns whose type `table` has promoted (int → long, float →
/// double, decimal precision): filters on them are then not pushed down. Files written
/// before a promotion keep bounds (and partition values) of the old type, and iceberg's
/// evaluators compare a bound of one type with a literal of another as "cannot match",
/// which would prune files holding matching rows. DataFusion still applies the filters
/// exactly above the scan.
pub fn prunable(schema: &Schema, table: &iceberg::table::Table) -> Schema {
    let metadata = table.metadata();
    let current = metadata.current_schema();
    let promoted = |name: &str| {
        current.field_by_name(name).is_some_and(|f| {
            metadata.schemas_iter().any(|s| {
                s.field_by_id(f.id)
                    .is_some_and(|old| old.field_type != f.field_type)
            })
        })
    };
    Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .filter(|f| !promoted(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

/// Whether every column `expr` references is in `schema` (by name).
pub fn columns_in(expr: &Expr, schema: &Schema) -> bool {
    expr.column_refs()
        .iter()
        .all(|c| schema.field_with_name(&c.name).is_ok())
}

/// A predicate every row matching `expr` satisfies.
fn implied(expr: &Expr, schema: &Schema) -> Option<Predicate> {
    if let Some(p) = exact(expr, schema) {
        return Some(p);
    }
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => match (implied(left, schema), implied(right, schema)) {
                (Some(l), Some(r)) => Some(l.and(r)),
                (Some(p), None) | (None, Some(p)) => Some(p),
                (None, None) => None,
            },
            Operator::Or => Some(implied(left, schema)?.or(implied(right, schema)?)),
            _ => {
                let (name, ty, literal, op) = comparison(left, *op, right, schema)?;
                if !is_float(&ty) {
                    return None;
                }
                let r = Reference::new(name.clone());
                let p = match op {
                    Operator::Eq => r.equal_to(literal),
                    Operator::Lt | Operator::LtEq => r.less_than_or_equal_to(literal),
                    Operator::Gt | Operator::GtEq => r.greater_than_or_equal_to(literal),
                    _ => return None,
                };
                Some(p.or(Reference::new(name).is_nan()))
            }
        },
        Expr::InList(list) if !list.negated => {
            let (name, ty) = column(&list.expr, schema)?;
            if !is_float(&ty) {
                return None;
            }
            let datums = datums(&list.list, &ty)?;
            Some(
                Reference::new(name.clone())
                    .is_in(datums)
                    .or(Reference::new(name).is_nan()),
            )
        }
        Expr::Between(b) if !b.negated => {
            let (name, ty) = column(&b.expr, schema)?;
            if !is_float(&ty) {
                return None;
            }
            let inside = Reference::new(name.clone())
                .greater_than_or_equal_to(datum(&b.low, &ty)?)
                .and(Reference::new(name.clone()).less_than_or_equal_to(datum(&b.high, &ty)?));
            Some(inside.or(Reference::new(name).is_nan()))
        }
        _ => None,
    }
}

/// A predicate equivalent to `expr` on every row (a NULL result counts as false), or None.
fn exact(expr: &Expr, schema: &Schema) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => Some(exact(left, schema)?.and(exact(right, schema)?)),
            Operator::Or => Some(exact(left, schema)?.or(exact(right, schema)?)),
            _ => {
                let (name, ty, literal, op) = comparison(left, *op, right, schema)?;
                if is_float(&ty) {
                    return None;
                }
                let r = Reference::new(name);
                Some(match op {
                    Operator::Eq => r.equal_to(literal),
                    Operator::NotEq => r.not_equal_to(literal),
                    Operator::Lt => r.less_than(literal),
                    Operator::LtEq => r.less_than_or_equal_to(literal),
                    Operator::Gt => r.greater_than(literal),
                    Operator::GtEq => r.greater_than_or_equal_to(literal),
                    _ => return None,
                })
            }
        },
        // NOT of an exact predicate is exact; iceberg pushes the negation into the leaves,
        // which is sound under SQL's three-valued logic.
        Expr::Not(inner) => Some(!exact(inner, schema)?),
        // NaN is not NULL, so these are exact for floats too.
        Expr::IsNull(inner) => Some(Reference::new(column(inner, schema)?.0).is_null()),
        Expr::IsNotNull(inner) => Some(Reference::new(column(inner, schema)?.0).is_not_null()),
        Expr::InList(list) => {
            let (name, ty) = column(&list.expr, schema)?;
            if is_float(&ty) {
                return None;
            }
            let datums = datums(&list.list, &ty)?;
            let r = Reference::new(name);
            Some(if list.negated {
                r.is_not_in(datums)
            } else {
                r.is_in(datums)
            })
        }
        Expr::Between(b) => {
            let (name, ty) = column(&b.expr, schema)?;
            if is_float(&ty) {
                return None;
            }
            let low = datum(&b.low, &ty)?;
            let high = datum(&b.high, &ty)?;
            let inside = Reference::new(name.clone())
                .greater_than_or_equal_to(low)
                .and(Reference::new(name).less_than_or_equal_to(high));
            Some(if b.negated { !inside } else { inside })
        }
        _ => None,
    }
}

/// `column op literal` (either way round; a literal on the left swaps the operator) for a
/// comparison operator: the column's name and type, the literal, and the operator as seen
/// from the column.
fn comparison(
    left: &Expr,
    op: Operator,
    right: &Expr,
    schema: &Schema,
) -> Option<(String, DataType, Datum, Operator)> {
    if !matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
    ) {
        return None;
    }
    match (column(left, schema), column(right, schema)) {
        (Some((name, ty)), None) => {
            let d = datum(right, &ty)?;
            Some((name, ty, d, op))
        }
        (None, Some((name, ty))) => {
            let d = datum(left, &ty)?;
            Some((name, ty, d, op.swap()?))
        }
        _ => None,
    }
}

fn datums(list: &[Expr], ty: &DataType) -> Option<Vec<Datum>> {
    let datums = list
        .iter()
        .map(|e| datum(e, ty))
        .collect::<Option<Vec<_>>>()?;
    (!datums.is_empty()).then_some(datums)
}

fn is_float(ty: &DataType) -> bool {
    matches!(ty, DataType::Float32 | DataType::Float64)
}

/// A plain column of a primitive type Floe can compare, with its Arrow type.
fn column(expr: &Expr, schema: &Schema) -> Option<(String, DataType)> {
    let Expr::Column(c) = expr else { return None };
    let field = schema.field_with_name(&c.name).ok()?;
    supported(field.data_type()).then(|| (c.name.clone(), field.data_type().clone()))
}

fn supported(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Boolean
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}

/// A literal of exactly the column's type (after DataFusion's coercion) as a Datum. A
/// literal of another type is not converted: comparing across types is DataFusion's job.
/// NaN is not converted either: Iceberg's metrics leave NaN out of bounds, and SQL orders
/// NaN above every number.
fn datum(expr: &Expr, ty: &DataType) -> Option<Datum> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match (value, ty) {
        (ScalarValue::Boolean(Some(v)), DataType::Boolean) => Some(Datum::bool(*v)),
        (ScalarValue::Int32(Some(v)), DataType::Int32) => Some(Datum::int(*v)),
        (ScalarValue::Int64(Some(v)), DataType::Int64) => Some(Datum::long(*v)),
        (ScalarValue::Float32(Some(v)), DataType::Float32) if !v.is_nan() => Some(Datum::float(*v)),
        (ScalarValue::Float64(Some(v)), DataType::Float64) if !v.is_nan() => {
            Some(Datum::double(*v))
        }
        (ScalarValue::Utf8(Some(v)), DataType::Utf8 | DataType::LargeUtf8)
        | (ScalarValue::LargeUtf8(Some(v)), DataType::Utf8 | DataType::LargeUtf8)
        | (ScalarValue::Utf8View(Some(v)), DataType::Utf8 | DataType::LargeUtf8) => {
            Some(Datum::string(v))
        }
        (ScalarValue::Date32(Some(v)), DataType::Date32) => Some(Datum::date(*v)),
        (
            ScalarValue::TimestampMicrosecond(Some(v), literal_tz),
            DataType::Timestamp(TimeUnit::Microsecond, column_tz),
        ) => match (literal_tz.is_some(), column_tz.is_some()) {
            (true, true) => Some(Datum::timestamptz_micros(*v)),
            (false, false) => Some(Datum::timestamp_micros(*v)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::prelude::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("value", DataType::Float64, true),
            Field::new("metric", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ])
    }

    fn convert(e: Expr) -> Option<String> {
        filters_to_predicate(&[e], &schema()).map(|p| p.to_string())
    }

    #[test]
    fn negation_never_drops_half_of_an_and() {
        // upper(metric) = 'A' cannot be converted, so NOT (value > 1 AND …) must not be
        // pushed down as NOT (value > 1).
        let e = !(col("value")
            .gt(lit(1.0))
            .and(datafusion::functions::string::expr_fn::upper(col("metric")).eq(lit("A"))));
        assert_eq!(convert(e), None);
        let e = !(col("n").gt(lit(1i64)).and(col("metric").eq(lit("a"))));
        assert!(convert(e).is_some());
    }

    #[test]
    fn and_keeps_the_convertible_side_but_or_needs_both() {
        let odd = datafusion::functions::string::expr_fn::upper(col("metric")).eq(lit("A"));
        let and = col("value").gt(lit(1.0)).and(odd.clone());
        assert_eq!(
            convert(and).as_deref(),
            Some(convert(col("value").gt(lit(1.0))).unwrap().as_str())
        );
        assert_eq!(convert(col("value").gt(lit(1.0)).or(odd)), None);
    }

    #[test]
    fn casts_mismatched_literals_and_nan_are_not_pushed() {
        let cast = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("value")),
            DataType::Int64,
        ))
        .eq(lit(3i64));
        assert_eq!(convert(cast), None);
        assert_eq!(convert(col("n").eq(lit(3i32))), None);
        assert_eq!(convert(col("value").gt(lit(f64::NAN))), None);
        assert_eq!(convert(col("missing").eq(lit(1i64))), None);
    }

    #[test]
    fn float_comparisons_keep_nan_and_negative_zero() {
        // DataFusion: NaN > 1 is true, -0.0 < 0.0 is true; Iceberg bounds know neither.
        let p = convert(col("value").gt(lit(1.0))).unwrap();
        assert!(p.contains(">= 1") && p.contains("IS NAN"), "{p}");
        let p = convert(col("value").lt(lit(0.0))).unwrap();
        assert!(p.contains("<= 0") && p.contains("IS NAN"), "{p}");
        // Never negated, never pushed as <> / NOT IN.
        assert_eq!(convert(!col("value").lt_eq(lit(49.5))), None);
        assert_eq!(convert(col("value").not_eq(lit(1.0))), None);
        assert_eq!(convert(col("value").in_list(vec![lit(1.0)], true)), None);
        // Other types stay exact: NOT is pushed.
        assert!(convert(!col("n").lt_eq(lit(4i64))).is_some());
    }

    #[test]
    fn literal_on_the_left_swaps_the_operator() {
        assert_eq!(
            convert(lit(5i64).lt(col("n"))),
            convert(col("n").gt(lit(5i64)))
        );
    }
}
