//! Validated names of namespaces and tables.
//!
//! A name becomes part of an object key, so it is checked where it enters: only
//! lowercase ASCII letters, digits, `_` and `-`, starting with a letter or digit, at most
//! [`MAX_NAME_LEN`] bytes. Nothing accepted here can contain `/`, `.` or `..`, so a table's
//! keys can never leave its prefix.

use std::fmt;

use crate::error::{Error, Result};

/// Longest accepted namespace part or table name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Deepest accepted namespace.
pub const MAX_NAMESPACE_DEPTH: usize = 8;
/// Table names reserved for Floe's own virtual tables.
pub const RESERVED_TABLE_NAMES: &[&str] = &["all_devices"];
/// Names reserved everywhere: the folders inside a table, so a namespace or table folder is
/// never mistaken for part of a table.
pub const RESERVED_NAMES: &[&str] = &["data", "metadata"];

/// Check one namespace part or table name.
pub fn validate_name(name: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::InvalidName {
            name: name.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return refuse("a name cannot be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("a name is at most 128 bytes");
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return refuse("a name starts with a lowercase letter or a digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        let reason = if c.is_ascii_uppercase() {
            "names are lowercase".to_string()
        } else {
            format!(
                "character {:?} is not allowed (use a-z, 0-9, '_' and '-')",
                c
            )
        };
        return refuse(&reason);
    }
    if RESERVED_NAMES.contains(&name) {
        return refuse("'data' and 'metadata' are reserved (they are folders inside every table)");
    }
    Ok(())
}

/// A namespace: one or more validated parts, e.g. `site_17.chargers`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Vec<String>);

impl Namespace {
    /// Build from parts, validating each.
    pub fn new<I, S>(parts: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = parts.into_iter().map(Into::into).collect();
        if parts.is_empty() {
            return Err(Error::InvalidName {
                name: String::new(),
                reason: "a namespace has at least one part".into(),
            });
        }
        if parts.len() > MAX_NAMESPACE_DEPTH {
            return Err(Error::InvalidName {
                name: parts.join("."),
                reason: format!("a namespace has at most {MAX_NAMESPACE_DEPTH} parts"),
            });
        }
        for p in &parts {
            validate_name(p)?;
        }
        Ok(Self(parts))
    }

    /// Parse the dotted form `a.b.c`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::new(s.split('.'))
    }

    /// The parts.
    pub fn parts(&self) -> &[String] {
        &self.0
    }

    /// The relative key prefix, `a/b/c`.
    pub fn path(&self) -> String {
        self.0.join("/")
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A table's full name: namespace plus table name, e.g. `fleet.dev_0042`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableIdent {
    namespace: Namespace,
    name: String,
}

impl TableIdent {
    /// Build from a namespace and a table name, validating the name.
    pub fn new(namespace: Namespace, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_name(&name)?;
        if RESERVED_TABLE_NAMES.contains(&name.as_str()) {
            return Err(Error::InvalidName {
                name,
                reason: "this table name is reserved for Floe's fleet-wide view".into(),
            });
        }
        Ok(Self { namespace, name })
    }

    /// Parse `ns.table` or `ns1.ns2.table`: the last part is the table.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((ns, name)) = s.rsplit_once('.') else {
            return Err(Error::InvalidName {
                name: s.escape_debug().to_string(),
                reason: "expected NAMESPACE.TABLE".into(),
            });
        };
        Self::new(Namespace::parse(ns)?, name)
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The relative key prefix of the table, `ns/table`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace.path(), self.name)
    }

    /// The same name as iceberg's identifier type.
    pub fn to_iceberg(&self) -> iceberg::TableIdent {
        iceberg::TableIdent::new(
            iceberg::NamespaceIdent::from_strs(self.namespace.parts())
                .expect("a validated namespace has at least one part"),
            self.name.clone(),
        )
    }
}

impl fmt::Display for TableIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        let t = TableIdent::parse("site_17.chargers.dev-0042").unwrap();
        assert_eq!(t.namespace().parts(), ["site_17", "chargers"]);
        assert_eq!(t.name(), "dev-0042");
        assert_eq!(t.path(), "site_17/chargers/dev-0042");
        assert_eq!(t.to_string(), "site_17.chargers.dev-0042");
    }

    #[test]
    fn refuses_hostile_names() {
        for bad in [
            "fleet./etc",
            "fleet...",
            "fleet..x",
            "../x.y",
            "fleet.a/b",
            "fleet.a\\b",
            "fleet.a\u{0}b",
            "fleet.a\nb",
            "fleet.",
            ".x",
            "x",
            "fleet.Dev1",
            "fleet._x",
            "fleet.-x",
            "fleet.a b",
            "fleet.a$files",
            "fleet.all_devices",
            "fleet.ä",
            "fleet.metadata",
            "data.t",
            "a.metadata.t",
        ] {
            assert!(TableIdent::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("fleet.{}", "a".repeat(129));
        assert!(TableIdent::parse(&long).is_err());
        let deep = format!("{}.t", ["a"; 9].join("."));
        assert!(TableIdent::parse(&deep).is_err());
    }

    #[test]
    fn error_names_the_input() {
        let e = TableIdent::parse("fleet.a/b").unwrap_err().to_string();
        assert!(e.contains("a/b"), "{e}");
    }
}
