//! [`SessionOperationGroup`]: many operations at once, each in its own session.
//!
//! [`run`](SessionOperationGroup::run) runs operations concurrently (at most `limit` at a
//! time), each in its own session whose token is a child of the group's. The first failure
//! cancels the group: running statements of the others are cancelled on the server, operations
//! not yet started do not start. Results come back in input order. The group waits for every
//! operation to end before it returns, so no session outlives it.
//! [`in_transaction`](SessionOperationGroup::in_transaction) runs operations in order in one
//! transaction: all or nothing.
//!
//! ```no_run
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig, DbOp};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let db = Db::start(&manager, "db", DbConfig::from_url("postgres://postgres@127.0.0.1/test")?).await?;
//! let ops: Vec<DbOp<i32>> = (1..=4)
//!     .map(|i| -> DbOp<i32> {
//!         Box::new(move |s| Box::pin(async move { Ok(s.query_one("SELECT $1::int4 * 10", &[&i]).await?.get(0)) }))
//!     })
//!     .collect();
//! let results = db.group()?.limit(2).run(ops).await?;
//! assert_eq!(results, vec![10, 20, 30, 40]);
//! # manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::error::DbError;
use super::session::{Session, SessionFactory};
use super::transaction::Transaction;

/// An operation of a group: gets its own session.
pub type DbOp<T> = Box<dyn for<'s> FnOnce(&'s mut Session) -> BoxFuture<'s, Result<T, DbError>> + Send>;

/// An operation of [`SessionOperationGroup::in_transaction`]: gets the shared transaction.
pub type TxOp<T> = Box<dyn for<'t, 's> FnOnce(&'t mut Transaction<'s>) -> BoxFuture<'t, Result<T, DbError>> + Send>;

/// Runs operations concurrently, each in its own session, fail-fast.
#[derive(Debug)]
pub struct SessionOperationGroup {
    factory: SessionFactory,
    token: CancellationToken,
    limit: usize,
}

impl SessionOperationGroup {
    /// A group on `factory`'s node, its token a child of the node's; concurrency limited to the
    /// factory's session limit.
    pub fn new(factory: &SessionFactory) -> Self {
        Self {
            token: factory.cancel_token().child_token(),
            limit: factory.max_sessions(),
            factory: factory.clone(),
        }
    }

    /// At most `limit` operations at a time (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The group's token: cancelling it cancels every operation (on the server too).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.token
    }

    /// Runs `ops` concurrently and returns their results in input order; the first error
    /// cancels the rest and is returned once every operation has ended.
    ///
    /// # Cancel safety
    /// Dropping the future drops the operations: their statements are cancelled on the server,
    /// their sessions' connections discarded or rolled back, as for a dropped [`Session`].
    ///
    /// # Errors
    /// The first operation error (not the `Cancelled` errors it caused in the others), or an
    /// error opening a session.
    pub async fn run<T: Send>(&self, ops: Vec<DbOp<T>>) -> Result<Vec<T>, DbError> {
        let n = ops.len();
        let token = &self.token;
        let factory = &self.factory;
        let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let mut first_error: Option<DbError> = None;
        let mut done = stream::iter(ops.into_iter().enumerate())
            .map(|(i, op)| async move {
                if token.is_cancelled() {
                    return (
                        i,
                        Err(DbError::Cancelled {
                            session: 0,
                            statement: None,
                        }),
                    );
                }
                let mut session = match factory.open_with_token(token).await {
                    Ok(s) => s,
                    Err(e) => return (i, Err(e)),
                };
                let result = op(&mut session).await;
                drop(session);
                (i, result)
            })
            .buffer_unordered(self.limit);
        while let Some((i, result)) = done.next().await {
            match result {
                Ok(v) => results[i] = Some(v),
                Err(e) => {
                    // The token is cancelled only after the first error, so the `Cancelled`
                    // errors it causes always come later and are not kept.
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                    token.cancel();
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let out: Option<Vec<T>> = results.into_iter().collect();
        out.ok_or(DbError::Cancelled {
            session: 0,
            statement: None,
        })
    }

    /// Runs `ops` in order in one transaction on one session: commits if all succeed, rolls
    /// back at the first error.
    ///
    /// # Cancel safety
    /// Dropping the future rolls the transaction back (see [`Session::transaction`]).
    ///
    /// # Errors
    /// The first operation's error (after the rollback), or an error from `BEGIN`/`COMMIT`.
    pub async fn in_transaction<T: Send + 'static>(&self, ops: Vec<TxOp<T>>) -> Result<Vec<T>, DbError> {
        let mut session = self.factory.open_with_token(&self.token).await?;
        session
            .transaction(|tx| {
                Box::pin(async move {
                    let mut out = Vec::with_capacity(ops.len());
                    for op in ops {
                        out.push(op(tx).await?);
                    }
                    Ok(out)
                })
            })
            .await
    }
}

impl Drop for SessionOperationGroup {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
