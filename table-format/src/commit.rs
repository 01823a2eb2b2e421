//! The commit protocol's decision logic, kept pure so every transition is unit-tested.
//!
//! A commit claims version `N+1` of a table by creating `v{N+1}.metadata.json` create-only
//! (S3 `If-None-Match: *`, an atomic create-if-absent on local files). The IO driver in
//! [`crate::driver`] reports what each step told it; [`next`] says what to do next.
//!
//! ```text
//!            ┌──────────── Rebase (reload head; our commit id there? → Done) ◄────┐
//!            ▼                                                                    │
//!   ┌─► put v{N+1} create-only ──Won──► Done (write hint, best effort)            │
//!   │        │  │                                                                 │
//!   │        │  └──Lost (already exists / 409: maybe our own put, retried)──┐      │
//!   │        └──Unknown (timeout, dropped connection after sending)        │      │
//!   │                 ▼  ◄─────────────────────────────────────────────────┘      │
//!   │        Verify: read v{N+1} back ──Ours (byte for byte)──► Done              │
//!   │                 │   └──Theirs / Missing ─────────────────────────────────────┘
//!   │                 └──Failed (read error) ──► Verify again, then GiveUp(Unknown)
//!   └── attempts or time exhausted ──► GiveUp(Conflict), or GiveUp(Unknown) if any put
//!       was ambiguous (a delayed put could still land: never report that as "absent")
//! ```
//!
//! Invariants:
//! - a version object is written once, by the writer that created it;
//! - a commit id appears in at most one snapshot: before every re-apply the driver looks
//!   for its own commit id in the new head, so a lost response is never committed twice;
//! - a reported success is visible to every later reader (the version exists before
//!   success is reported; readers probe forward from the hint);
//! - a reported conflict means nothing was committed; an ambiguous outcome is reported as
//!   such, and rerunning with the same commit id settles it.

use std::time::Duration;

/// What the create-only put of the next version told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created: we hold the version.
    Won,
    /// The object already existed (or the store reported a conflicting request).
    Lost,
    /// No answer: the put may or may not have taken effect.
    Unknown,
}

/// What reading the claimed version back told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// The version holds our commit id.
    Ours,
    /// The version holds another writer's commit.
    Theirs,
    /// The version does not exist: our put did not take effect (yet).
    Missing,
    /// The read failed.
    Failed,
}

/// An event reported by the IO driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The result of a create-only put.
    Put(PutOutcome),
    /// The result of a read-back.
    ReadBack(ReadBack),
}

/// Where the driver stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptState {
    /// Puts made so far, counting the one just reported (1 after the first put).
    pub attempts: u32,
    /// Read-backs made for the current put.
    pub verifies: u32,
    /// Whether any put so far had an unknown outcome.
    pub ambiguous: bool,
    /// Time since the commit started.
    pub elapsed: Duration,
}

/// Retry limits and backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most puts of a version object per commit.
    pub max_attempts: u32,
    /// Stop retrying after this long (the attempt in flight still completes).
    pub max_elapsed: Duration,
    /// First backoff.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// Most read-backs of one ambiguous put.
    pub max_verifies: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 40,
            max_elapsed: Duration::from_secs(120),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
            max_verifies: 5,
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempts + 1`: exponential from `base_delay`, capped at
    /// `max_delay`, with "equal jitter" (half fixed, half random) so racing writers spread
    /// out. `jitter` is a number in `[0, 1)`, injected so tests are deterministic.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let cap = exp.min(self.max_delay);
        cap / 2 + cap.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// Why the driver stops without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Other writers kept winning; nothing of ours was committed.
    Conflict,
    /// We cannot tell whether our commit landed.
    Unknown,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// The commit is in: report success.
    Done,
    /// Read the claimed version back, after this pause.
    Verify(Duration),
    /// Reload the head, look for our commit id, re-apply on top and put again, after this pause.
    Rebase(Duration),
    /// Stop and report.
    GiveUp(GiveUp),
}

/// The transition function of the commit protocol.
pub fn next(event: Event, state: &AttemptState, policy: &RetryPolicy, jitter: f64) -> Next {
    let retry_or_give_up = || {
        if state.attempts >= policy.max_attempts || state.elapsed >= policy.max_elapsed {
            Next::GiveUp(if state.ambiguous {
                GiveUp::Unknown
            } else {
                GiveUp::Conflict
            })
        } else {
            Next::Rebase(policy.backoff(state.attempts, jitter))
        }
    };
    match event {
        Event::Put(PutOutcome::Won) | Event::ReadBack(ReadBack::Ours) => Next::Done,
        // "Already exists" may be our own put, retried inside the store's client after it
        // took effect: read it back before taking it for a lost race.
        Event::Put(PutOutcome::Unknown) | Event::Put(PutOutcome::Lost) => {
            Next::Verify(Duration::ZERO)
        }
        Event::ReadBack(ReadBack::Theirs) | Event::ReadBack(ReadBack::Missing) => {
            retry_or_give_up()
        }
        Event::ReadBack(ReadBack::Failed) => {
            if state.verifies >= policy.max_verifies {
                Next::GiveUp(GiveUp::Unknown)
            } else {
                Next::Verify(policy.backoff(state.verifies, jitter))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(attempts: u32, verifies: u32, ambiguous: bool, elapsed_ms: u64) -> AttemptState {
        AttemptState {
            attempts,
            verifies,
            ambiguous,
            elapsed: Duration::from_millis(elapsed_ms),
        }
    }

    #[test]
    fn every_transition() {
        let p = RetryPolicy {
            max_attempts: 3,
            max_elapsed: Duration::from_secs(10),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            max_verifies: 2,
        };
        use Event::*;
        use Next::*;
        let ms = Duration::from_millis;
        // (event, state, expected) with jitter 0: backoff = half the capped exponential.
        let table: Vec<(Event, AttemptState, Next)> = vec![
            (Put(PutOutcome::Won), st(1, 0, false, 0), Done),
            (Put(PutOutcome::Won), st(3, 0, true, 0), Done),
            (
                Put(PutOutcome::Unknown),
                st(1, 0, true, 0),
                Verify(Duration::ZERO),
            ),
            (
                Put(PutOutcome::Unknown),
                st(3, 0, true, 99_000),
                Verify(Duration::ZERO),
            ),
            (
                Put(PutOutcome::Lost),
                st(1, 0, false, 0),
                Verify(Duration::ZERO),
            ),
            (
                Put(PutOutcome::Lost),
                st(3, 0, false, 0),
                Verify(Duration::ZERO),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(1, 0, false, 0),
                Rebase(ms(50)),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(2, 0, false, 0),
                Rebase(ms(100)),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(3, 0, false, 0),
                GiveUp(super::GiveUp::Conflict),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(3, 0, true, 0),
                GiveUp(super::GiveUp::Unknown),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(1, 0, false, 10_000),
                GiveUp(super::GiveUp::Conflict),
            ),
            (ReadBack(super::ReadBack::Ours), st(1, 1, true, 0), Done),
            (
                ReadBack(super::ReadBack::Theirs),
                st(1, 1, true, 0),
                Rebase(ms(50)),
            ),
            (
                ReadBack(super::ReadBack::Theirs),
                st(3, 1, true, 0),
                GiveUp(super::GiveUp::Unknown),
            ),
            (
                ReadBack(super::ReadBack::Missing),
                st(1, 1, true, 0),
                Rebase(ms(50)),
            ),
            (
                ReadBack(super::ReadBack::Missing),
                st(3, 1, true, 0),
                GiveUp(super::GiveUp::Unknown),
            ),
            (
                ReadBack(super::ReadBack::Failed),
                st(1, 1, true, 0),
                Verify(ms(50)),
            ),
            (
                ReadBack(super::ReadBack::Failed),
                st(1, 2, true, 0),
                GiveUp(super::GiveUp::Unknown),
            ),
        ];
        for (event, state, expected) in table {
            assert_eq!(
                next(event, &state, &p, 0.0),
                expected,
                "{event:?} in {state:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(5));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(10));
        assert_eq!(p.backoff(4, 0.0), Duration::from_millis(40));
        assert_eq!(p.backoff(30, 0.0), Duration::from_millis(500));
        assert_eq!(p.backoff(30, 0.5), Duration::from_millis(750));
        assert!(p.backoff(3, 0.3) < p.backoff(3, 0.9));
    }
}
