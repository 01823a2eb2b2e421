//! Grants: what a principal may reach.
//!
//! A grant is `read:PATTERN`, `write:PATTERN` or `admin`. `write` implies `read`. A
//! PATTERN names tables by their dotted name (`namespace.table`):
//! - `ns` — every table directly in namespace `ns`;
//! - `ns.table` — that one table;
//! - `ns.*` — every table whose dotted name starts with `ns.` (so nested namespaces too);
//! - `ns.prefix*` — every table whose dotted name starts with `ns.prefix`.
//!
//! A principal *sees* a namespace when some grant could reach a table in it or below it;
//! it sees nothing else, not even in listings. Namespace changes, drops, renames and
//! registrations are for `admin` only.

use std::fmt;

use floe_table_format::{Namespace, TableIdent};

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Load, list and read.
    Read,
    /// Read, commit, and create the table.
    Write,
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Everything.
    Admin,
    /// `read:`/`write:` a pattern.
    Tables {
        /// What it allows.
        level: Level,
        /// The dotted-name pattern.
        pattern: Pattern,
    },
}

/// A table-name pattern (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `ns` or `ns.table`: a namespace's tables, or one table.
    Exact(String),
    /// `ns.prefix*`: dotted names starting with the prefix (which holds a `.`).
    Prefix(String),
}

/// Why a grant string was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid grant '{grant}': {reason}")]
pub struct GrantError {
    /// The grant as given.
    pub grant: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Grant {
    /// Parse `read:PATTERN`, `write:PATTERN` or `admin`.
    pub fn parse(s: &str) -> Result<Grant, GrantError> {
        let refuse = |reason: &str| GrantError {
            grant: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "admin" {
            return Ok(Grant::Admin);
        }
        let (level, pattern) = match s.split_once(':') {
            Some(("read", p)) => (Level::Read, p),
            Some(("write", p)) => (Level::Write, p),
            _ => return Err(refuse("expected read:PATTERN, write:PATTERN or admin")),
        };
        let pattern = match pattern.strip_suffix('*') {
            Some(prefix) => {
                let Some((ns, rest)) = prefix.rsplit_once('.') else {
                    return Err(refuse(
                        "a wildcard needs a namespace first (ns.* or ns.prefix*); use admin for everything",
                    ));
                };
                Namespace::parse(ns).map_err(|e| refuse(&e.to_string()))?;
                if rest.contains('*') || !rest.chars().all(name_char) {
                    return Err(refuse("'*' may only end the pattern"));
                }
                Pattern::Prefix(prefix.to_string())
            }
            None => {
                // Either a namespace or a table: both are dotted valid names.
                Namespace::parse(pattern).map_err(|e| refuse(&e.to_string()))?;
                Pattern::Exact(pattern.to_string())
            }
        };
        Ok(Grant::Tables { level, pattern })
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Admin => write!(f, "admin"),
            Grant::Tables { level, pattern } => {
                let level = match level {
                    Level::Read => "read",
                    Level::Write => "write",
                };
                match pattern {
                    Pattern::Exact(p) => write!(f, "{level}:{p}"),
                    Pattern::Prefix(p) => write!(f, "{level}:{p}*"),
                }
            }
        }
    }
}

impl Pattern {
    /// Whether the pattern names table `ident`.
    fn matches_table(&self, ident: &TableIdent) -> bool {
        let name = ident.to_string();
        match self {
            Pattern::Exact(p) => *p == name || *p == ident.namespace().to_string(),
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    /// Whether the pattern could name a table in `ns` or in a namespace below it.
    fn reaches_into(&self, ns: &Namespace) -> bool {
        let ns = ns.to_string();
        let below = format!("{ns}.");
        match self {
            Pattern::Exact(p) => *p == ns || p.starts_with(&below),
            Pattern::Prefix(p) => p.starts_with(&below) || below.starts_with(p.as_str()),
        }
    }
}

/// A principal's grants, asked what they allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    /// Parse each grant string.
    pub fn parse<S: AsRef<str>>(grants: &[S]) -> Result<Grants, GrantError> {
        grants
            .iter()
            .map(|g| Grant::parse(g.as_ref()))
            .collect::<Result<_, _>>()
            .map(Grants)
    }

    /// Whether `admin` is among them.
    pub fn is_admin(&self) -> bool {
        self.0.contains(&Grant::Admin)
    }

    /// Whether they allow `level` on table `ident`.
    pub fn allows(&self, level: Level, ident: &TableIdent) -> bool {
        self.0.iter().any(|g| match g {
            Grant::Admin => true,
            Grant::Tables { level: l, pattern } => *l >= level && pattern.matches_table(ident),
        })
    }

    /// Whether the namespace is visible: some grant reaches a table in it or below.
    pub fn sees(&self, ns: &Namespace) -> bool {
        self.0.iter().any(|g| match g {
            Grant::Admin => true,
            Grant::Tables { pattern, .. } => pattern.reaches_into(ns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TableIdent {
        TableIdent::parse(s).unwrap()
    }
    fn ns(s: &str) -> Namespace {
        Namespace::parse(s).unwrap()
    }
    fn g(list: &[&str]) -> Grants {
        Grants::parse(list).unwrap()
    }

    #[test]
    fn a_device_grant_reaches_its_own_table_only() {
        let dev = g(&["write:fleet.dev_042"]);
        assert!(dev.allows(Level::Write, &t("fleet.dev_042")));
        assert!(dev.allows(Level::Read, &t("fleet.dev_042")));
        for other in [
            "fleet.dev_0420",
            "fleet.dev_041",
            "other.dev_042",
            "fleet.dev_042x",
        ] {
            assert!(!dev.allows(Level::Read, &t(other)), "{other}");
        }
        assert!(dev.sees(&ns("fleet")));
        assert!(!dev.sees(&ns("site_17")));
        assert!(!dev.is_admin());
    }

    #[test]
    fn read_never_implies_write() {
        let party = g(&["read:site_17.*"]);
        assert!(party.allows(Level::Read, &t("site_17.charger_1")));
        assert!(party.allows(Level::Read, &t("site_17.sub.charger_1")));
        assert!(!party.allows(Level::Write, &t("site_17.charger_1")));
        assert!(!party.allows(Level::Read, &t("site_170.charger_1")));
        assert!(party.sees(&ns("site_17")));
        assert!(party.sees(&ns("site_17.sub")));
        assert!(!party.sees(&ns("site_170")));
        assert!(!party.sees(&ns("fleet")));
    }

    #[test]
    fn namespace_and_prefix_patterns() {
        let whole = g(&["read:fleet"]);
        assert!(whole.allows(Level::Read, &t("fleet.anything")));
        assert!(!whole.allows(Level::Read, &t("fleet.sub.t")));
        assert!(!whole.sees(&ns("fleet.sub")));
        let prefix = g(&["write:site.charger_1*"]);
        assert!(prefix.allows(Level::Write, &t("site.charger_1")));
        assert!(prefix.allows(Level::Write, &t("site.charger_17")));
        assert!(!prefix.allows(Level::Write, &t("site.charger_2")));
        assert!(prefix.sees(&ns("site")));
        assert!(!prefix.sees(&ns("other")));
        let admin = g(&["admin"]);
        assert!(admin.allows(Level::Write, &t("any.thing")) && admin.sees(&ns("x")));
    }

    #[test]
    fn bad_grants_are_refused_with_their_text() {
        for bad in [
            "",
            "read",
            "read:",
            "read:*",
            "write:Fleet.x",
            "delete:fleet",
            "read:fleet.*.x",
            "read:fleet.a*b*",
            "read:../x",
            "root",
        ] {
            let e = Grant::parse(bad).unwrap_err();
            assert_eq!(e.grant, bad);
        }
        for good in [
            "admin",
            "read:fleet",
            "write:fleet.dev_1",
            "read:a.b.*",
            "read:a.pre*",
        ] {
            assert_eq!(Grant::parse(good).unwrap().to_string(), good);
        }
    }
}
