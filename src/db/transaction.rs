//! Transactions: [`Session::transaction`] (commit on `Ok`, roll back on `Err`),
//! [`Session::begin`] and its [`Transaction`] guard, and [`Session::retry_transaction`].
//!
//! A [`Transaction`] that is neither committed nor rolled back (dropped, a panic unwinding
//! through it, its task cancelled) is rolled back before its connection is used again: by the
//! session's next statement, or, when the session is dropped too, by a cleanup the manager
//! tracks (`AsyncManager::spawn_cleanup`) before the connection returns to the pool. If the
//! rollback cannot run, the connection is discarded, so the pool never hands out a connection
//! inside an open or aborted transaction.
//!
//! ```no_run
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig, DbError, IsolationLevel, TxOptions};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let db = Db::start(&manager, "db", DbConfig::from_url("postgres://postgres@127.0.0.1/test")?).await?;
//! let mut session = db.session().await?;
//! session.batch_execute("CREATE TEMP TABLE accounts (id int PRIMARY KEY, balance int)").await?;
//!
//! // Commits on Ok, rolls back on Err.
//! let moved: u64 = session
//!     .transaction(|tx| Box::pin(async move {
//!         tx.execute("INSERT INTO accounts VALUES (1, 100), (2, 0)", &[]).await?;
//!         tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await
//!     }))
//!     .await?;
//! assert_eq!(moved, 1);
//!
//! // A guard: rolled back unless committed.
//! let mut tx = session.begin_with(TxOptions::new().isolation(IsolationLevel::Serializable)).await?;
//! tx.execute("UPDATE accounts SET balance = 0", &[]).await?;
//! drop(tx); // rolled back
//! let balance: i32 = session.query_one("SELECT balance FROM accounts WHERE id = 1", &[]).await?.get(0);
//! assert_eq!(balance, 90);
//! # manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::DbError;
use super::session::{one_row, opt_row, Session};
use crate::resilience::{retry, RetryError, RetryPolicy};

/// A transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// `READ COMMITTED` (PostgreSQL's default).
    #[default]
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        })
    }
}

/// How a transaction starts: isolation level, read-only, a statement timeout inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOptions {
    isolation: IsolationLevel,
    read_only: bool,
    statement_timeout: Option<Duration>,
}

impl TxOptions {
    /// Read committed, read-write, the connection's statement timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The isolation level.
    pub fn isolation(mut self, level: IsolationLevel) -> Self {
        self.isolation = level;
        self
    }

    /// Read-only (`true`) or read-write.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// `SET LOCAL statement_timeout` for the transaction's statements.
    pub fn statement_timeout(mut self, limit: Duration) -> Self {
        self.statement_timeout = Some(limit);
        self
    }

    fn begin_sql(&self) -> String {
        format!(
            "BEGIN ISOLATION LEVEL {}, {}",
            self.isolation,
            if self.read_only { "READ ONLY" } else { "READ WRITE" }
        )
    }
}

/// An open transaction on a [`Session`]. Rolled back unless [`commit`](Self::commit)ted.
#[must_use = "a transaction is rolled back unless committed"]
pub struct Transaction<'s> {
    session: &'s mut Session,
    finished: bool,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("session", &self.session.id())
            .field("finished", &self.finished)
            .finish()
    }
}

impl Transaction<'_> {
    /// The session's id.
    pub fn session_id(&self) -> u64 {
        self.session.id()
    }

    /// Runs a statement in the transaction and returns its rows.
    ///
    /// # Cancel safety
    /// As [`Session::query`]: dropping the future cancels the statement on the server and
    /// discards the connection, which ends the transaction.
    ///
    /// # Errors
    /// As [`Session::query`]. After an error the server has aborted the transaction: roll back.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        self.session.in_tx_query(sql, params).await
    }

    /// Runs a statement that returns exactly one row.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`Session::query_one`].
    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        let rows = self.session.in_tx_query(sql, params).await?;
        one_row(self.session.id(), sql, rows)
    }

    /// Runs a statement that returns at most one row.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`Session::query_opt`].
    pub async fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, DbError> {
        let rows = self.session.in_tx_query(sql, params).await?;
        opt_row(self.session.id(), sql, rows)
    }

    /// Runs a statement and returns the rows it affected.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`Session::execute`].
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        self.session.in_tx_execute(sql, params).await
    }

    /// Runs statements separated by `;` without parameters.
    ///
    /// # Cancel safety
    /// As [`query`](Self::query).
    ///
    /// # Errors
    /// As [`Session::batch_execute`].
    pub async fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.session.simple(sql, true).await
    }

    /// Commits.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future after `COMMIT` was sent leaves its outcome
    /// unknown; the connection is discarded.
    ///
    /// # Errors
    /// [`DbError::Query`] when the commit fails (for example 40001 under `SERIALIZABLE`); the
    /// transaction is over either way.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.finished = true;
        self.session.finish_tx("COMMIT").await
    }

    /// Rolls back.
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense of [`commit`](Self::commit); the transaction is rolled
    /// back either way (by the server when the connection is discarded).
    ///
    /// # Errors
    /// [`DbError::Query`] if `ROLLBACK` fails (the connection is then discarded).
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.finished = true;
        self.session.finish_tx("ROLLBACK").await
    }
}

// No Drop work: the connection stays marked as inside a transaction, so the session's next
// statement, or the session's drop, rolls it back (see the module docs).

impl Session {
    /// Starts a transaction with the default options.
    ///
    /// # Cancel safety
    /// As [`Session::query`].
    ///
    /// # Errors
    /// As [`Session::query`].
    pub async fn begin(&mut self) -> Result<Transaction<'_>, DbError> {
        self.begin_with(TxOptions::new()).await
    }

    /// Starts a transaction with `options`.
    ///
    /// # Cancel safety
    /// As [`Session::query`].
    ///
    /// # Errors
    /// As [`Session::query`].
    pub async fn begin_with(&mut self, options: TxOptions) -> Result<Transaction<'_>, DbError> {
        self.begin_raw(&options.begin_sql(), options.statement_timeout).await?;
        Ok(Transaction {
            session: self,
            finished: false,
        })
    }

    /// Runs `f` in a transaction: commits when it returns `Ok`, rolls back when it returns
    /// `Err` (and when it panics or the future is dropped, see the module docs).
    ///
    /// # Cancel safety
    /// Dropping the future rolls the transaction back before the connection is reused.
    ///
    /// # Errors
    /// `f`'s error, or a [`DbError`] from `BEGIN` or `COMMIT`.
    pub async fn transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: for<'t, 's> FnOnce(&'t mut Transaction<'s>) -> BoxFuture<'t, Result<T, E>>,
        E: From<DbError>,
    {
        self.transaction_with(TxOptions::new(), f).await
    }

    /// [`transaction`](Self::transaction) with `options`.
    ///
    /// # Cancel safety
    /// As [`transaction`](Self::transaction).
    ///
    /// # Errors
    /// As [`transaction`](Self::transaction).
    pub async fn transaction_with<T, E, F>(&mut self, options: TxOptions, f: F) -> Result<T, E>
    where
        F: for<'t, 's> FnOnce(&'t mut Transaction<'s>) -> BoxFuture<'t, Result<T, E>>,
        E: From<DbError>,
    {
        let mut tx = self.begin_with(options).await?;
        match f(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback after a failed transaction failed; connection discarded");
                }
                Err(e)
            }
        }
    }

    /// Runs `f` in a transaction (as [`transaction`](Self::transaction)) and runs it again, per
    /// `policy`, when it fails with 40001 `serialization_failure` or 40P01 `deadlock_detected`.
    /// Other errors end it at once. Each attempt is a fresh transaction: `f` must not keep
    /// effects outside the database from a failed attempt.
    ///
    /// ```no_run
    /// use uno_runtime::db::{DbError, Session};
    /// use uno_runtime::resilience::RetryPolicy;
    ///
    /// # async fn f(session: &mut Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::<DbError>::builder().max_attempts(5).build()?;
    /// let n: i64 = session
    ///     .retry_transaction(&policy, |tx| Box::pin(async move {
    ///         tx.execute("UPDATE counters SET n = n + 1 WHERE id = 1", &[]).await?;
    ///         Ok(tx.query_one("SELECT n FROM counters WHERE id = 1", &[]).await?.get(0))
    ///     }))
    ///     .await?;
    /// # let _ = n; Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// As [`transaction`](Self::transaction).
    ///
    /// # Errors
    /// The last attempt's [`DbError`]; when the policy gives up on a retryable error, that
    /// error (its attempts are logged).
    pub async fn retry_transaction<T, F>(&mut self, policy: &RetryPolicy<DbError>, f: F) -> Result<T, DbError>
    where
        F: for<'t, 's> FnMut(&'t mut Transaction<'s>) -> BoxFuture<'t, Result<T, DbError>>,
    {
        self.retry_transaction_with(policy, TxOptions::new(), f).await
    }

    /// [`retry_transaction`](Self::retry_transaction) with `options` (for example
    /// [`IsolationLevel::Serializable`]) for every attempt.
    ///
    /// # Cancel safety
    /// As [`transaction`](Self::transaction).
    ///
    /// # Errors
    /// As [`retry_transaction`](Self::retry_transaction).
    pub async fn retry_transaction_with<T, F>(
        &mut self,
        policy: &RetryPolicy<DbError>,
        options: TxOptions,
        f: F,
    ) -> Result<T, DbError>
    where
        F: for<'t, 's> FnMut(&'t mut Transaction<'s>) -> BoxFuture<'t, Result<T, DbError>>,
    {
        // Attempts run one after another; the mutex only lends the session and the closure to
        // each attempt's future.
        let session = self.id;
        let state = Mutex::new((self, f));
        let state = &state;
        let outcome = retry(policy, || async move {
            let mut guard = state.lock().await;
            let (session, f) = &mut *guard;
            match session.transaction_with(options, |tx| f(tx)).await {
                Ok(v) => Ok(Ok(v)),
                Err(e) if e.is_retryable_transaction() => Err(e),
                Err(e) => Ok(Err(e)),
            }
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(RetryError::Cancelled { last_error, .. }) => Err(last_error.unwrap_or(DbError::Cancelled {
                session,
                statement: None,
            })),
            Err(e) => {
                let attempts = e.attempts();
                match e.into_error() {
                    Some(error) => {
                        tracing::warn!(attempts, %error, "transaction retries exhausted");
                        Err(error)
                    }
                    None => Err(DbError::Cancelled {
                        session,
                        statement: None,
                    }),
                }
            }
        }
    }
}
