//! The one error type of the sync crate.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while projecting local tables into a cloud warehouse.
///
/// Failures of one table (storage, metadata, commits) and of the catalogs keep their own
/// types and messages; the variants of sync's own are about the pair of warehouses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table-level failure (storage, names, metadata, commits), local or cloud.
    #[error(transparent)]
    Table(#[from] floe_table_format::Error),
    /// A catalog failure (listing or opening tables), local or cloud.
    #[error(transparent)]
    Catalog(#[from] floe_catalog::Error),
    /// The cloud warehouse did not answer after a bounded retry, or stopped answering in
    /// the middle of a sync (`floe sync`). Local data is untouched and the cloud holds no
    /// half-projected snapshot; run the sync again when the link is back.
    #[error("cannot reach the cloud warehouse {url} (gave up after {attempts} attempt(s)); nothing is half-projected and local data is untouched: run sync again when the link is back")]
    Unreachable {
        /// The cloud warehouse URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },
    /// A local table's history lost snapshots that were never projected (expired by a
    /// tool that ignored the sync watermark): the cloud cannot be brought up to date exactly.
    #[error("{table}: local snapshots after sequence number {watermark} (the last one projected to the cloud) were expired before they were projected; the oldest one left is {oldest}. Refusing to guess which rows the cloud lacks: re-project the table into a fresh cloud table, or append the missing data to the cloud directly")]
    SyncGap {
        /// The local table.
        table: String,
        /// The cloud's watermark for it.
        watermark: i64,
        /// Sequence number of the oldest local snapshot after the gap.
        oldest: i64,
    },
    /// The cloud table cannot receive the local table's files as they are.
    #[error("cannot sync {table} into {cloud}: {reason}")]
    SyncMismatch {
        /// The local table.
        table: String,
        /// The cloud table's location.
        cloud: String,
        /// What differs.
        reason: String,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed: what the table or catalog
    /// error says (transient store failures, commit conflicts, unknown outcomes). An
    /// unreachable cloud has already been retried; a gap or a mismatch stays until a
    /// person acts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Table(e) => e.is_retryable(),
            Error::Catalog(e) => e.is_retryable(),
            Error::Unreachable { .. } | Error::SyncGap { .. } | Error::SyncMismatch { .. } => false,
        }
    }

    /// The table-level error inside, if this is one (directly or through the catalog).
    pub fn as_table_error(&self) -> Option<&floe_table_format::Error> {
        match self {
            Error::Table(e) | Error::Catalog(floe_catalog::Error::Table(e)) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_wrapped_error_and_sync_failures_are_final() {
        let transient = || floe_table_format::Error::Read {
            location: "s3://b/t/data/x.parquet".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection reset".into(),
            },
        };
        assert!(Error::from(transient()).is_retryable());
        assert!(Error::from(floe_catalog::Error::from(transient())).is_retryable());
        let unreachable = Error::Unreachable {
            url: "s3://b".into(),
            attempts: 4,
            source: Box::new(transient().into()),
        };
        assert!(!unreachable.is_retryable());
        assert!(unreachable
            .to_string()
            .starts_with("cannot reach the cloud warehouse s3://b (gave up after 4 attempt(s))"));
        assert!(!Error::SyncGap {
            table: "t".into(),
            watermark: 1,
            oldest: 3
        }
        .is_retryable());
        assert!(Error::from(floe_catalog::Error::from(transient()))
            .as_table_error()
            .is_some());
    }
}
