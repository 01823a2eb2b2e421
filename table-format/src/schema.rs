//! Table schemas and partition specs: the default IoT schema, schemas from JSON or from a
//! Parquet file, and partition expressions such as `day(ts)` or `bucket(16, device_id)`.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};

use crate::error::{Error, Result};

/// The schema of a device table unless told otherwise:
/// `device_id string, ts timestamptz, metric string, value double`.
pub fn default_iot_schema() -> Schema {
    Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            Arc::new(NestedField::optional(
                1,
                "device_id",
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::optional(
                2,
                "ts",
                Type::Primitive(PrimitiveType::Timestamptz),
            )),
            Arc::new(NestedField::optional(
                3,
                "metric",
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::optional(
                4,
                "value",
                Type::Primitive(PrimitiveType::Double),
            )),
        ])
        .build()
        .expect("the default schema is valid")
}

/// The default partitioning of device tables: `day(ts)`.
pub const DEFAULT_PARTITION: &str = "day(ts)";

/// Parse an Iceberg schema from its JSON form (`{"type":"struct","fields":[…]}`).
pub fn schema_from_json(json: &str, source: &str) -> Result<Schema> {
    serde_json::from_str::<Schema>(json).map_err(|e| Error::Input {
        input: source.to_string(),
        reason: format!(
            "not an Iceberg schema (expected {{\"type\":\"struct\",\"fields\":[...]}}): {e}"
        ),
    })
}

/// Derive an Iceberg schema from an Arrow schema (e.g. a Parquet file's), assigning fresh
/// field ids. Field ids already present in the Arrow metadata are ignored.
pub fn schema_from_arrow(arrow: &arrow_schema::Schema, source: &str) -> Result<Schema> {
    let stripped = iceberg::arrow::strip_metadata_from_schema(arrow)
        .map_err(|e| Error::iceberg(format!("read schema of {source}"), e))?;
    iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&stripped).map_err(|e| Error::Input {
        input: source.to_string(),
        reason: format!("its schema has no Iceberg equivalent: {e}"),
    })
}

/// Parse a comma-separated list of partition expressions against a schema:
/// `day(ts)`, `hour(ts)`, `month(ts)`, `year(ts)`, `bucket(16, device_id)`,
/// `truncate(4, metric)`, `identity(device_id)` or just `device_id`. An empty string is the
/// unpartitioned spec.
pub fn parse_partition_spec(expr: &str, schema: &Schema) -> Result<UnboundPartitionSpec> {
    let invalid = |reason: String| Error::InvalidArgument {
        argument: format!("partition '{expr}'"),
        reason,
    };
    let mut builder = UnboundPartitionSpec::builder().with_spec_id(0);
    for item in split_top_level(expr) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (func, args) = match item.split_once('(') {
            Some((f, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| invalid(format!("missing ')' in '{item}'")))?;
                (
                    f.trim().to_ascii_lowercase(),
                    args.split(',').map(str::trim).collect(),
                )
            }
            None => ("identity".to_string(), vec![item]),
        };
        let (transform_text, column, suffix) = match (func.as_str(), args.as_slice()) {
            ("bucket", [n, col]) => (format!("bucket[{n}]"), *col, "_bucket".to_string()),
            ("truncate", [w, col]) => (format!("truncate[{w}]"), *col, "_trunc".to_string()),
            ("identity", [col]) => ("identity".to_string(), *col, String::new()),
            ("void", [col]) => ("void".to_string(), *col, "_null".to_string()),
            (f @ ("year" | "month" | "day" | "hour"), [col]) => {
                (f.to_string(), *col, format!("_{f}"))
            }
            _ => {
                return Err(invalid(format!(
                    "'{item}' is not a partition transform (day(ts), hour(ts), month(ts), year(ts), bucket(N, col), truncate(W, col), identity(col))"
                )))
            }
        };
        let transform =
            Transform::from_str(&transform_text).map_err(|e| invalid(format!("'{item}': {e}")))?;
        let field = schema
            .field_by_name(column)
            .ok_or_else(|| invalid(format!("no column '{column}' in the schema")))?;
        let ty = field
            .field_type
            .as_primitive_type()
            .ok_or_else(|| invalid(format!("column '{column}' is not a primitive type")))?;
        transform
            .result_type(&Type::Primitive(ty.clone()))
            .map_err(|e| invalid(format!("'{item}' cannot apply to column '{column}': {e}")))?;
        builder = builder
            .add_partition_field(field.id, format!("{column}{suffix}"), transform)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(builder.build())
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partition_expressions() {
        let s = default_iot_schema();
        let spec = parse_partition_spec("day(ts), bucket(16, device_id), metric", &s).unwrap();
        let names: Vec<_> = spec.fields().iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["ts_day", "device_id_bucket", "metric"]);
        assert_eq!(spec.fields()[0].transform, Transform::Day);
        assert_eq!(spec.fields()[1].transform, Transform::Bucket(16));
        assert_eq!(spec.fields()[2].transform, Transform::Identity);
        assert!(parse_partition_spec("", &s).unwrap().fields().is_empty());
    }

    #[test]
    fn refuses_bad_partition_expressions() {
        let s = default_iot_schema();
        for bad in [
            "day(nope)",
            "day(value)",
            "week(ts)",
            "bucket(ts)",
            "day(ts",
            "truncate(x, metric)",
        ] {
            let e = parse_partition_spec(bad, &s).unwrap_err().to_string();
            assert!(e.contains("partition"), "{bad}: {e}");
        }
    }

    #[test]
    fn schema_json_round_trips() {
        let s = default_iot_schema();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(schema_from_json(&json, "x").unwrap(), s);
        assert!(schema_from_json("{}", "x.json")
            .unwrap_err()
            .to_string()
            .contains("x.json"));
    }
}
