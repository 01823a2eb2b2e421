//! The one error type of the table-format crate.

use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or committing a table.
///
/// Variants name the step that failed and carry the object or argument involved,
/// so that a person reading one line knows what to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The warehouse URL could not be understood or its store could not be built.
    #[error("invalid warehouse '{url}': {reason}")]
    InvalidWarehouse {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A namespace or table name was refused (it could escape its prefix, or is malformed).
    #[error("invalid name '{name}': {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// An argument other than a name was refused.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// Which argument.
        argument: String,
        /// Why it was refused.
        reason: String,
    },
    /// A location does not belong to this warehouse's store.
    #[error("location '{location}' is not served by this warehouse's store ({store})")]
    ForeignLocation {
        /// The location asked for.
        location: String,
        /// The store that was asked.
        store: String,
    },
    /// No metadata version exists for the table.
    #[error("table {table} does not exist (no metadata versions under {location})")]
    TableNotFound {
        /// The table's name.
        table: String,
        /// Where its metadata was looked for.
        location: String,
    },
    /// `create` found a table already there.
    #[error("table {table} already exists at {location}")]
    TableExists {
        /// The table's name.
        table: String,
        /// Its first metadata version.
        location: String,
    },
    /// Reading an object failed.
    #[error("failed to read {location}")]
    Read {
        /// The object.
        location: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// Writing an object failed.
    #[error("failed to write {location}")]
    Write {
        /// The object.
        location: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// Listing a prefix failed.
    #[error("failed to list {location}")]
    List {
        /// The prefix.
        location: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// A metadata object exists but is not valid table metadata.
    #[error("{location} is not valid Iceberg table metadata: {reason}")]
    CorruptMetadata {
        /// The object.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A delete was asked for at a location outside the warehouse (a table registered from
    /// elsewhere): Floe deletes nothing there.
    #[error(
        "{verb} refused: {location} is outside the warehouse {warehouse}; nothing was deleted"
    )]
    OutsideWarehouse {
        /// What was refused (vacuum, purge).
        verb: String,
        /// The table location.
        location: String,
        /// The warehouse root.
        warehouse: String,
    },
    /// A vacuum committed an intent to delete an object this commit adds (it wrote it
    /// before the vacuum listed the table, or reuses it). Nothing was committed; a rerun
    /// writes fresh objects.
    #[error("commit to {table} refused: a vacuum ({intent}) deletes {object}, which this commit references; nothing was committed, run it again")]
    Vacuumed {
        /// The table.
        table: String,
        /// The store key of the object.
        object: String,
        /// The intent naming it.
        intent: String,
    },
    /// A counter read from storage (a version number from an object name, a sequence
    /// number from metadata) is at the largest value its type holds, so no commit can
    /// follow it: the table was written by a hostile or broken writer. Nothing was written.
    #[error("{location}: {what} is at its largest value ({value}), so nothing can be committed after it (a hostile or corrupt table); nothing was committed")]
    Exhausted {
        /// The object the counter came from.
        location: String,
        /// Which counter (the version number, last-sequence-number, …).
        what: String,
        /// Its value.
        value: String,
    },
    /// A change built by another engine names a file outside the table's own folders.
    #[error("commit to {table} refused: {what} {location} is outside the table's {folder}; nothing was committed")]
    OutsideTable {
        /// The table.
        table: String,
        /// What the path is (data file, manifest, manifest list).
        what: String,
        /// The offending path.
        location: String,
        /// The folder it had to be under.
        folder: String,
    },
    /// An object is larger than Floe reads whole (a hostile or foreign object); nothing of
    /// it was buffered.
    #[error("{location} is {size} bytes, over the {limit} bytes Floe reads of a {what}; refusing to load it")]
    TooLarge {
        /// The object.
        location: String,
        /// What it should be (table metadata, manifest, …).
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The table was dropped (and perhaps recreated) since this writer loaded it: its base
    /// version is gone or belongs to another table. Not retryable: reload the table.
    #[error("commit to {table} refused: the table was dropped (and perhaps recreated) since this writer loaded it ({location} is gone or belongs to another table); reload it and commit again; nothing was committed")]
    TableReplaced {
        /// The table.
        table: String,
        /// The base version object that was checked.
        location: String,
    },
    /// A requirement of a change built by another engine does not hold on the head.
    #[error("commit to {table} refused: {reason}; nothing was committed")]
    RequirementFailed {
        /// The table.
        table: String,
        /// The requirement that failed.
        reason: String,
        /// True when it held on the head the client saw but not after a rebase over a
        /// concurrent commit (the client should reload and retry).
        after_rebase: bool,
    },
    /// Another writer kept winning: the commit was not applied.
    #[error(
        "commit to {table} lost to concurrent writers {attempts} times in {elapsed:?}; nothing was committed (retry later or raise the retry limits)"
    )]
    CommitConflict {
        /// The table.
        table: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
    },
    /// The outcome of the commit could not be established (the store did not answer).
    /// Retrying with the same commit id is safe: it is applied at most once.
    #[error(
        "commit {commit_id} to {table} has an unknown outcome: version {version} could not be read back; rerun with the same commit id to settle it"
    )]
    CommitUnknown {
        /// The table.
        table: String,
        /// The commit id stamped into the snapshot summary.
        commit_id: String,
        /// The version that was being claimed.
        version: u64,
    },
    /// A rewrite (compaction, retention) found files it meant to remove already gone: a
    /// concurrent rewrite removed them. Nothing was committed; run it again.
    #[error("{table} changed underneath the rewrite: {} file(s) it meant to remove are no longer live (e.g. {}); nothing was committed, run it again", missing.len(), missing.first().map(String::as_str).unwrap_or("?"))]
    FilesChanged {
        /// The table.
        table: String,
        /// Files no longer live.
        missing: Vec<String>,
    },
    /// Input data does not fit the table.
    #[error("{input}: column '{column}': {reason}")]
    SchemaMismatch {
        /// The input (file name or "batch").
        input: String,
        /// The column at fault.
        column: String,
        /// What does not fit.
        reason: String,
    },
    /// The schema an append's data files were written with no longer fits the head it
    /// builds on (another writer gave a planned field id to another column, or changed a
    /// type). Nothing was committed; the files must be written again against the new head
    /// (`ingest::append_files` does so itself).
    #[error("append to {table}: column '{column}': {reason}; the schema moved underneath the append, nothing was committed")]
    SchemaMoved {
        /// The table.
        table: String,
        /// The column at fault.
        column: String,
        /// What moved.
        reason: String,
    },
    /// Input data could not be read.
    #[error("cannot read {input}: {reason}")]
    Input {
        /// The input (file name).
        input: String,
        /// What went wrong.
        reason: String,
    },
    /// The catalog that records a table's head (see `pointer`) failed.
    #[error("catalog {catalog}: {reason}")]
    Catalog {
        /// The catalog (e.g. the SQLite file).
        catalog: String,
        /// What failed.
        reason: String,
        /// Whether the operation may have taken effect / may succeed if retried.
        retryable: bool,
    },
    /// An iceberg library step failed.
    #[error("{step}")]
    Iceberg {
        /// The step that failed, with its object.
        step: String,
        /// iceberg's error.
        #[source]
        source: Box<iceberg::Error>,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed.
    ///
    /// True for transient store failures, commit conflicts (the table was busy)
    /// and unknown commit outcomes (retrying with the same commit id is safe).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::List { source, .. } => is_transient(source),
            Error::CommitConflict { .. }
            | Error::CommitUnknown { .. }
            | Error::FilesChanged { .. }
            | Error::SchemaMoved { .. }
            | Error::Vacuumed { .. } => true,
            Error::Catalog { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Wrap an iceberg error with the step that failed.
    pub fn iceberg(step: impl Into<String>, source: iceberg::Error) -> Self {
        Error::Iceberg {
            step: step.into(),
            source: Box::new(source),
        }
    }
}

/// Whether an object store error is worth retrying (a network or server fault rather
/// than a definite answer such as "not found" or "precondition failed").
pub fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}
