//! The connection pool behind a [`Db`](super::Db), kept behind one small type so that it can
//! move onto the runtime's `AsyncResourcePool` without touching sessions.
//!
//! bb8 with our own [`ManageConnection`]: a connection carries its statement cache, its cancel
//! token and a discard flag, which `bb8_postgres::PostgresConnectionManager` (a bare `Client`)
//! cannot. Checkouts are not tested (`test_on_check_out = false`): a connection is checked when
//! it comes back instead ([`ManageConnection::has_broken`]), and one that is closed, marked
//! broken or still inside a transaction is discarded and replaced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bb8::{ErrorSink, ManageConnection, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;
use uno_actors::{StatValue, StatsSource};

use super::config::DbConfig;
use super::connect::{connect_with, PgConnection};
use super::error::{DbError, ServerError};

type LastError = Arc<Mutex<Option<ServerError>>>;

/// bb8's view of how to open and check connections.
pub(crate) struct PgManager {
    inner: PostgresConnectionManager<NoTls>,
    config: Arc<DbConfig>,
}

impl ManageConnection for PgManager {
    type Connection = PgConnection;
    type Error = DbError;

    async fn connect(&self) -> Result<PgConnection, DbError> {
        connect_with(&self.inner, &self.config).await
    }

    async fn is_valid(&self, conn: &mut PgConnection) -> Result<(), DbError> {
        conn.client
            .simple_query("")
            .await
            .map(|_| ())
            .map_err(|e| DbError::Query {
                session: 0,
                statement: None,
                error: ServerError::from_pg(&e),
                connection_lost: true,
            })
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_broken()
    }
}

#[derive(Clone)]
struct Sink(LastError);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl ErrorSink<DbError> for Sink {
    fn sink(&self, error: DbError) {
        tracing::warn!(%error, "database pool could not open a connection");
        if let DbError::Connect { error, .. } = error {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<DbError>> {
        Box::new(self.clone())
    }
}

/// A checked-out connection.
pub(crate) type PooledConn = PooledConnection<'static, PgManager>;

/// The pool of one `Db` node.
#[derive(Clone)]
pub(crate) struct DbPool {
    pool: bb8::Pool<PgManager>,
    path: Arc<str>,
    last_error: LastError,
}

impl DbPool {
    /// Opens the first connection (retrying transient failures, failing at once on permanent
    /// ones) and builds the pool around it; `min_idle` fills in the background.
    pub(crate) async fn start(path: &str, config: Arc<DbConfig>) -> Result<Self, DbError> {
        let inner = PostgresConnectionManager::new(config.pg_config(), NoTls);
        let first = connect_with(&inner, &config).await?;
        let last_error: LastError = Arc::default();
        let pool = bb8::Pool::builder()
            .max_size(config.max_connections)
            .min_idle(config.min_idle)
            .test_on_check_out(false)
            .retry_connection(false)
            .connection_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .error_sink(Box::new(Sink(last_error.clone())))
            .build_unchecked(PgManager {
                inner,
                config: config.clone(),
            });
        // Only fails when the pool is full, which a new pool is not; a failure just drops it.
        let _ = pool.add(first);
        Ok(Self {
            pool,
            path: path.into(),
            last_error,
        })
    }

    /// A connection, waiting at most the acquire timeout.
    pub(crate) async fn get(&self) -> Result<PooledConn, DbError> {
        let started = tokio::time::Instant::now();
        match self.pool.get_owned().await {
            Ok(conn) => Ok(conn),
            Err(RunError::User(e)) => Err(e),
            Err(RunError::TimedOut) => {
                let state = self.pool.state();
                Err(DbError::PoolTimeout {
                    pool: self.path.to_string(),
                    waited: started.elapsed(),
                    size: state.connections,
                    idle: state.idle_connections,
                    last_connect_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                })
            }
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

impl StatsSource for DbPool {
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        let state = self.pool.state();
        let s = &state.statistics;
        out.insert("pool.connections".into(), state.connections.into());
        out.insert("pool.idle".into(), state.idle_connections.into());
        out.insert("pool.max".into(), self.pool.config().max_size.into());
        out.insert("pool.gets".into(), s.get_started.into());
        out.insert("pool.gets_waited".into(), s.get_waited.into());
        out.insert("pool.gets_timed_out".into(), s.get_timed_out.into());
        out.insert("pool.created".into(), s.connections_created.into());
        out.insert("pool.closed_broken".into(), s.connections_closed_broken.into());
    }
}
