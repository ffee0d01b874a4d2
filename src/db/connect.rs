//! [`connect`]: open one PostgreSQL connection, retrying transient failures.
//!
//! Transient: connection refused, reset or timed out, SQLSTATE class 08 (connection
//! exception), 57P01 `admin_shutdown`, 57P03 `cannot_connect_now` (starting up or in
//! recovery), 53300 `too_many_connections` (also a role's `CONNECTION LIMIT`). Everything else
//! is permanent and fails at once with the server's message: 28P01 bad password, 28000
//! invalid authorization (unknown role), 3D000 unknown database, class 42, ….
//!
//! ```no_run
//! use uno_runtime::db::{connect, DbConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), uno_runtime::db::DbError> {
//! let config = DbConfig::from_url("postgres://postgres@127.0.0.1:5432/test")?.connect_attempts(10);
//! let conn = connect(&config).await?;
//! let row = conn.client().query_one("SELECT 1::int4", &[]).await;
//! assert_eq!(row.map(|r| r.get::<_, i32>(0)).ok(), Some(1));
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use super::config::DbConfig;
use super::error::{DbError, ServerError};
use crate::resilience::{retry, RetryError, RetryPolicy};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Whether a connection attempt that failed this way may succeed if tried again.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P03" | "53300");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::Interrupted
            );
        }
        source = s.source();
    }
    // tokio-postgres' own connect timeout and a connection closed during startup.
    let text = e.to_string();
    text.contains("timeout") || text.contains("connection closed")
}

/// Where a transaction stands on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    Idle,
    Open,
}

/// One PostgreSQL connection: the tokio-postgres client, the token to cancel its running
/// statement on the server, and its prepared-statement cache.
pub struct PgConnection {
    pub(crate) id: u64,
    pub(crate) client: Client,
    pub(crate) cancel: CancelToken,
    pub(crate) statements: StatementCache,
    /// Set when the connection must not go back to the pool.
    pub(crate) broken: Arc<AtomicBool>,
    pub(crate) tx: TxState,
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("id", &self.id)
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl PgConnection {
    /// The tokio-postgres client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This connection's id (process-wide, for logs and the tree).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the connection is closed or marked to be discarded.
    pub fn is_broken(&self) -> bool {
        self.client.is_closed() || self.broken.load(Ordering::Relaxed) || self.tx != TxState::Idle
    }
}

/// Prepared statements of one connection, by SQL text, evicted oldest first.
pub(crate) struct StatementCache {
    capacity: usize,
    map: HashMap<String, Statement>,
    order: VecDeque<String>,
}

impl StatementCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The cached statement for `sql`, prepared on `client` if needed.
    pub(crate) async fn get(&mut self, client: &Client, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.map.get(sql) {
            return Ok(s.clone());
        }
        let statement = client.prepare(sql).await?;
        if self.capacity > 0 {
            if self.map.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.map.insert(sql.to_string(), statement.clone());
            self.order.push_back(sql.to_string());
        }
        Ok(statement)
    }
}

/// Opens one connection without retrying.
async fn connect_once(
    manager: &PostgresConnectionManager<NoTls>,
    config: &DbConfig,
) -> Result<PgConnection, tokio_postgres::Error> {
    let client = manager.connect().await?;
    let cancel = client.cancel_token();
    Ok(PgConnection {
        id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        client,
        cancel,
        statements: StatementCache::new(config.statement_cache),
        broken: Arc::new(AtomicBool::new(false)),
        tx: TxState::Idle,
    })
}

/// Opens a connection, retrying transient failures per `config`'s attempts and backoff.
///
/// # Cancel safety
/// Cancel safe: dropping the future abandons the attempt in flight (its socket is closed).
///
/// # Errors
/// [`DbError::Config`] for an invalid configuration; [`DbError::Connect`] with the target
/// (no password), the attempts made and the server's SQLSTATE and message: at once for a
/// permanent failure, after the last attempt for a transient one.
pub async fn connect(config: &DbConfig) -> Result<PgConnection, DbError> {
    config.validate()?;
    let manager = PostgresConnectionManager::new(config.pg_config(), NoTls);
    connect_with(&manager, config).await
}

pub(crate) async fn connect_with(
    manager: &PostgresConnectionManager<NoTls>,
    config: &DbConfig,
) -> Result<PgConnection, DbError> {
    let policy = RetryPolicy::<tokio_postgres::Error>::builder()
        .max_attempts(config.connect_attempts)
        .backoff(config.connect_backoff)
        .retry_if(is_transient)
        .on_retry(|e, attempt, delay| {
            tracing::warn!(attempt, ?delay, error = %ServerError::from_pg(e), "database connection attempt failed; retrying");
        })
        .build()
        .map_err(|e| DbError::Config(format!("connection retry policy: {e}")))?;
    retry(&policy, || connect_once(manager, config)).await.map_err(|e| {
        let attempts = e.attempts();
        let transient = !matches!(e, RetryError::NotRetryable { .. });
        match e.into_error() {
            Some(error) => DbError::Connect {
                target: config.target(),
                attempts,
                error: ServerError::from_pg(&error),
                transient,
            },
            None => DbError::Config("connection retry cancelled".into()),
        }
    })
}
