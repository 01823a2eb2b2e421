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
    let cutoff = crate::metadata::now_ms().saturating_sub(older_than.as_millis() as i64);
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
    /// Unreferenced objects older than the grace period (deleted unless dry run).
    pub orphans: Vec<String>,
    /// Unreferenced objects younger than the grace period (kept: possibly in flight).
    pub young: usize,
    /// Objects referenced by live snapshots.
    pub referenced: usize,
}

/// Delete what no live snapshot references under the table's prefix, if older than `grace`.
pub async fn vacuum(table: &mut Table, grace: Duration, dry_run: bool) -> Result<VacuumReport> {
    table.refresh().await?;
    let wh = table.warehouse().clone();
    let metadata = table.metadata().clone();
    // Everything any live snapshot reads: its manifest list, manifests, and the data and
    // delete files of their live (ADDED or EXISTING) entries.
    let mut referenced: HashSet<String> = HashSet::new();
    let mut manifests = Vec::new();
    for snapshot in metadata.snapshots() {
        referenced.insert(snapshot.manifest_list().to_string());
        for m in &table.read_manifest_list(snapshot).await? {
            if referenced.insert(m.manifest_path.clone()) {
                manifests.push(m.clone());
            }
        }
    }
    let files: Vec<Vec<String>> = crate::maintenance::load_manifests(table.file_io(), manifests)
        .await?
        .into_iter()
        .map(|(_, manifest)| {
            // A DELETED entry records a removal: the file it names is read by no snapshot
            // through this manifest (a live snapshot that still reads it lists it as
            // ADDED or EXISTING in a manifest of its own).
            manifest
                .entries()
                .iter()
                .filter(|e| e.is_alive())
                .map(|e| e.data_file().file_path().to_string())
                .collect()
        })
        .collect();
    referenced.extend(files.into_iter().flatten());
    // Compare on store keys, so `file:/` and `file:///` spellings agree.
    let referenced_keys: HashSet<String> = referenced
        .iter()
        .filter_map(|l| wh.object_path(l).ok().map(|p| p.to_string()))
        .collect();
    let prefix = wh.object_path(table.location())?;
    let objects = wh.list_all(table.location()).await?;
    let cutoff = SystemTime::now() - grace;
    let mut report = VacuumReport {
        referenced: referenced_keys.len(),
        ..VacuumReport::default()
    };
    let mut doomed = Vec::new();
    for o in objects {
        let key = o.location.to_string();
        let name = o.location.filename().unwrap_or_default();
        if referenced_keys.contains(&key)
            || name.ends_with(".metadata.json")
            || name == "version-hint.text"
        {
            continue;
        }
        let modified: SystemTime = o.last_modified.into();
        if modified > cutoff {
            report.young += 1;
            continue;
        }
        let location = format!(
            "{}/{}",
            table.location(),
            key.strip_prefix(&format!("{prefix}/")).unwrap_or(&key)
        );
        report.orphans.push(location);
        doomed.push(o.location);
    }
    report.orphans.sort();
    if !dry_run && !doomed.is_empty() {
        let results: Vec<_> = wh
            .store()
            .delete_stream(stream::iter(doomed.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(Error::Write {
                location: table.location().to_string(),
                source: e,
            });
        }
    }
    Ok(report)
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
