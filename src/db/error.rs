//! [`DbError`]: every way the database layer fails.
//!
//! Messages name the thing that failed (the pool's node path, the session's id, the limit that
//! was hit) and, for errors the server sent, its SQLSTATE and message. They never contain the
//! password: errors are built from the server's fields and from [`DbConfig`]'s redacted target,
//! never from a connection string.
//!
//! ```
//! use uno_runtime::db::DbError;
//!
//! let err = DbError::SessionLimit { limit: 4, waited: std::time::Duration::from_millis(50) };
//! assert_eq!(
//!     err.to_string(),
//!     "no session within 50ms: the limit of 4 open sessions is reached"
//! );
//! assert!(!err.is_retryable_transaction());
//! ```
//!
//! [`DbConfig`]: super::DbConfig

use std::fmt;
use std::time::Duration;

/// SQLSTATE 40001 `serialization_failure`.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE 40P01 `deadlock_detected`.
pub const DEADLOCK_DETECTED: &str = "40P01";
/// SQLSTATE 57014 `query_canceled`.
pub const QUERY_CANCELED: &str = "57014";

/// What the server (or the client library) said about a failed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The SQLSTATE code, when the server sent one.
    pub code: Option<String>,
    /// The server's message (or the client library's, for I/O and protocol errors).
    pub message: String,
    /// The server's DETAIL, if any.
    pub detail: Option<String>,
}

impl ServerError {
    /// Extracts the SQLSTATE, message and detail of a tokio-postgres error.
    pub fn from_pg(e: &tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self {
                code: Some(db.code().code().to_string()),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
            },
            None => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    let text = s.to_string();
                    if !message.contains(&text) {
                        message.push_str(": ");
                        message.push_str(&text);
                    }
                    source = s.source();
                }
                Self {
                    code: None,
                    message,
                    detail: None,
                }
            }
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "[SQLSTATE {code}] ")?;
        }
        f.write_str(&self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        Ok(())
    }
}

/// An error of the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The configuration is invalid (found when it is built or parsed).
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// Connecting failed: a permanent error at once, or a transient one after every attempt.
    #[error("connecting to {target} failed after {attempts} attempt(s): {error}")]
    Connect {
        /// `user@host:port/dbname` (no password).
        target: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// What the server or the network said.
        error: ServerError,
        /// Whether the failure was classified as transient (retries were exhausted).
        transient: bool,
    },
    /// No connection came out of the pool in time.
    #[error("pool {pool}: no connection within {waited:?} ({size} open, {idle} idle){}", last_connect_error.as_ref().map(|e| format!("; last connection error: {e}")).unwrap_or_default())]
    PoolTimeout {
        /// The pool's node path.
        pool: String,
        /// How long the caller waited.
        waited: Duration,
        /// Open connections at the time.
        size: u32,
        /// Idle connections at the time.
        idle: u32,
        /// The last error seen while opening a connection, if any.
        last_connect_error: Option<ServerError>,
    },
    /// The limit on open sessions was reached and no session was closed in time.
    #[error("no session within {waited:?}: the limit of {limit} open sessions is reached")]
    SessionLimit {
        /// The configured limit.
        limit: usize,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A statement failed.
    #[error("session #{session}: {error}{}", statement.as_ref().map(|s| format!(" (statement: {s})")).unwrap_or_default())]
    Query {
        /// The session's id.
        session: u64,
        /// The statement, shortened.
        statement: Option<String>,
        /// What the server said.
        error: ServerError,
        /// The connection was lost (it is discarded, not returned to the pool).
        connection_lost: bool,
    },
    /// The session's node token (or its group's) was cancelled; its running statement was
    /// cancelled on the server.
    #[error("session #{session}: cancelled{}", statement.as_ref().map(|s| format!(" while running: {s}")).unwrap_or_default())]
    Cancelled {
        /// The session's id.
        session: u64,
        /// The statement that was running, if any.
        statement: Option<String>,
    },
    /// The database node is stopped (or was never started); no new sessions.
    #[error("database {db} is closed")]
    Closed {
        /// The node path.
        db: String,
    },
    /// A statement was used outside what the API allows (for example a transaction used after
    /// it was finished).
    #[error("session #{session}: {message}")]
    Usage {
        /// The session's id.
        session: u64,
        /// What was wrong.
        message: String,
    },
    /// A database error shared by several callers (every caller of a failed insert batch, every
    /// waiter of a failed cached load).
    #[error("{context}: {source}")]
    Shared {
        /// The batcher or cache, and what it was doing.
        context: String,
        /// The database error.
        source: std::sync::Arc<DbError>,
    },
    /// A cache or batcher around the database failed.
    #[error("{component}: {message}")]
    Component {
        /// The component's node path.
        component: String,
        /// Its error.
        message: String,
    },
}

impl DbError {
    /// The SQLSTATE code the server sent, if this error carries one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DbError::Query { error, .. } | DbError::Connect { error, .. } => error.code.as_deref(),
            DbError::Shared { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether a transaction that failed with this error is worth running again:
    /// 40001 `serialization_failure` or 40P01 `deadlock_detected`.
    pub fn is_retryable_transaction(&self) -> bool {
        matches!(self.code(), Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED))
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, DbError::Cancelled { .. })
    }

    /// Whether the connection was lost (closed by the server, terminated, reset).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            DbError::Query {
                connection_lost: true,
                ..
            }
        )
    }
}

/// Shortens a statement for messages and the tree.
pub(crate) fn short_sql(sql: &str) -> String {
    let mut out = String::new();
    push_short_sql(&mut out, sql);
    out
}

/// Appends `sql` on one line (whitespace runs become one space), cut at 120 bytes with `…`,
/// without allocating beyond `out`'s growth.
pub(crate) fn push_short_sql(out: &mut String, sql: &str) {
    const MAX: usize = 120;
    let start = out.len();
    for (i, word) in sql.split_whitespace().enumerate() {
        if i > 0 {
            if out.len() - start >= MAX {
                out.push('…');
                return;
            }
            out.push(' ');
        }
        let room = MAX.saturating_sub(out.len() - start);
        if word.len() > room {
            let mut end = room;
            while !word.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&word[..end]);
            out.push('…');
            return;
        }
        out.push_str(word);
    }
}
