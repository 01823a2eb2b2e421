//! The one commit driver: every change to a table's metadata is an [`Action`] run by
//! [`Table::commit`], which owns the whole loop of [`crate::commit`]:
//!
//! 1. look for the action's commit id in the head (a rerun of a landed commit is a no-op);
//! 2. let the action build the next metadata on the head (it re-validates its
//!    preconditions there, e.g. a replace checks its files are still live);
//! 3. claim the next version through the table's [`crate::head::HeadStore`]: create-only
//!    `v{N+1}` (Hadoop layout) or a CAS on the catalog's pointer;
//! 4. on an ambiguous answer, read the claim back (byte for byte, or the pointer);
//! 5. on a lost race, back off with jitter, reload, look for the commit id again, re-apply;
//! 6. once won: the head store's bookkeeping (the hint), then the post-commit cleanup
//!    (tombstones of expired versions, expired manifest lists);
//! 7. give up with [`Error::CommitConflict`] (nothing committed) or [`Error::CommitUnknown`]
//!    naming the commit id that a rerun settles.
//!
//! Nothing below this module knows which action it runs, and no action retries by itself.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use iceberg::spec::{ManifestFile, TableMetadata};
use object_store::ObjectStoreExt;
use tracing::Instrument;

use crate::commit::{self, AttemptState, Event, GiveUp, Next, RetryPolicy};
use crate::error::{Error, Result};
use crate::head::{Claim, Head};
use crate::maintenance;
use crate::metadata::{self, find_commit, is_location_property, validate_commit_id};
use crate::table::Table;
use crate::version::{self, Version};

/// A claim on a base last seen longer ago than this confirms the base first (one read of
/// the base version in the Hadoop layout), so that a writer that idled across a drop and
/// a recreate of its table cannot claim a version of the new table. A writer committing
/// back to back (each base its own last win) pays nothing; one that commits once a
/// minute pays one GET per commit. See spec/commit-protocol.md, "A recreated table".
pub const CONFIRM_BASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// One change to a table, run by [`Table::commit`].
///
/// Contract: [`Action::apply`] builds the next metadata on the table's loaded head (it may
/// be called again on a newer head after a lost race, and must re-validate against it), or
/// says the head already holds the change. [`Action::is_in`] tells whether a head holds
/// this commit, so that a lost response is never committed twice.
#[async_trait]
pub trait Action: Send {
    /// A short name for logs and errors ("append", "replace", "expire", …).
    fn kind(&self) -> &'static str;

    /// The next metadata on `table`'s head, or `None` when the head already holds the
    /// change (nothing to commit). `attempt` counts the puts made so far.
    async fn apply(&mut self, table: &Table, attempt: u32) -> Result<Option<Applied>>;

    /// Whether `metadata` holds the commit `commit_id` of this action. By default: a
    /// snapshot whose summary carries the commit id. Actions that add no snapshot are
    /// idempotent by state instead ([`Action::apply`] returns `None`).
    fn is_in(&self, metadata: &TableMetadata, commit_id: &str) -> bool {
        find_commit(metadata, commit_id).is_some()
    }

    /// Whether the commit may reference objects it did not write itself after its start
    /// (sync reusing a copy a failed run left, a REST commit of files a client wrote before
    /// the server loaded the table): then every vacuum intent in the log is checked before
    /// a claim, not only those committed since the start (see [`crate::intent`]).
    fn reuses_objects(&self) -> bool {
        false
    }
}

/// What an action built: the next metadata, and what to clean up once it has won.
#[derive(Debug)]
pub struct Applied {
    pub(crate) metadata: TableMetadata,
    pub(crate) cleanup: Cleanup,
}

impl Applied {
    /// The next metadata, with nothing to clean up after the commit.
    pub fn new(metadata: TableMetadata) -> Self {
        Self {
            metadata,
            cleanup: Cleanup::default(),
        }
    }

    /// Also delete these manifest lists (under the table's `metadata/`) once committed.
    pub fn delete_after_commit(mut self, manifest_lists: Vec<String>) -> Self {
        self.cleanup.manifest_lists.extend(manifest_lists);
        self
    }
}

/// What [`Table::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The table's head version after the call.
    pub version: Version,
    /// Version claims made (1 without contention, 0 if nothing was written).
    pub attempts: u32,
    /// The head already held the change (same commit id, or the action had nothing left
    /// to do) and nothing new was written.
    pub already_committed: bool,
}

impl Table {
    /// Run `action` as one commit with id `commit_id`: the only retry loop for table
    /// metadata. See the module docs for the states.
    pub async fn commit(
        &mut self,
        commit_id: &str,
        policy: &RetryPolicy,
        action: &mut (dyn Action + '_),
    ) -> Result<Committed> {
        let base = self.version;
        validate_commit_id(commit_id)?;
        let span = tracing::info_span!("commit", table = %self.name, action = action.kind(), base = base.0, commit_id = %commit_id);
        let mut ambiguous_version = None;
        let result = self
            .drive(commit_id, policy, action, &mut ambiguous_version)
            .instrument(span)
            .await;
        match (result, ambiguous_version) {
            // Once a put of ours may have landed, no error may be reported as "not
            // committed": it is an unknown outcome, settled by rerunning with the same id.
            (Err(e), Some(version)) if !matches!(e, Error::CommitUnknown { .. }) => {
                tracing::warn!(error = %e, "failing after an ambiguous put");
                Err(Error::CommitUnknown {
                    table: self.name.clone(),
                    commit_id: commit_id.to_string(),
                    version,
                })
            }
            (result, _) => result,
        }
    }

    fn committed(&self, attempts: u32, already_committed: bool) -> Committed {
        Committed {
            version: self.version,
            attempts,
            already_committed,
        }
    }

    /// Refuse metadata that leaves the table's own place: another uuid, another location,
    /// or a property that would write files outside its prefix.
    fn confine(&self, next: &TableMetadata) -> Result<()> {
        let base = self.metadata.as_ref();
        let refuse = |reason: String| {
            Err(Error::InvalidArgument {
                argument: format!("commit to {}", self.name),
                reason,
            })
        };
        if next.uuid() != base.uuid() {
            return refuse("the new metadata belongs to another table (uuid differs)".into());
        }
        if next.location().trim_end_matches('/') != base.location().trim_end_matches('/') {
            return refuse(format!(
                "a commit may not move the table from '{}' to '{}'",
                base.location(),
                next.location()
            ));
        }
        let changed = next
            .properties()
            .iter()
            .filter(|(k, v)| base.properties().get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(
                base.properties()
                    .keys()
                    .filter(|k| !next.properties().contains_key(*k)),
            );
        for key in changed {
            if is_location_property(key) {
                return refuse(format!(
                    "a commit may not change '{key}': a Floe table keeps all its files under its own prefix"
                ));
            }
        }
        Ok(())
    }

    async fn drive(
        &mut self,
        commit_id: &str,
        policy: &RetryPolicy,
        action: &mut (dyn Action + '_),
        ambiguous_version: &mut Option<u64>,
    ) -> Result<Committed> {
        let started = Instant::now();
        let mut state = AttemptState::default();
        if action.is_in(&self.metadata, commit_id) {
            return Ok(self.committed(0, true));
        }
        // The vacuum intents the writer already knew of when it started (its objects were
        // written after its head was loaded); intents read in earlier attempts.
        let start_log = crate::intent::log(&self.metadata);
        let mut intents = std::collections::HashMap::new();
        loop {
            let target = self.version.next().ok_or_else(|| Error::Exhausted {
                location: self.metadata_location().to_string(),
                what: "the version number".into(),
                value: self.version.0.to_string(),
            })?;
            let Some(mut applied) = action.apply(self, state.attempts).await? else {
                return Ok(self.committed(state.attempts, true));
            };
            // Whatever expired snapshots (expiry, the commit path's cap, another engine's
            // removal), their commit ids stay recognisable (metadata::EXPIRED_COMMITS_KEY).
            applied.metadata = metadata::record_expired_commits(&self.metadata, applied.metadata)?;
            self.confine(&applied.metadata)?;
            crate::intent::check_staged(
                self,
                &applied.metadata,
                applied.cleanup.written_list.as_ref(),
                &start_log,
                action.reuses_objects(),
                &mut intents,
            )
            .await?;
            let location = self.head.next_location(target);
            let base = self.head_now();
            let body = metadata::to_bytes(&applied.metadata, &location)?;
            let base_metadata = Arc::clone(&self.metadata);
            let claim = Claim {
                base: &base,
                base_metadata: &base_metadata,
                next: &applied.metadata,
                location: &location,
                body: &body,
            };
            if self.confirmed_at.elapsed() >= CONFIRM_BASE_AFTER {
                self.head.confirm_base(&claim).await?;
                self.confirmed_at = Instant::now();
            }
            let outcome = self.head.claim(&claim).await?;
            if outcome == commit::PutOutcome::Unknown {
                *ambiguous_version = Some(target.0);
            }
            state.attempts += 1;
            state.verifies = 0;
            state.ambiguous |= outcome == commit::PutOutcome::Unknown;
            state.elapsed = started.elapsed();
            let mut event = Event::Put(outcome);
            loop {
                match commit::next(event, &state, policy, rand::random::<f64>()) {
                    Next::Done => {
                        let Applied { metadata, cleanup } = applied;
                        let (won, metadata) = match self.head.landed(&location) {
                            Some(landed) => landed,
                            None => (
                                Head {
                                    version: target,
                                    metadata_location: location.clone(),
                                },
                                metadata,
                            ),
                        };
                        self.adopt(won.clone(), metadata);
                        self.head.after_win(&won).await;
                        self.reindex(&base_metadata).await;
                        if let Some(list) = cleanup.written_list.clone() {
                            self.list_cache = Some(list);
                        }
                        if self.head.cleans_up() {
                            self.clean_up(&base_metadata, base.version, cleanup).await;
                        }
                        return Ok(self.committed(state.attempts, false));
                    }
                    Next::Verify(delay) => {
                        tokio::time::sleep(delay).await;
                        state.verifies += 1;
                        event = Event::ReadBack(self.head.read_back(&claim).await);
                    }
                    Next::Rebase(delay) => {
                        tokio::time::sleep(delay).await;
                        // A "lost" claim may be our own (a store's internal retry of a put
                        // that won), and an ambiguous one may land late: look first.
                        self.refresh().await?;
                        if action.is_in(&self.metadata, commit_id) {
                            return Ok(self.committed(state.attempts, false));
                        }
                        break;
                    }
                    Next::GiveUp(give_up) => {
                        let refreshed = self.refresh().await;
                        if refreshed.is_ok() && action.is_in(&self.metadata, commit_id) {
                            return Ok(self.committed(state.attempts, false));
                        }
                        return Err(match give_up {
                            GiveUp::Conflict => {
                                refreshed?;
                                Error::CommitConflict {
                                    table: self.name.clone(),
                                    attempts: state.attempts,
                                    elapsed: started.elapsed(),
                                }
                            }
                            GiveUp::Unknown => Error::CommitUnknown {
                                table: self.name.clone(),
                                commit_id: commit_id.to_string(),
                                version: ambiguous_version.unwrap_or(target.0),
                            },
                        });
                    }
                }
                state.elapsed = started.elapsed();
            }
        }
    }

    /// After a commit that changed the current schema of a warehouse-catalog table, move
    /// its marker in the namespace index (see [`crate::index`]).
    async fn reindex(&self, base: &TableMetadata) {
        if self.head.layout() != crate::head::HADOOP_LAYOUT
            || base.current_schema_id() == self.metadata.current_schema_id()
        {
            return;
        }
        if let Some(ident) = &self.ident {
            crate::index::record_quietly(&self.warehouse, ident, self.metadata.current_schema())
                .await;
        }
    }

    /// The post-commit step, once a version was won over `base` (at `base_version`):
    /// tombstone the metadata versions the commit dropped from the log (when
    /// `write.metadata.delete-after-commit.enabled`) and delete expired snapshots' manifest
    /// lists (best effort: a failure leaves garbage for vacuum, never a broken table). Only
    /// objects under the table's own `metadata/` are touched.
    async fn clean_up(&self, base: &TableMetadata, base_version: Version, cleanup: Cleanup) {
        let own = format!("{}/metadata/", self.location);
        let expired = if maintenance::Settings::of(&self.metadata).delete_after_commit {
            expired_versions(base, &self.metadata, base_version, &self.location)
        } else {
            Vec::new()
        };
        for v in expired {
            // Never delete a version: a stale writer could claim the freed name and fork
            // the history. A tiny tombstone keeps the name taken.
            let location = version::metadata_location(&self.location, v);
            let body = format!("{{\"floe-tombstone\": true, \"expired-version\": {}}}", v.0);
            let Ok(path) = self.warehouse.object_path(&location) else {
                continue;
            };
            if let Err(e) = self
                .warehouse
                .store()
                .put(&path, body.into_bytes().into())
                .await
            {
                tracing::warn!(object = %location, error = %e, "could not tombstone an expired version");
            }
        }
        // Expired snapshots' manifest lists: one batched delete (a bulk request on S3).
        let lists: Vec<String> = cleanup
            .manifest_lists
            .into_iter()
            .filter(|l| l.starts_with(&own))
            .collect();
        self.delete_objects(&lists).await;
    }
}

/// The metadata versions a commit on `base` (at version `base_version`) dropped from the
/// metadata log: in the base's log and not in `next`'s, under the table's own `metadata/`.
/// Only versions strictly below the base qualify, whatever the logs say: a hostile or
/// stale log can never make a writer tombstone the head or anything above it.
fn expired_versions(
    base: &TableMetadata,
    next: &TableMetadata,
    base_version: Version,
    table_location: &str,
) -> Vec<Version> {
    let own = format!("{table_location}/metadata/");
    let kept: std::collections::HashSet<&str> = next
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .collect();
    base.metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .filter(|f| !kept.contains(f))
        .filter_map(|f| f.strip_prefix(&own))
        .filter_map(version::parse_metadata_file_name)
        .filter(|v| *v < base_version)
        .collect()
}

/// What a commit made unreachable, removed once it has won (the driver's post-commit step).
#[derive(Debug, Default)]
pub(crate) struct Cleanup {
    /// The manifest list this commit wrote (cached by the handle once it has won).
    pub(crate) written_list: Option<(i64, Arc<Vec<ManifestFile>>)>,
    /// Manifest lists of snapshots the commit expired.
    pub(crate) manifest_lists: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iceberg::spec::TableMetadataBuilder;

    fn with_log_entry(m: TableMetadata, previous: &str) -> TableMetadata {
        TableMetadataBuilder::new_from_metadata(m, Some(previous.to_string()))
            .build()
            .unwrap()
            .metadata
    }

    #[test]
    fn only_versions_below_the_base_are_ever_tombstoned() {
        let schema = crate::schema::default_iot_schema();
        let partition = crate::schema::parse_partition_spec("day(ts)", &schema).unwrap();
        let first = Table::first_metadata(
            "file:///w/t",
            crate::table::TableDefinition {
                schema,
                partition,
                properties: Default::default(),
            },
        )
        .unwrap();
        let v = |n: u32| format!("file:///w/t/metadata/v{n}.metadata.json");
        // A hostile (or stale) log naming versions at and above the base (v5).
        let mut base = first.clone();
        for n in [1, 2, 5, 9] {
            base = with_log_entry(base, &v(n));
        }
        base = with_log_entry(base, "file:///elsewhere/metadata/v1.metadata.json");
        // The next metadata keeps none of them in its log.
        let expired = expired_versions(&base, &first, Version(5), "file:///w/t");
        assert_eq!(
            expired,
            vec![Version(1), Version(2)],
            "never v5 or v9, nor another table's"
        );
        // What the next metadata still logs is not expired.
        let keeps_v2 = with_log_entry(first.clone(), &v(2));
        assert_eq!(
            expired_versions(&base, &keeps_v2, Version(5), "file:///w/t"),
            vec![Version(1)]
        );
    }
}
