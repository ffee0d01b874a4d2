//! The connection pool of a [`Db`](super::Db): the runtime's [`AsyncResourcePool`] node
//! (`root/db/pool` in the tree, with its stats) over a bb8 manager of our own.
//!
//! Our [`ManageConnection`] hands out [`PgConnection`]s: a connection carries its statement
//! cache, its cancel token and a discard flag, which `bb8_postgres::PostgresConnectionManager`
//! (a bare `Client`) cannot. Checkouts are not tested (`test_on_check_out = false`, the
//! `AsyncResourcePool` default): a connection is checked when it comes back instead
//! ([`ManageConnection::has_broken`]), and one that is closed, marked broken or still inside a
//! transaction is discarded and replaced. Idle connections are validated in the background by
//! the pool node.

use std::sync::{Arc, Mutex};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;
use uno_actors::WorkerSpec;

use super::config::DbConfig;
use super::connect::{connect_with, PgConnection};
use super::error::{DbError, ServerError};
use crate::resource::{AsyncResourcePool, PoolActor, PoolConfig, PoolGuard, ResourceError};

type LastError = Arc<Mutex<Option<ServerError>>>;
type Preconnected = Arc<Mutex<Option<PgConnection>>>;

/// bb8's view of how to open and check connections.
pub(crate) struct PgManager {
    inner: PostgresConnectionManager<NoTls>,
    config: Arc<DbConfig>,
    last_error: LastError,
    preconnected: Preconnected,
}

impl ManageConnection for PgManager {
    type Connection = PgConnection;
    type Error = DbError;

    async fn connect(&self) -> Result<PgConnection, DbError> {
        let first = self.preconnected.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = first {
            if !conn.is_broken() {
                return Ok(conn);
            }
        }
        connect_with(&self.inner, &self.config).await.inspect_err(|e| {
            if let DbError::Connect { error, .. } = e {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
            }
        })
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

/// A checked-out connection.
pub(crate) type PooledConn = PoolGuard<PgManager>;

/// The spec of a `Db`'s pool node.
pub(crate) type PoolSpec = WorkerSpec<PoolActor<PgManager>>;

/// The pool of one `Db` subtree: the handle of its `AsyncResourcePool` node.
#[derive(Clone)]
pub(crate) struct DbPool {
    pool: AsyncResourcePool<PgManager>,
    db_path: Arc<str>,
    last_error: LastError,
    preconnected: Preconnected,
}

impl DbPool {
    /// The pool node's spec (named `pool`) and its handle. Nothing connects yet.
    pub(crate) fn spec(db_path: &str, config: Arc<DbConfig>) -> Result<(PoolSpec, Self), DbError> {
        let pool_config = PoolConfig {
            max_size: config.max_connections,
            min_idle: config.min_idle,
            max_lifetime: config.max_lifetime,
            idle_timeout: config.idle_timeout,
            acquire_timeout: config.acquire_timeout,
            test_on_check_out: false,
            leak_threshold: Some(config.leak_threshold),
            ..PoolConfig::default()
        };
        let last_error: LastError = Arc::default();
        let preconnected: Preconnected = Arc::default();
        let (errors, first) = (last_error.clone(), preconnected.clone());
        let (spec, pool) = AsyncResourcePool::spec(
            "pool",
            move |_| PgManager {
                inner: PostgresConnectionManager::new(config.pg_config(), NoTls),
                config: config.clone(),
                last_error: errors.clone(),
                preconnected: first.clone(),
            },
            pool_config,
        )
        .map_err(|e| DbError::Config(e.to_string()))?;
        Ok((
            spec,
            Self {
                pool,
                db_path: db_path.into(),
                last_error,
                preconnected,
            },
        ))
    }

    /// Opens the first connection (retrying transient failures, failing at once on permanent
    /// ones, with the server's message) and keeps it for the pool's first connect.
    pub(crate) async fn preconnect(&self, config: &DbConfig) -> Result<(), DbError> {
        let inner = PostgresConnectionManager::new(config.pg_config(), NoTls);
        let conn = connect_with(&inner, config).await?;
        *self.preconnected.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(())
    }

    /// A connection, waiting at most the acquire timeout.
    #[track_caller]
    pub(crate) fn get(&self) -> impl std::future::Future<Output = Result<PooledConn, DbError>> + Send + '_ {
        let started = tokio::time::Instant::now();
        let acquire = self.pool.acquire();
        async move {
            acquire.await.map_err(|e| match e {
                ResourceError::AcquireTimeout { pool, size, idle, .. } => DbError::PoolTimeout {
                    pool,
                    waited: started.elapsed(),
                    size,
                    idle,
                    last_connect_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                },
                ResourceError::PoolClosed { .. } => DbError::Closed {
                    db: self.db_path.to_string(),
                },
                other => DbError::Component {
                    component: self.pool.path(),
                    message: other.to_string(),
                },
            })
        }
    }

    /// The `Db` subtree's path, like `root/db`.
    pub(crate) fn path(&self) -> &str {
        &self.db_path
    }
}
