//! The catalog's error type.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table-level failure (storage, names, metadata).
    #[error(transparent)]
    Table(#[from] floe_table_format::Error),
    /// The namespace holds nothing.
    #[error("namespace {namespace} does not exist")]
    NamespaceNotFound {
        /// The namespace.
        namespace: String,
    },
    /// `namespace create` found one.
    #[error("namespace {namespace} already exists")]
    NamespaceExists {
        /// The namespace.
        namespace: String,
    },
    /// A namespace object could not be parsed.
    #[error("{location} is not a valid Floe namespace object: {reason}")]
    CorruptNamespace {
        /// The object.
        location: String,
        /// Why.
        reason: String,
    },
    /// Concurrent updates of one namespace kept winning.
    #[error("updating namespace {namespace} lost to concurrent updates {attempts} times; nothing was changed")]
    NamespaceConflict {
        /// The namespace.
        namespace: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A REST catalog refused a request or could not be reached (status 0).
    #[error("REST catalog {catalog}: {message}")]
    Rest {
        /// The catalog's address.
        catalog: String,
        /// The HTTP status (0: no answer).
        status: u16,
        /// The server's one-line reason.
        message: String,
    },
    /// Writing the SQL catalog failed.
    #[error("SQL catalog {path}: {reason}")]
    Sql {
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Table(e) => e.is_retryable(),
            Error::NamespaceConflict { .. } => true,
            Error::Rest { status, .. } => *status == 0 || *status >= 500,
            _ => false,
        }
    }
}
