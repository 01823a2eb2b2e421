//! The server's errors, and their Iceberg REST `ErrorModel` responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use floe_table_format::Error as TableError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a request can fail with. Each variant is one HTTP status and one REST error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: the request is malformed or invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credential or token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's grants do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such namespace.
    #[error("{0}")]
    NoSuchNamespace(String),
    /// 404: no such table.
    #[error("{0}")]
    NoSuchTable(String),
    /// 404: no such thing (route, principal).
    #[error("{0}")]
    NotFound(String),
    /// 406: not supported by Floe.
    #[error("{0}")]
    Unsupported(String),
    /// 409: already exists, or another conflict.
    #[error("{0}")]
    Conflict(String),
    /// 409: a requirement failed or writers kept winning; reload and retry.
    #[error("{0}")]
    CommitFailed(String),
    /// 413: the body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 500: the commit's outcome is unknown; do not blindly retry.
    #[error("{0}")]
    CommitStateUnknown(String),
    /// 503: storage is failing transiently.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Its status and REST error type.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "NotAuthorizedException"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "ForbiddenException"),
            Error::NoSuchNamespace(_) => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
            Error::NoSuchTable(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "NotFoundException"),
            Error::Unsupported(_) => (StatusCode::NOT_ACCEPTABLE, "UnsupportedOperationException"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "AlreadyExistsException"),
            Error::CommitFailed(_) => (StatusCode::CONFLICT, "CommitFailedException"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "BadRequestException"),
            Error::CommitStateUnknown(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "CommitStateUnknownException",
            ),
            Error::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailureException"),
        }
    }

    /// The `ErrorModel` body.
    pub fn body(&self) -> serde_json::Value {
        let (status, kind) = self.status();
        serde_json::json!({
            "error": { "message": self.to_string(), "type": kind, "code": status.as_u16() }
        })
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status().0, Json(self.body())).into_response()
    }
}

/// One line with the causes, as a person reads it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

impl From<TableError> for Error {
    fn from(e: TableError) -> Self {
        let msg = chain(&e);
        match &e {
            TableError::TableNotFound { .. } => Error::NoSuchTable(msg),
            TableError::TableExists { .. } => Error::Conflict(msg),
            TableError::InvalidName { .. }
            | TableError::InvalidArgument { .. }
            | TableError::ForeignLocation { .. }
            | TableError::OutsideTable { .. }
            | TableError::OutsideWarehouse { .. }
            | TableError::SchemaMismatch { .. }
            | TableError::Input { .. }
            | TableError::CorruptMetadata { .. } => Error::BadRequest(msg),
            TableError::RequirementFailed { .. }
            | TableError::TableReplaced { .. }
            | TableError::CommitConflict { .. }
            | TableError::FilesChanged { .. }
            | TableError::Vacuumed { .. } => Error::CommitFailed(msg),
            TableError::CommitUnknown { .. } => Error::CommitStateUnknown(msg),
            TableError::Iceberg { source, .. }
                if source.kind() == floe_table_format::iceberg::ErrorKind::DataInvalid
                    || source.kind()
                        == floe_table_format::iceberg::ErrorKind::FeatureUnsupported =>
            {
                Error::BadRequest(msg)
            }
            _ if e.is_retryable() => Error::Unavailable(msg),
            _ => Error::Internal(msg),
        }
    }
}

impl From<floe_catalog::Error> for Error {
    fn from(e: floe_catalog::Error) -> Self {
        use floe_catalog::Error as C;
        match e {
            C::Table(t) => t.into(),
            C::NamespaceNotFound { .. } => Error::NoSuchNamespace(chain(&e)),
            C::NamespaceExists { .. } => Error::Conflict(chain(&e)),
            C::NamespaceConflict { .. } => Error::CommitFailed(chain(&e)),
            _ => Error::Internal(chain(&e)),
        }
    }
}

impl From<crate::grants::GrantError> for Error {
    fn from(e: crate::grants::GrantError) -> Self {
        Error::BadRequest(e.to_string())
    }
}
