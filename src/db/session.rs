//! [`SessionFactory`] and [`Session`]: a checked-out connection with a tracking record.
//!
//! A session records its id, when and where it was opened (`#[track_caller]`), the statement
//! it is running and whether it is in a transaction; live sessions are leaves of their `Db`'s
//! `sessions` node in the tree, and [`SessionFactory::leak_report`] lists those open longer than the
//! configured threshold with where they were opened. At most `max_sessions` are open at once;
//! opening one more waits up to `session_timeout`, then fails naming the limit.
//!
//! Statements run with the session's cancellation token: when it fires (the `Db` node stops,
//! the session's group is cancelled, the application shuts down), the running statement is
//! cancelled on the server and the caller gets [`DbError::Cancelled`]. A session dropped while
//! a statement runs cancels it on the server and discards the connection; a session dropped
//! inside a transaction hands its connection to a tracked cleanup that rolls back before the
//! connection returns to the pool.
//!
//! ```no_run
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let db = Db::start(&manager, "db", DbConfig::from_url("postgres://postgres@127.0.0.1/test")?).await?;
//! let mut session = db.session().await?;
//! let n: i64 = session.query_one("SELECT count(*) FROM pg_class WHERE relkind = $1", &[&"r"]).await?.get(0);
//! assert!(n > 0);
//! println!("{}", manager.tree()); // root/db/sessions/session-1 while the session is open
//! drop(session);
//! manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};
use tokio_util::sync::CancellationToken;
use uno_actors::{AsyncManager, ChildContext, LeafNode, NodeKind, StatValue, StatsSource};

use super::config::DbConfig;
use super::connect::{PgConnection, StatementCache, TxState};
use super::error::{push_short_sql, short_sql, DbError, ServerError, QUERY_CANCELED};
use super::pool::{DbPool, PooledConn};

/// How long a cleanup waits for a rollback (or a cancelled statement) before it gives up and
/// discards the connection.
const CLEANUP_LIMIT: Duration = Duration::from_secs(5);

/// The tracking record of one open session.
pub(crate) struct SessionRecord {
    id: u64,
    opened_at: SystemTime,
    opened: Instant,
    opened_where: &'static Location<'static>,
    /// The last statement's text (shortened); the buffer is reused, so recording a statement
    /// does not allocate once it has grown.
    statement: Mutex<String>,
    /// Whether `statement` is running now (ending one is a store, not a lock).
    running: AtomicBool,
    in_transaction: AtomicBool,
}

impl SessionRecord {
    fn start_statement(&self, sql: &str) {
        let mut text = self.statement.lock().unwrap_or_else(|p| p.into_inner());
        text.clear();
        push_short_sql(&mut text, sql);
        self.running.store(true, Ordering::Release);
    }

    fn end_statement(&self) {
        self.running.store(false, Ordering::Release);
    }

    fn statement(&self) -> Option<String> {
        if !self.running.load(Ordering::Acquire) {
            return None;
        }
        Some(self.statement.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id,
            opened_at: self.opened_at,
            opened_where: format!("{}:{}", self.opened_where.file(), self.opened_where.line()),
            open_for: self.opened.elapsed(),
            statement: self.statement(),
            in_transaction: self.in_transaction.load(Ordering::Relaxed),
        }
    }
}

impl StatsSource for SessionRecord {
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        let info = self.info();
        out.insert("opened_where".into(), info.opened_where.into());
        out.insert("open_for_ms".into(), (info.open_for.as_millis() as u64).into());
        out.insert("in_transaction".into(), info.in_transaction.into());
        out.insert(
            "statement".into(),
            info.statement.map_or(StatValue::Null, StatValue::from),
        );
    }
}

/// A snapshot of one open session's tracking record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub id: u64,
    /// When it was opened.
    pub opened_at: SystemTime,
    /// Where it was opened (`file:line`).
    pub opened_where: String,
    /// How long it has been open.
    pub open_for: Duration,
    /// The statement running now (shortened), if any.
    pub statement: Option<String>,
    /// Whether it is inside a transaction.
    pub in_transaction: bool,
}

pub(crate) struct FactoryInner {
    pub(crate) pool: DbPool,
    pub(crate) config: Arc<DbConfig>,
    limit: Arc<Semaphore>,
    records: DashMap<u64, Arc<SessionRecord>>,
    next_id: AtomicU64,
    opened_total: AtomicU64,
    leaks_reported: AtomicU64,
    pub(crate) ctx: ChildContext,
    closed: AtomicBool,
}

/// Opens [`Session`]s on a `Db` node's pool and tracks them. Cheap to clone.
#[derive(Clone)]
pub struct SessionFactory {
    pub(crate) inner: Arc<FactoryInner>,
}

impl std::fmt::Debug for SessionFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFactory")
            .field("db", &self.inner.pool.path())
            .field("open", &self.inner.records.len())
            .field("limit", &self.inner.config.max_sessions)
            .finish()
    }
}

impl SessionFactory {
    pub(crate) fn new(pool: DbPool, config: Arc<DbConfig>, ctx: ChildContext) -> Self {
        Self {
            inner: Arc::new(FactoryInner {
                pool,
                limit: Arc::new(Semaphore::new(config.max_sessions)),
                config,
                records: DashMap::new(),
                next_id: AtomicU64::new(1),
                opened_total: AtomicU64::new(0),
                leaks_reported: AtomicU64::new(0),
                ctx,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a session: waits for a slot under the session limit, then for a pooled
    /// connection. Records the caller's location.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before it resolves opens nothing and holds nothing.
    ///
    /// # Errors
    /// [`DbError::SessionLimit`] naming the limit, [`DbError::PoolTimeout`] naming the pool,
    /// [`DbError::Closed`] once the node stopped, [`DbError::Cancelled`] when the node's token
    /// fires while waiting.
    #[track_caller]
    pub fn open(&self) -> impl Future<Output = Result<Session, DbError>> + Send + 'static {
        let location = Location::caller();
        let inner = self.inner.clone();
        let token = inner.ctx.cancel_token().child_token();
        async move { open_session(inner, location, token).await }
    }

    pub(crate) fn open_at(
        &self,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<Session, DbError>> + Send + 'static {
        let inner = self.inner.clone();
        let token = inner.ctx.cancel_token().child_token();
        async move { open_session(inner, location, token).await }
    }

    /// Like [`open`](Self::open), with the session's token a child of `parent` instead of the
    /// node's: cancelling `parent` cancels the session's statements. `parent` should itself
    /// descend from [`cancel_token`](Self::cancel_token) (a group's token does), so that
    /// stopping the node still cancels the session.
    ///
    /// # Cancel safety
    /// As [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[track_caller]
    pub fn open_with_token(
        &self,
        parent: &CancellationToken,
    ) -> impl Future<Output = Result<Session, DbError>> + Send + 'static {
        let location = Location::caller();
        let inner = self.inner.clone();
        let token = parent.child_token();
        async move { open_session(inner, location, token).await }
    }

    /// The sessions open now.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.inner.records.iter().map(|r| r.value().info()).collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Sessions open longer than `threshold`, oldest first, with where they were opened.
    pub fn leak_report(&self, threshold: Duration) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .inner
            .records
            .iter()
            .filter(|r| r.value().opened.elapsed() >= threshold)
            .map(|r| r.value().info())
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.open_for));
        v
    }

    /// Logs (at `warn`) every session open longer than the configured leak threshold and
    /// returns them.
    pub fn report_leaks(&self) -> Vec<SessionInfo> {
        let leaks = self.leak_report(self.inner.config.leak_threshold);
        for s in &leaks {
            tracing::warn!(
                db = %self.inner.pool.path(),
                session = s.id,
                opened_where = %s.opened_where,
                open_for = ?s.open_for,
                statement = ?s.statement,
                "database session open longer than the leak threshold"
            );
        }
        self.inner.leaks_reported.store(leaks.len() as u64, Ordering::Relaxed);
        leaks
    }

    /// The limit on open sessions.
    pub fn max_sessions(&self) -> usize {
        self.inner.config.max_sessions
    }

    /// The `Db` node's path.
    pub fn db_path(&self) -> &str {
        self.inner.pool.path()
    }

    /// The `Db` node's cancellation token.
    pub fn cancel_token(&self) -> &CancellationToken {
        self.inner.ctx.cancel_token()
    }

    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.limit.close();
    }
}

impl StatsSource for FactoryInner {
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        out.insert("sessions.open".into(), (self.records.len() as u64).into());
        out.insert("sessions.limit".into(), (self.config.max_sessions as u64).into());
        out.insert(
            "sessions.opened".into(),
            self.opened_total.load(Ordering::Relaxed).into(),
        );
        out.insert(
            "sessions.leaked".into(),
            self.leaks_reported.load(Ordering::Relaxed).into(),
        );
    }
}

async fn open_session(
    inner: Arc<FactoryInner>,
    location: &'static Location<'static>,
    token: CancellationToken,
) -> Result<Session, DbError> {
    let closed = || DbError::Closed {
        db: inner.pool.path().to_string(),
    };
    if inner.closed.load(Ordering::SeqCst) {
        return Err(closed());
    }
    let started = Instant::now();
    let limit = inner.config.session_timeout;
    let permit = tokio::select! {
        biased;
        () = token.cancelled() => return Err(DbError::Cancelled { session: 0, statement: None }),
        r = tokio::time::timeout(limit, inner.limit.clone().acquire_owned()) => match r {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(closed()),
            Err(_) => return Err(DbError::SessionLimit { limit: inner.config.max_sessions, waited: started.elapsed() }),
        },
    };
    let conn = tokio::select! {
        biased;
        () = token.cancelled() => return Err(DbError::Cancelled { session: 0, statement: None }),
        r = inner.pool.get() => r?,
    };
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let record = Arc::new(SessionRecord {
        id,
        opened_at: SystemTime::now(),
        opened: Instant::now(),
        opened_where: location,
        statement: Mutex::new(String::new()),
        running: AtomicBool::new(false),
        in_transaction: AtomicBool::new(false),
    });
    let leaf = inner.ctx.add_leaf(&format!("session-{id}"), NodeKind::Session);
    leaf.running();
    let weak = Arc::downgrade(&record);
    leaf.stats().attach(weak);
    inner.records.insert(id, record.clone());
    inner.opened_total.fetch_add(1, Ordering::Relaxed);
    Ok(Session {
        id,
        conn: Some(conn),
        token,
        record,
        manager: inner.ctx.manager(),
        factory: inner,
        _leaf: leaf,
        _permit: permit,
    })
}

/// One checked-out connection with its tracking record. Not `Clone`: one task uses it at a
/// time (`&mut self`). Dropping it returns the connection to the pool (after a rollback, if a
/// transaction was left open).
pub struct Session {
    pub(crate) id: u64,
    pub(crate) conn: Option<PooledConn>,
    pub(crate) token: CancellationToken,
    pub(crate) record: Arc<SessionRecord>,
    pub(crate) manager: AsyncManager,
    factory: Arc<FactoryInner>,
    _leaf: LeafNode,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("db", &self.factory.pool.path())
            .field("in_transaction", &self.record.in_transaction.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A statement in flight: if its future is dropped before it finished, the statement is
/// cancelled on the server by a tracked cleanup and the connection is discarded.
struct InFlight<'a> {
    conn: Conn<'a>,
    manager: &'a AsyncManager,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.conn.broken.store(true, Ordering::SeqCst);
        let cancel = self.conn.cancel.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.manager
                .spawn_cleanup("db: cancel abandoned statement", async move {
                    let _ = tokio::time::timeout(CLEANUP_LIMIT, cancel.cancel_query(NoTls)).await;
                });
        }
    }
}

impl Session {
    /// The session's id (unique within its factory).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The session's cancellation token (a child of its node's or its group's).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.token
    }

    /// This session's tracking record now.
    pub fn info(&self) -> SessionInfo {
        self.record.info()
    }

    /// Whether a transaction is open on this session.
    pub fn in_transaction(&self) -> bool {
        self.record.in_transaction.load(Ordering::Relaxed)
    }

    pub(crate) fn conn(&self) -> Result<&PgConnection, DbError> {
        self.conn.as_deref().ok_or_else(|| DbError::Usage {
            session: self.id,
            message: "the session's connection is gone".into(),
        })
    }

    fn conn_mut(&mut self) -> Result<&mut PgConnection, DbError> {
        let id = self.id;
        self.conn.as_deref_mut().ok_or_else(|| DbError::Usage {
            session: id,
            message: "the session's connection is gone".into(),
        })
    }

    /// Before a statement outside a transaction guard: roll back a transaction whose guard was
    /// dropped (panic, cancellation, early return).
    async fn ready(&mut self) -> Result<(), DbError> {
        if self.conn()?.tx == TxState::Open {
            self.finish_tx("ROLLBACK").await?;
        }
        Ok(())
    }

    /// Runs `COMMIT` or `ROLLBACK` and marks the connection out of its transaction. A failed
    /// finish leaves the connection marked broken.
    pub(crate) async fn finish_tx(&mut self, sql: &'static str) -> Result<(), DbError> {
        let result = self.simple(sql, false).await;
        let conn = self.conn_mut()?;
        match &result {
            Ok(()) => conn.tx = TxState::Idle,
            Err(_) => {
                // The server ends the transaction when the connection closes.
                conn.broken.store(true, Ordering::SeqCst);
                conn.tx = TxState::Idle;
            }
        }
        self.record.in_transaction.store(false, Ordering::Relaxed);
        result
    }

    /// Runs a simple-protocol statement (no parameters), cancellable unless `uncancellable`.
    /// Splits the session into what one statement through the statement cache needs, so the
    /// statement's future can borrow the cache while `run` tracks it.
    fn statement_parts(&mut self) -> Result<StatementParts<'_>, DbError> {
        let Session {
            id,
            conn,
            token,
            record,
            manager,
            ..
        } = self;
        let conn = conn.as_deref_mut().ok_or_else(|| DbError::Usage {
            session: *id,
            message: "the session's connection is gone".into(),
        })?;
        let PgConnection {
            client,
            statements,
            cancel,
            broken,
            ..
        } = conn;
        Ok(StatementParts {
            id: *id,
            client,
            statements,
            conn: Conn { client, cancel, broken },
            token,
            record,
            manager,
        })
    }

    pub(crate) async fn simple(&mut self, sql: &str, cancellable: bool) -> Result<(), DbError> {
        let token = cancellable.then_some(&self.token);
        let conn = self.conn.as_deref().ok_or_else(|| DbError::Usage {
            session: self.id,
            message: "the session's connection is gone".into(),
        })?;
        let fut = conn.client.batch_execute(sql);
        run(self.id, &self.record, &self.manager, Conn::of(conn), token, sql, fut).await
    }

    pub(crate) async fn begin_raw(
        &mut self,
        begin_sql: &str,
        statement_timeout: Option<Duration>,
    ) -> Result<(), DbError> {
        self.ready().await?;
        self.simple(begin_sql, true).await?;
        self.conn_mut()?.tx = TxState::Open;
        self.record.in_transaction.store(true, Ordering::Relaxed);
        if let Some(t) = statement_timeout {
            self.simple(&format!("SET LOCAL statement_timeout = {}", t.as_millis()), true)
                .await?;
        }
        Ok(())
    }

    /// Runs a statement and returns its rows. The statement is prepared once per connection and
    /// cached.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future while the statement runs cancels it on the server
    /// and discards the connection (a transaction open on it is aborted by the server); the
    /// session is unusable afterwards.
    ///
    /// # Errors
    /// [`DbError::Query`] with the session id, the statement, the SQLSTATE and the server's
    /// message; [`DbError::Cancelled`] when the session's token fires.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        self.ready().await?;
        self.in_tx_query(sql, params).await
    }

    pub(crate) async fn in_tx_query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        let StatementParts {
            id,
            client,
            statements,
            conn: c,
            token,
            record,
            manager,
        } = self.statement_parts()?;
        let fut = async {
            let statement = statements.get(client, sql).await?;
            client.query(&statement, params).await
        };
        run(id, record, manager, c, Some(token), sql, fut).await
    }

    /// Runs a statement that returns exactly one row.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query); also [`DbError::Query`] when there is not exactly one row.
    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        let rows = self.query(sql, params).await?;
        one_row(self.id, sql, rows)
    }

    /// Runs a statement that returns at most one row.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query); also [`DbError::Query`] when there is more than one row.
    pub async fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, DbError> {
        let rows = self.query(sql, params).await?;
        opt_row(self.id, sql, rows)
    }

    /// Runs a statement and returns the number of rows it affected.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        self.ready().await?;
        self.in_tx_execute(sql, params).await
    }

    pub(crate) async fn in_tx_execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let StatementParts {
            id,
            client,
            statements,
            conn: c,
            token,
            record,
            manager,
        } = self.statement_parts()?;
        let fut = async {
            let statement = statements.get(client, sql).await?;
            client.execute(&statement, params).await
        };
        run(id, record, manager, c, Some(token), sql, fut).await
    }

    /// Runs several statements separated by `;` without parameters (simple protocol).
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.ready().await?;
        self.simple(sql, true).await
    }

    /// Prepares a statement, or returns it from this connection's statement cache.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, DbError> {
        let StatementParts {
            id,
            client,
            statements,
            conn: c,
            token,
            record,
            manager,
        } = self.statement_parts()?;
        let fut = statements.get(client, sql);
        run(id, record, manager, c, Some(token), sql, fut).await
    }

    /// Runs a prepared statement (from [`prepare`](Self::prepare)) and returns its rows.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn query_prepared(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        self.ready().await?;
        let conn = self.conn()?;
        let fut = conn.client.query(statement, params);
        run(
            self.id,
            &self.record,
            &self.manager,
            Conn::of(conn),
            Some(&self.token),
            "(prepared statement)",
            fut,
        )
        .await
    }

    /// The session's connection for what this API does not cover (COPY, notifications, …).
    /// Statements run on it are not tracked, cancelled or cached by the session.
    ///
    /// # Errors
    /// [`DbError::Usage`] if the connection is gone.
    pub fn raw_client(&self) -> Result<&tokio_postgres::Client, DbError> {
        Ok(&self.conn()?.client)
    }
}

pub(crate) fn one_row(session: u64, sql: &str, mut rows: Vec<Row>) -> Result<Row, DbError> {
    if rows.len() == 1 {
        if let Some(row) = rows.pop() {
            return Ok(row);
        }
    }
    Err(DbError::Query {
        session,
        statement: Some(short_sql(sql)),
        error: ServerError {
            code: None,
            message: format!("expected exactly one row, got {}", rows.len()),
            detail: None,
        },
        connection_lost: false,
    })
}

pub(crate) fn opt_row(session: u64, sql: &str, mut rows: Vec<Row>) -> Result<Option<Row>, DbError> {
    if rows.len() > 1 {
        return Err(DbError::Query {
            session,
            statement: Some(short_sql(sql)),
            error: ServerError {
                code: None,
                message: format!("expected at most one row, got {}", rows.len()),
                detail: None,
            },
            connection_lost: false,
        });
    }
    Ok(rows.pop())
}

/// The parts of a connection a running statement needs besides the future itself.
struct StatementParts<'a> {
    id: u64,
    client: &'a tokio_postgres::Client,
    statements: &'a mut StatementCache,
    conn: Conn<'a>,
    token: &'a CancellationToken,
    record: &'a SessionRecord,
    manager: &'a AsyncManager,
}

#[derive(Clone, Copy)]
struct Conn<'a> {
    client: &'a tokio_postgres::Client,
    cancel: &'a tokio_postgres::CancelToken,
    broken: &'a AtomicBool,
}

impl<'a> Conn<'a> {
    fn of(c: &'a PgConnection) -> Self {
        Self {
            client: &c.client,
            cancel: &c.cancel,
            broken: &c.broken,
        }
    }
}

/// Runs one statement's future: tracked in the record, cancelled on the server when `token`
/// fires, cancelled on the server (and the connection discarded) if dropped while in flight.
async fn run<T>(
    id: u64,
    record: &SessionRecord,
    manager: &AsyncManager,
    conn: Conn<'_>,
    token: Option<&CancellationToken>,
    sql: &str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    let cancelled = || DbError::Cancelled {
        session: id,
        statement: Some(short_sql(sql)),
    };
    if token.is_some_and(CancellationToken::is_cancelled) {
        return Err(cancelled());
    }
    record.start_statement(sql);
    let mut guard = InFlight {
        conn,
        manager,
        armed: true,
    };
    let mut fut = std::pin::pin!(fut);
    let outcome = match token {
        Some(token) => tokio::select! {
            biased;
            r = &mut fut => Ok(r),
            () = token.cancelled() => Err(()),
        },
        None => Ok(fut.as_mut().await),
    };
    let result = match outcome {
        Ok(r) => r.map_err(|e| query_error(id, sql, conn, &e)),
        Err(()) => {
            // Cancel on the server, then wait for the statement to end so the connection stays
            // in step. A cancel that arrived after the statement ended could hit the next one:
            // unless the server confirms with 57014, the connection is discarded.
            let _ = tokio::time::timeout(CLEANUP_LIMIT, conn.cancel.cancel_query(NoTls)).await;
            match tokio::time::timeout(CLEANUP_LIMIT, &mut fut).await {
                Ok(Err(e)) if e.code().map(|c| c.code()) == Some(QUERY_CANCELED) => {}
                _ => conn.broken.store(true, Ordering::SeqCst),
            }
            Err(cancelled())
        }
    };
    guard.armed = false;
    drop(guard);
    record.end_statement();
    result
}

fn query_error(id: u64, sql: &str, conn: Conn<'_>, e: &tokio_postgres::Error) -> DbError {
    let lost = conn.client.is_closed()
        || e.is_closed()
        || e.as_db_error().is_none() && e.code().is_none() && {
            let text = e.to_string();
            text.contains("communicating") || text.contains("closed")
        };
    if lost {
        conn.broken.store(true, Ordering::SeqCst);
    }
    DbError::Query {
        session: id,
        statement: Some(short_sql(sql)),
        error: ServerError::from_pg(e),
        connection_lost: lost,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.factory.records.remove(&self.id);
        let Some(conn) = self.conn.take() else { return };
        if conn.tx == TxState::Idle || conn.broken.load(Ordering::SeqCst) || conn.client.is_closed() {
            return; // back to the pool, or discarded by `has_broken`
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to roll back on: discard the connection; closing it ends the
            // transaction on the server.
            conn.broken.store(true, Ordering::SeqCst);
            return;
        }
        let id = self.id;
        let mut conn = conn;
        self.manager
            .spawn_cleanup("db: roll back an abandoned transaction", async move {
                match tokio::time::timeout(CLEANUP_LIMIT, conn.client.batch_execute("ROLLBACK")).await {
                    Ok(Ok(())) => {
                        conn.tx = TxState::Idle;
                        tracing::debug!(session = id, "rolled back a transaction left open by a dropped session");
                    }
                    _ => {
                        conn.broken.store(true, Ordering::SeqCst);
                        tracing::warn!(
                            session = id,
                            "rollback of an abandoned transaction failed; connection discarded"
                        );
                    }
                }
                drop(conn);
            });
    }
}
