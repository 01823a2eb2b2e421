//! SQL functions dashboards use over device data.
//!
//! - `time_bucket(interval, ts [, origin])`: TimescaleDB's name for DataFusion's
//!   `date_bin` (buckets of a fixed width, aligned to the origin, 1970-01-01 by default).
//!   `date_bin` and `date_trunc` are there too.
//! - **Bit-field device state**, on integer columns (the value's 64-bit two's complement):
//!   `bit_test(state, n)` (bit `n`, 0 = least significant), `bit_count(state)` (bits
//!   set), `bits_set(state, mask)` (every bit of `mask` set) and `bits_any(state, mask)`
//!   (some bit of `mask` set). A NULL argument gives NULL.
//! - **Bit names.** A namespace property `floe.bits.<column> = 0:charging,1:fault,…`
//!   names bits, and `bit_test(state, 'fault')` takes the name. A session knows the names
//!   of every namespace it sees; a name defined as two different bits is refused as
//!   ambiguous when used.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, plan_err, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The namespace property prefix naming the bits of an integer column.
pub const BITS_PROPERTY: &str = "floe.bits.";

/// Bit names known to a session: name → bit, or the definitions that disagree.
#[derive(Debug, Clone, Default)]
pub struct BitNames(HashMap<String, Result<u8, String>>);

impl BitNames {
    /// Collect the names defined by namespace properties: `(namespace, key, value)` for
    /// every property. Malformed entries are skipped with a warning.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (String, &'a BTreeMap<String, String>)>,
    ) -> Self {
        let mut defs: HashMap<String, Vec<(u8, String)>> = HashMap::new();
        for (ns, props) in properties {
            for (key, value) in props {
                let Some(column) = key.strip_prefix(BITS_PROPERTY) else {
                    continue;
                };
                for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    match entry.split_once(':').and_then(|(n, name)| {
                        let bit = n.trim().parse::<u8>().ok().filter(|b| *b < 64)?;
                        let name = name.trim();
                        (!name.is_empty()).then(|| (bit, name.to_string()))
                    }) {
                        Some((bit, name)) => defs
                            .entry(name)
                            .or_default()
                            .push((bit, format!("{ns}.{column}"))),
                        None => tracing_warn(&ns, key, entry),
                    }
                }
            }
        }
        BitNames(
            defs.into_iter()
                .map(|(name, mut d)| {
                    d.sort();
                    d.dedup_by_key(|(bit, _)| *bit);
                    let resolved = match d.as_slice() {
                        [(bit, _)] => Ok(*bit),
                        many => Err(many
                            .iter()
                            .map(|(bit, at)| format!("bit {bit} of {at}"))
                            .collect::<Vec<_>>()
                            .join(", ")),
                    };
                    (name, resolved)
                })
                .collect(),
        )
    }

    fn bit(&self, name: &str) -> DFResult<u8> {
        match self.0.get(name) {
            Some(Ok(bit)) => Ok(*bit),
            Some(Err(defs)) => exec_err!("bit name '{name}' is ambiguous: {defs}"),
            None => {
                let mut known: Vec<&str> = self.0.keys().map(String::as_str).collect();
                known.sort();
                exec_err!(
                    "unknown bit name '{name}' (known: {}); name bits with the namespace property {BITS_PROPERTY}<column> = '0:name,1:name'",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )
            }
        }
    }
}

fn tracing_warn(ns: &str, key: &str, entry: &str) {
    tracing::warn!(
        namespace = ns,
        property = key,
        entry,
        "not BIT:NAME (BIT 0-63); ignored"
    );
}

/// Register the functions of this module in `ctx`, with the bit names `names`.
pub fn register(ctx: &SessionContext, names: BitNames) {
    let date_bin = datafusion::functions::datetime::date_bin();
    ctx.register_udf(date_bin.as_ref().clone().with_aliases(["time_bucket"]));
    let names = Arc::new(names);
    for kind in [Kind::Test, Kind::Count, Kind::AllSet, Kind::AnySet] {
        ctx.register_udf(ScalarUDF::new_from_impl(BitFn {
            kind,
            names: names.clone(),
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Test,
    Count,
    AllSet,
    AnySet,
}

#[derive(Debug)]
struct BitFn {
    kind: Kind,
    names: Arc<BitNames>,
    signature: Signature,
}

impl PartialEq for BitFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.names, &other.names)
    }
}
impl Eq for BitFn {}
impl std::hash::Hash for BitFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer() || *t == DataType::Null
}

impl ScalarUDFImpl for BitFn {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        match self.kind {
            Kind::Test => "bit_test",
            Kind::Count => "bit_count",
            Kind::AllSet => "bits_set",
            Kind::AnySet => "bits_any",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> DFResult<Vec<DataType>> {
        let name = self.name();
        let arity = if self.kind == Kind::Count { 1 } else { 2 };
        if args.len() != arity {
            return plan_err!("{name} takes {arity} argument(s), got {}", args.len());
        }
        if !is_integer(&args[0]) {
            return plan_err!(
                "{name}: the state must be an integer column, not {}",
                args[0]
            );
        }
        let mut out = vec![DataType::Int64];
        if arity == 2 {
            match &args[1] {
                t if is_integer(t) => out.push(DataType::Int64),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    if self.kind == Kind::Test =>
                {
                    out.push(DataType::Utf8)
                }
                t => {
                    return plan_err!(
                        "{name}: the second argument must be an integer{}, not {t}",
                        if self.kind == Kind::Test {
                            " or a bit name"
                        } else {
                            ""
                        }
                    )
                }
            }
        }
        Ok(out)
    }

    fn return_type(&self, _args: &[DataType]) -> DFResult<DataType> {
        Ok(match self.kind {
            Kind::Count => DataType::Int64,
            _ => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let state = arrays[0].as_primitive::<Int64Type>();
        let out: ArrayRef = match self.kind {
            Kind::Count => Arc::new(
                state
                    .iter()
                    .map(|v| v.map(|v| i64::from(v.count_ones() as u8)))
                    .collect::<Int64Array>(),
            ),
            Kind::Test => {
                let bits: Vec<Option<u8>> =
                    if let Some(names) = arrays[1].as_any().downcast_ref::<StringArray>() {
                        names
                            .iter()
                            .map(|n| n.map(|n| self.names.bit(n)).transpose())
                            .collect::<DFResult<_>>()?
                    } else {
                        arrays[1]
                            .as_primitive::<Int64Type>()
                            .iter()
                            .map(|n| match n {
                                None => Ok(None),
                                Some(n) if (0..64).contains(&n) => Ok(Some(n as u8)),
                                Some(n) => exec_err!("bit_test: bit {n} is out of range 0-63"),
                            })
                            .collect::<DFResult<_>>()?
                    };
                Arc::new(
                    state
                        .iter()
                        .zip(bits)
                        .map(|(s, b)| Some((s? as u64 >> b?) & 1 == 1))
                        .collect::<BooleanArray>(),
                )
            }
            Kind::AllSet | Kind::AnySet => {
                let masks = arrays[1].as_primitive::<Int64Type>();
                let all = self.kind == Kind::AllSet;
                Arc::new(
                    state
                        .iter()
                        .zip(masks.iter())
                        .map(|(s, m)| {
                            let (s, m) = (s?, m?);
                            Some(if all { s & m == m } else { s & m != 0 })
                        })
                        .collect::<BooleanArray>(),
                )
            }
        };
        debug_assert_eq!(out.len(), state.len());
        Ok(ColumnarValue::Array(out))
    }
}
