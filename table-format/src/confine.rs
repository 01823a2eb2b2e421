//! Which objects a delete may touch (issue 15, class 1; spec: commit-protocol.md, "What a
//! delete may touch"). A vacuum or a purge of a table deletes only the table's **own**
//! objects:
//!
//! - under its own `metadata/` and `data/` folders, never elsewhere under its folder (a
//!   namespace's tables and documents, foreign files);
//! - never under the root of another table found there (a folder holding
//!   `metadata/*.metadata.json` or `metadata/version-hint.text`: another tool's table);
//! - never at a location outside the warehouse (a table registered from elsewhere);
//! - on a local disk, never through a link: an object whose real path leaves the table's
//!   real folder is passed over.

use object_store::ObjectMeta;

use crate::error::{Error, Result};
use crate::warehouse::{StoreSpec, Warehouse};

/// Refuse `location` unless it lies strictly inside the warehouse root; `verb` names what
/// was asked (vacuum, purge).
pub fn check_inside_warehouse(warehouse: &Warehouse, location: &str, verb: &str) -> Result<()> {
    let refuse = || Error::OutsideWarehouse {
        verb: verb.to_string(),
        location: location.to_string(),
        warehouse: warehouse.url().to_string(),
    };
    let key = warehouse.object_path(location).map_err(|_| refuse())?;
    let root = warehouse
        .object_path(warehouse.url())
        .map_err(|_| refuse())?;
    let (key, root) = (key.to_string(), root.to_string());
    let inside = if root.is_empty() {
        !key.is_empty()
    } else {
        key.starts_with(&format!("{root}/"))
    };
    if inside {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// The roots of tables other than the one at `prefix` among `keys` (store keys under
/// `prefix`): folders holding `metadata/*.metadata.json` or `metadata/version-hint.text`.
pub fn other_table_roots(keys: &[String], prefix: &str) -> Vec<String> {
    let mut roots: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let (dir, name) = k.rsplit_once('/')?;
            let root = dir.strip_suffix("/metadata")?;
            let is_version = name == "version-hint.text" || name.ends_with(".metadata.json");
            (is_version && root != prefix && root.starts_with(&format!("{prefix}/")))
                .then(|| root.to_string())
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Whether the store key `k` is the own object of the table at `prefix`: under its
/// `metadata/` or `data/`, and not under any of `others` (see [`other_table_roots`]).
pub fn is_own(k: &str, prefix: &str, others: &[String]) -> bool {
    (k.starts_with(&format!("{prefix}/metadata/")) || k.starts_with(&format!("{prefix}/data/")))
        && !others.iter().any(|r| k.starts_with(&format!("{r}/")))
}

/// The own objects of the table at `location` (see the module docs), listed with two
/// LISTs (its `metadata/` and `data/`). `verb` names the delete for the error when the
/// location lies outside the warehouse.
pub async fn own_objects(
    warehouse: &Warehouse,
    location: &str,
    verb: &str,
) -> Result<Vec<ObjectMeta>> {
    check_inside_warehouse(warehouse, location, verb)?;
    let location = location.trim_end_matches('/');
    let prefix = warehouse.object_path(location)?.to_string();
    let mut objects = warehouse.list_all(&format!("{location}/metadata")).await?;
    objects.extend(warehouse.list_all(&format!("{location}/data")).await?);
    let keys: Vec<String> = objects.iter().map(|o| o.location.to_string()).collect();
    let others = other_table_roots(&keys, &prefix);
    objects.retain(|o| is_own(o.location.as_ref(), &prefix, &others));
    if matches!(warehouse.spec(), StoreSpec::Local) {
        let real_root = std::fs::canonicalize(format!("/{prefix}")).ok();
        objects.retain(|o| {
            let real = std::fs::canonicalize(format!("/{}", o.location)).ok();
            let kept = matches!((&real, &real_root), (Some(f), Some(r)) if f.starts_with(r));
            if !kept {
                tracing::warn!(object = %o.location, "not deleted: a link leads out of the table's folder");
            }
            kept
        });
    }
    Ok(objects)
}
