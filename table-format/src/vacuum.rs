//! `floe expire` and `floe vacuum`: explicit maintenance beside what commits do on their own.
//!
//! - **expire** removes snapshots older than a cutoff (keeping the newest N, the current
//!   one and any a branch or tag points at) in a metadata-only commit, then deletes their
//!   manifest lists.
//! - **vacuum** deletes objects under a table's prefix that no live snapshot references and
//!   that are older than a grace period: a crash's leftovers, manifests a merge replaced,
//!   files of expired snapshots. Metadata versions (`*.metadata.json`) and the hint are
//!   never deleted here (see `maintenance` on tombstones), and the grace period protects the
//!   files of commits in flight, which are young and not yet referenced.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures::stream::{self, StreamExt};
use iceberg::spec::TableMetadataBuilder;

use crate::commit::RetryPolicy;
use crate::driver::{Action, Applied};
use crate::error::{Error, Result};
use crate::table::Table;

/// Parse a duration such as `30s`, `15m`, `1h`, `7d` (also `500ms`), of at most 100 years
/// (`36500d`): a longer one is refused, as is one whose number does not fit, so every
/// duration this returns can be taken from the present time and counted in microseconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    /// The longest duration accepted: 100 years of 365 days.
    const MAX_SECS: u64 = 36_500 * 86_400;
    let t = text.trim();
    let invalid = |reason: &str| Error::InvalidArgument {
        argument: format!("duration '{text}'"),
        reason: reason.into(),
    };
    let unexpected = || invalid("expected a number and a unit: 500ms, 30s, 15m, 1h, 7d");
    let too_long = || invalid("longer than 100 years (36500d)");
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(unexpected)?;
    let (n, unit) = t.split_at(split);
    if n.is_empty() {
        return Err(unexpected());
    }
    // All digits: the only failure left is a number too large for u64.
    let n: u64 = n.parse().map_err(|_| too_long())?;
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(unexpected()),
    };
    match n.checked_mul(per_unit_ms) {
        Some(ms) if ms <= MAX_SECS * 1_000 => Ok(Duration::from_millis(ms)),
        _ => Err(too_long()),
    }
}

/// What an expire did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Snapshots removed.
    pub expired: Vec<i64>,
    /// Snapshots left.
    pub remaining: usize,
}

/// Expire snapshots older than `older_than`, keeping at least the newest `retain_last`.
pub async fn expire(
    table: &mut Table,
    older_than: Duration,
    retain_last: usize,
) -> Result<ExpireReport> {
    let cutoff = crate::metadata::now_ms()
        .saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
    table.refresh().await?;
    let mut action = ExpireAction {
        cutoff,
        retain_last,
        expired: Vec::new(),
    };
    let commit_id = uuid::Uuid::new_v4().to_string();
    let done = table
        .commit(&commit_id, &RetryPolicy::default(), &mut action)
        .await?;
    Ok(ExpireReport {
        // Nothing was expired when the head already held no expirable snapshot.
        expired: if done.already_committed {
            Vec::new()
        } else {
            action.expired
        },
        remaining: table.metadata().snapshots().len(),
    })
}

/// The expire action: on each head, the snapshots older than the cutoff beyond the newest
/// `retain_last`, except the current one, those a ref points at, and (on a synced table)
/// those not yet projected. Idempotent by state: nothing left to expire is no commit.
struct ExpireAction {
    cutoff: i64,
    retain_last: usize,
    expired: Vec<i64>,
}

#[async_trait::async_trait]
impl Action for ExpireAction {
    fn kind(&self) -> &'static str {
        "expire"
    }

    async fn apply(&mut self, table: &Table, _attempt: u32) -> Result<Option<Applied>> {
        let metadata = table.metadata().as_ref().clone();
        let mut snaps: Vec<_> = metadata.snapshots().cloned().collect();
        snaps.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms(), s.sequence_number())));
        let protected: Vec<i64> = crate::maintenance::referenced_snapshots(&metadata)
            .into_iter()
            .chain(metadata.current_snapshot_id())
            .collect();
        // A synced table keeps every snapshot not yet projected to the cloud.
        let floor = crate::maintenance::unprojected_floor(&metadata);
        let expired: Vec<i64> = snaps
            .iter()
            .enumerate()
            .filter(|(rank, s)| {
                *rank >= self.retain_last.max(1)
                    && s.timestamp_ms() < self.cutoff
                    && !protected.contains(&s.snapshot_id())
                    && floor.is_none_or(|w| s.sequence_number() <= w)
            })
            .map(|(_, s)| s.snapshot_id())
            .collect();
        if expired.is_empty() {
            return Ok(None);
        }
        let lists: Vec<String> = snaps
            .iter()
            .filter(|s| expired.contains(&s.snapshot_id()))
            .map(|s| s.manifest_list().to_string())
            .collect();
        let next = TableMetadataBuilder::new_from_metadata(
            metadata,
            Some(table.metadata_location().to_string()),
        )
        .remove_snapshots(&expired)
        .build()
        .map_err(|e| Error::iceberg(format!("expire snapshots of {}", table.name()), e))?
        .metadata;
        self.expired = expired;
        Ok(Some(Applied::new(next).delete_after_commit(lists)))
    }
}

/// What a vacuum found (and deleted, unless it was a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    /// Unreferenced objects older than the grace period: deleted (in a dry run: would be
    /// deleted, unless a commit references them first).
    pub orphans: Vec<String>,
    /// Unreferenced objects younger than the grace period (kept: possibly in flight).
    pub young: usize,
    /// Objects referenced by live snapshots.
    pub referenced: usize,
    /// The intent the vacuum committed before deleting (see [`crate::intent`]).
    pub intent: Option<String>,
}

/// The store keys live snapshots reference, grown snapshot by snapshot: each snapshot's
/// manifest list, its manifests, and the files of their live (`ADDED`, `EXISTING`)
/// entries. A `DELETED` entry records a removal: a live snapshot that still reads the file
/// lists it as live in a manifest of its own.
#[derive(Default)]
struct Referenced {
    snapshots: HashSet<i64>,
    manifests: HashSet<String>,
    keys: HashSet<String>,
}

impl Referenced {
    /// Add what the snapshots of `table`'s head not seen before reference.
    async fn add_head(&mut self, table: &Table) -> Result<()> {
        let wh = table.warehouse();
        let mut locations = Vec::new();
        let mut manifests = Vec::new();
        for snapshot in table.metadata().snapshots() {
            if !self.snapshots.insert(snapshot.snapshot_id()) {
                continue;
            }
            locations.push(snapshot.manifest_list().to_string());
            for m in table.read_manifest_list(snapshot).await? {
                if self.manifests.insert(m.manifest_path.clone()) {
                    locations.push(m.manifest_path.clone());
                    manifests.push(m);
                }
            }
        }
        for (_, manifest) in crate::maintenance::load_manifests(table.file_io(), manifests).await? {
            locations.extend(
                manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| e.data_file().file_path().to_string()),
            );
        }
        // Compare on store keys, so `file:/` and `file:///` spellings agree.
        self.keys.extend(
            locations
                .iter()
                .filter_map(|l| wh.object_path(l).ok().map(|p| p.to_string())),
        );
        Ok(())
    }
}

/// Delete what no live snapshot references under the table's own folders, if older than
/// `grace`, by the clock-free rule of [`crate::intent`]: the objects to delete are first
/// committed as an intent (built on the head the commit wins on, leaving out whatever that
/// head references), and deleted only once that commit has won. The grace period only
/// spares the objects of commits in flight the trouble of being refused; it is not what
/// makes a vacuum safe.
pub async fn vacuum(table: &mut Table, grace: Duration, dry_run: bool) -> Result<VacuumReport> {
    table.refresh().await?;
    let wh = table.warehouse().clone();
    let mut referenced = Referenced::default();
    referenced.add_head(table).await?;
    let live_intents: HashSet<String> = crate::intent::log(table.metadata())
        .iter()
        .filter_map(|n| {
            wh.object_path(&crate::intent::location(table.location(), n))
                .ok()
                .map(|p| p.to_string())
        })
        .collect();
    let objects = crate::confine::own_objects(&wh, table.location(), "vacuum").await?;
    // A grace beyond the clock's range keeps everything.
    let cutoff = SystemTime::now().checked_sub(grace);
    let mut report = VacuumReport {
        referenced: referenced.keys.len(),
        ..VacuumReport::default()
    };
    let mut candidates = Vec::new();
    for o in objects {
        let key = o.location.to_string();
        let name = o.location.filename().unwrap_or_default();
        if referenced.keys.contains(&key)
            || live_intents.contains(&key)
            || name.ends_with(".metadata.json")
            || name == "version-hint.text"
        {
            continue;
        }
        let modified: SystemTime = o.last_modified.into();
        if cutoff.is_none_or(|c| modified > c)
            || candidates.len() >= crate::intent::MAX_INTENT_OBJECTS
        {
            report.young += 1;
            continue;
        }
        candidates.push(key);
    }
    if dry_run || candidates.is_empty() {
        report.orphans = locations_of(table, &wh, &candidates)?;
        return Ok(report);
    }
    let mut action = VacuumIntent {
        id: uuid::Uuid::new_v4().to_string(),
        referenced,
        candidates,
        doomed: Vec::new(),
        intent: None,
    };
    let done = table
        .commit(&action.id.clone(), &RetryPolicy::default(), &mut action)
        .await?;
    if done.already_committed {
        // Every candidate became referenced meanwhile: nothing to delete.
        return Ok(report);
    }
    report.intent = action.intent.take();
    report.orphans = locations_of(table, &wh, &action.doomed)?;
    let doomed: Vec<object_store::path::Path> = action
        .doomed
        .iter()
        .filter_map(|k| object_store::path::Path::parse(k).ok())
        .collect();
    let results: Vec<_> = wh
        .store()
        .delete_stream(stream::iter(doomed.into_iter().map(Ok)).boxed())
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(Error::Write {
                    location: table.location().to_string(),
                    source: e,
                })
            }
        }
    }
    Ok(report)
}

/// Store keys under the table's folder as locations, sorted.
fn locations_of(
    table: &Table,
    wh: &crate::warehouse::Warehouse,
    keys: &[String],
) -> Result<Vec<String>> {
    let prefix = wh.object_path(table.location())?.to_string();
    let mut out: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{}/{}",
                table.location(),
                k.strip_prefix(&format!("{prefix}/")).unwrap_or(k)
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The vacuum's commit: on each head, the candidates that head does not reference become
/// the intent (written create-only, then recorded in the log). Nothing left: no commit.
struct VacuumIntent {
    id: String,
    referenced: Referenced,
    candidates: Vec<String>,
    doomed: Vec<String>,
    intent: Option<String>,
}

#[async_trait::async_trait]
impl Action for VacuumIntent {
    fn kind(&self) -> &'static str {
        "vacuum"
    }

    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>> {
        self.referenced.add_head(table).await?;
        let doomed: Vec<String> = self
            .candidates
            .iter()
            .filter(|k| !self.referenced.keys.contains(*k))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(None);
        }
        let name = format!("vacuum-{}-a{attempt}.json", self.id);
        crate::intent::write(table.warehouse(), table.location(), &name, &doomed).await?;
        let metadata = table.metadata().as_ref().clone();
        let log = crate::intent::log_with(crate::intent::log(&metadata), &name);
        let next = TableMetadataBuilder::new_from_metadata(
            metadata,
            Some(table.metadata_location().to_string()),
        )
        .set_properties(std::collections::HashMap::from([(
            crate::intent::LOG_KEY.to_string(),
            log,
        )]))
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(format!("record a vacuum intent of {}", table.name()), e))?
        .metadata;
        self.doomed = doomed;
        self.intent = Some(crate::intent::location(table.location(), &name));
        Ok(Some(Applied::new(next)))
    }

    /// A vacuum adds no snapshot; it is idempotent by state (nothing left to delete).
    fn is_in(&self, _metadata: &iceberg::spec::TableMetadata, _commit_id: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "d", "7", "7w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
