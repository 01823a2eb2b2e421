//! The one commit driver: every change to a table's metadata is an [`Action`] run by
//! [`Table::commit`], which owns the whole loop of [`crate::commit`]:
//!
//! 1. look for the action's commit id in the head (a rerun of a landed commit is a no-op);
//! 2. let the action build the next metadata on the head (it re-validates its
//!    preconditions there, e.g. a replace checks its files are still live);
//! 3. claim the next version: create-only `v{N+1}` (Hadoop layout) or a CAS on the
//!    catalog's pointer;
//! 4. on an ambiguous answer, read the version back and compare it byte for byte;
//! 5. on a lost race, back off with jitter, reload, look for the commit id again, re-apply;
//! 6. once won: write the hint and run the action's post-commit cleanup;
//! 7. give up with [`Error::CommitConflict`] (nothing committed) or [`Error::CommitUnknown`]
//!    naming the commit id that a rerun settles.
//!
//! Nothing below this module knows which action it runs, and no action retries by itself.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use iceberg::spec::TableMetadata;
use object_store::ObjectStoreExt;
use tracing::Instrument;

use super::{find_commit, validate_commit_id, Cleanup, Table, FORBIDDEN_PROPERTIES};
use crate::commit::{self, AttemptState, Event, GiveUp, Next, PutOutcome, ReadBack, RetryPolicy};
use crate::error::{Error, Result};
use crate::pointer;
use crate::version::{self, Version};

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
        let base = self.version.ok_or_else(|| Error::InvalidArgument {
            argument: "table".into(),
            reason: format!(
                "{} was opened from a metadata file and is read-only",
                self.name
            ),
        })?;
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
            version: self.version.expect("a writable table has a version"),
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
        for key in FORBIDDEN_PROPERTIES {
            if next.properties().get(*key) != base.properties().get(*key) {
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
        loop {
            let target = self.version.expect("checked in commit").next();
            let Some(applied) = action.apply(self, state.attempts).await? else {
                return Ok(self.committed(state.attempts, true));
            };
            self.confine(&applied.metadata)?;
            let location = match self.pointer {
                None => version::metadata_location(&self.location, target),
                Some(_) => pointer::new_metadata_location(&self.location, target.0),
            };
            let base_location = self.metadata_location.clone();
            let body =
                serde_json::to_vec(&applied.metadata).map_err(|e| Error::CorruptMetadata {
                    location: location.clone(),
                    reason: e.to_string(),
                })?;
            let outcome = match self.put_next(&location, body.clone()).await? {
                Ok(o) => o,
                Err(e) if crate::error::is_transient(&e) => {
                    tracing::warn!(version = target.0, error = %e, "claim had no clear answer");
                    PutOutcome::Unknown
                }
                Err(source) => return Err(Error::Write { location, source }),
            };
            if outcome == PutOutcome::Unknown {
                *ambiguous_version = Some(target.0);
            }
            state.attempts += 1;
            state.verifies = 0;
            state.ambiguous |= outcome == PutOutcome::Unknown;
            state.elapsed = started.elapsed();
            let mut event = Event::Put(outcome);
            loop {
                match commit::next(event, &state, policy, rand::random::<f64>()) {
                    Next::Done => {
                        let Applied { metadata, cleanup } = applied;
                        self.version = Some(target);
                        self.metadata_location = location.clone();
                        self.metadata = Arc::new(metadata);
                        if self.pointer.is_none() {
                            if let Err(e) =
                                version::write_hint(&self.warehouse, &self.location, target).await
                            {
                                tracing::warn!(error = %e, "could not write the version hint");
                            }
                        }
                        if let Some(list) = cleanup.written_list.clone() {
                            self.list_cache = Some(list);
                        }
                        self.clean_up(cleanup).await;
                        return Ok(self.committed(state.attempts, false));
                    }
                    Next::Verify(delay) => {
                        tokio::time::sleep(delay).await;
                        state.verifies += 1;
                        event =
                            Event::ReadBack(self.read_back(&location, &base_location, &body).await);
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

    /// Read the claimed version back: is `location` (holding exactly `body`) the head now?
    async fn read_back(&self, location: &str, base_location: &str, body: &[u8]) -> ReadBack {
        match &self.pointer {
            None => {
                let path = match self.warehouse.object_path(location) {
                    Ok(p) => p,
                    Err(_) => return ReadBack::Failed,
                };
                match self.warehouse.store().get(&path).await {
                    Ok(r) => match r.bytes().await {
                        Ok(b) if b.as_ref() == body => ReadBack::Ours,
                        Ok(_) => ReadBack::Theirs,
                        Err(e) => {
                            tracing::warn!(error = %e, "read-back failed");
                            ReadBack::Failed
                        }
                    },
                    Err(object_store::Error::NotFound { .. }) => ReadBack::Missing,
                    Err(e) => {
                        tracing::warn!(error = %e, "read-back failed");
                        ReadBack::Failed
                    }
                }
            }
            Some(p) => match p.current().await {
                Ok(Some(cur)) if cur == location => ReadBack::Ours,
                Ok(Some(cur)) if cur == base_location => ReadBack::Missing,
                Ok(_) => ReadBack::Theirs,
                Err(e) => {
                    tracing::warn!(error = %e, "read-back failed");
                    ReadBack::Failed
                }
            },
        }
    }
}
