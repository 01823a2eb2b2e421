//! Vacuum intents: the clock-free rule that keeps a vacuum from deleting what a commit in
//! flight still references (issue 15, class 2; spec: commit-protocol.md, "Vacuum and
//! commits in flight").
//!
//! A vacuum never deletes on the strength of its own listing alone. It first **commits an
//! intent**: a create-only object `metadata/vacuum-{id}.json` naming every object it will
//! delete, recorded in the table property [`LOG_KEY`] by a commit through the one driver.
//! The intent is built on the head the commit wins on: whatever any snapshot of that head
//! references is left out. Only after the intent commit has won does the vacuum delete, and
//! only what the intent names.
//!
//! A writer, just before each claim, compares what its commit adds (new manifest lists,
//! manifests and the files they add: its *staged* objects) with the intents committed
//! since it started (the intents in the head's log that were not in the log of the head it
//! started from); a writer that reuses objects it did not write (sync skipping a file a
//! failed run already copied, a REST commit of files written before the server saw it)
//! compares with every intent in the log. A staged object named by an intent makes the
//! commit fail with [`Error::Vacuumed`], committing nothing.
//!
//! Versions order everything: a commit claimed before the intent is part of the head the
//! intent is built on, so its objects are left out; one claimed after sees the intent.
//! Wall clocks only decide which unreferenced objects are worth listing (the grace
//! period), never safety.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{ManifestFile, ManifestStatus, TableMetadata};
use object_store::{PutMode, PutOptions};

use crate::error::{Error, Result};
use crate::table::Table;
use crate::warehouse::Warehouse;

/// The table property listing the intent objects (names under `metadata/`), oldest first,
/// comma-separated.
pub const LOG_KEY: &str = "floe.vacuum.intents";

/// Intents kept in the log (the newest).
pub const LOG_KEPT: usize = 16;

/// Objects one vacuum deletes at most (its intent stays well under the read bound); the
/// rest wait for the next vacuum.
pub const MAX_INTENT_OBJECTS: usize = 100_000;

/// The intent names recorded in `metadata`, oldest first. Entries that are not intent
/// names (a hostile or damaged property) are ignored.
pub fn log(metadata: &TableMetadata) -> Vec<String> {
    metadata
        .properties()
        .get(LOG_KEY)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| is_intent_name(n))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The log with `name` appended, keeping the newest [`LOG_KEPT`], as the property value.
pub fn log_with(mut log: Vec<String>, name: &str) -> String {
    log.push(name.to_string());
    let skip = log.len().saturating_sub(LOG_KEPT);
    log[skip..].join(",")
}

/// Whether `name` is an intent object's name: `vacuum-` + `[a-z0-9-]` + `.json`.
pub fn is_intent_name(name: &str) -> bool {
    name.strip_prefix("vacuum-")
        .and_then(|r| r.strip_suffix(".json"))
        .is_some_and(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The location of intent `name` of the table at `table_location`.
pub fn location(table_location: &str, name: &str) -> String {
    format!("{}/metadata/{name}", table_location.trim_end_matches('/'))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Body {
    #[serde(rename = "floe-vacuum-intent")]
    format: u32,
    /// Store keys of the objects the vacuum deletes.
    objects: Vec<String>,
}

/// Write intent `name` (create-only) naming `objects` (store keys).
pub async fn write(
    warehouse: &Warehouse,
    table_location: &str,
    name: &str,
    objects: &[String],
) -> Result<()> {
    let location = location(table_location, name);
    let body = serde_json::to_vec(&Body {
        format: 1,
        objects: objects.to_vec(),
    })
    .expect("an intent serializes");
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    warehouse
        .store()
        .put_opts(&warehouse.object_path(&location)?, body.into(), opts)
        .await
        .map_err(|source| Error::Write { location, source })?;
    Ok(())
}

/// The objects (store keys) intent `name` names. A missing or unreadable intent (deleted
/// or damaged by hand) names nothing, with a warning: it must not brick the table.
pub async fn read(
    warehouse: &Warehouse,
    table_location: &str,
    name: &str,
) -> Result<HashSet<String>> {
    let location = location(table_location, name);
    let bytes = match crate::metadata::read_bytes(warehouse, &location).await? {
        Some(b) => b,
        None => {
            tracing::warn!(object = %location, "a vacuum intent in the log is missing; taken as naming nothing");
            return Ok(HashSet::new());
        }
    };
    match serde_json::from_slice::<Body>(&bytes) {
        Ok(body) => Ok(body.objects.into_iter().collect()),
        Err(e) => {
            tracing::warn!(object = %location, error = %e, "a vacuum intent is unreadable; taken as naming nothing");
            Ok(HashSet::new())
        }
    }
}

/// The first object (store key) a commit from the table's head to `next` adds that
/// `doomed` names: the manifest list of each new snapshot, the manifests that snapshot
/// added, and the files those manifests add, checked in that order (so a manifest the
/// vacuum already deleted is named, not read). `written` is the manifest list the action
/// wrote, when it kept it.
pub async fn first_doomed(
    table: &Table,
    next: &TableMetadata,
    written: Option<&(i64, Arc<Vec<ManifestFile>>)>,
    doomed: &HashSet<String>,
) -> Result<Option<String>> {
    let wh = table.warehouse();
    let is_doomed = |location: &str| {
        wh.object_path(location)
            .ok()
            .map(|p| p.to_string())
            .filter(|k| doomed.contains(k))
    };
    let head = table.metadata();
    let mut new_manifests = Vec::new();
    for snapshot in next.snapshots() {
        if head.snapshot_by_id(snapshot.snapshot_id()).is_some() {
            continue;
        }
        if let Some(k) = is_doomed(snapshot.manifest_list()) {
            return Ok(Some(k));
        }
        let list = match written {
            Some((id, list)) if *id == snapshot.snapshot_id() => list.as_ref().clone(),
            _ => table.read_manifest_list(snapshot).await?,
        };
        for m in list {
            if m.added_snapshot_id == snapshot.snapshot_id() {
                if let Some(k) = is_doomed(&m.manifest_path) {
                    return Ok(Some(k));
                }
                new_manifests.push(m);
            }
        }
    }
    for (_, manifest) in crate::maintenance::load_manifests(table.file_io(), new_manifests).await? {
        for entry in manifest.entries() {
            if entry.status() == ManifestStatus::Added {
                if let Some(k) = is_doomed(entry.data_file().file_path()) {
                    return Ok(Some(k));
                }
            }
        }
    }
    Ok(None)
}

/// The check a writer makes before each claim (see the module docs): refuse the commit
/// when an intent committed since `start_log` (or, when `reuses`, any intent in the log)
/// names an object the commit adds. `cache` keeps intents read in earlier attempts.
pub(crate) async fn check_staged(
    table: &Table,
    next: &TableMetadata,
    written: Option<&(i64, Arc<Vec<ManifestFile>>)>,
    start_log: &[String],
    reuses: bool,
    cache: &mut HashMap<String, HashSet<String>>,
) -> Result<()> {
    let intents: Vec<String> = log(table.metadata())
        .into_iter()
        .filter(|n| reuses || !start_log.contains(n))
        .collect();
    if intents.is_empty() || next.snapshots().count() == 0 {
        return Ok(());
    }
    let mut doomed: HashMap<&str, &str> = HashMap::new();
    for name in &intents {
        if !cache.contains_key(name) {
            let named = read(table.warehouse(), table.location(), name).await?;
            cache.insert(name.clone(), named);
        }
    }
    for name in &intents {
        for k in &cache[name] {
            doomed.insert(k.as_str(), name.as_str());
        }
    }
    let keys: HashSet<String> = doomed.keys().map(|k| k.to_string()).collect();
    match first_doomed(table, next, written, &keys).await? {
        None => Ok(()),
        Some(object) => Err(Error::Vacuumed {
            table: table.name().to_string(),
            intent: location(table.location(), doomed[object.as_str()]),
            object,
        }),
    }
}
