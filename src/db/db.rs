//! [`Db`]: the supervised database node and its facade.
//!
//! `Db::start` spawns a node of kind `db` under the manager's root. Its start opens the first
//! connection (retrying transient failures, failing at once on permanent ones, with the
//! server's message) and builds the pool; the node publishes the pool's and the sessions'
//! stats in the tree, lists live sessions as its leaves and reports sessions open longer than
//! the leak threshold. Stopping the node cancels every session's running statement on the
//! server and refuses new sessions.
//!
//! ```no_run
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let db = Db::start(&manager, "db", DbConfig::from_url("postgres://postgres@127.0.0.1/test")?).await?;
//! let mut s = db.session().await?;
//! let one: i32 = s.query_one("SELECT 1", &[]).await?.get(0);
//! assert_eq!(one, 1);
//! let node = manager.tree().find("root/db").cloned();
//! assert!(node.is_some_and(|n| n.stats.contains_key("pool.connections")));
//! # drop(s);
//! manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uno_actors::{AsyncManager, ChildContext, NodeKind, Restart, StatsSource, SupervisedRef, WorkerSpec};

use super::config::DbConfig;
use super::error::DbError;
use super::facade::Facade;
use super::group::{SessionOperationGroup, TxOp};
use super::pool::DbPool;
use super::session::{Session, SessionFactory};

/// What a `Db` handle shares with its node's current incarnation.
#[derive(Default)]
struct Slot {
    factory: RwLock<Option<SessionFactory>>,
    start_error: Mutex<Option<DbError>>,
}

/// The database node's actor. It has no messages; its work is its start (connect, pool), its
/// leak checks and its stop (refuse sessions, cancel their statements).
pub struct DbNode;

/// The state of a running [`DbNode`].
pub struct DbNodeState {
    factory: SessionFactory,
    slot: Arc<Slot>,
    _stats: Arc<dyn StatsSource>,
}

/// Arguments of a [`DbNode`].
pub struct DbNodeArgs {
    ctx: ChildContext,
    config: Arc<DbConfig>,
    slot: Arc<Slot>,
}

impl Actor for DbNode {
    type Msg = ();
    type State = DbNodeState;
    type Arguments = DbNodeArgs;

    async fn pre_start(&self, _me: ActorRef<()>, args: DbNodeArgs) -> Result<DbNodeState, ActorProcessingErr> {
        let DbNodeArgs { ctx, config, slot } = args;
        let pool = match DbPool::start(ctx.path(), config.clone()).await {
            Ok(pool) => pool,
            Err(e) => {
                let message = e.to_string();
                *slot.start_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return Err(message.into());
            }
        };
        let factory = SessionFactory::new(pool, config.clone(), ctx.clone());
        let stats: Arc<dyn StatsSource> = factory.inner.clone();
        ctx.stats().attach(Arc::downgrade(&stats));
        ctx.stats().set("target", config.target());
        *slot.factory.write().unwrap_or_else(|p| p.into_inner()) = Some(factory.clone());
        // Leak checks until the node stops.
        let every = (config.leak_threshold / 2).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let checker = factory.clone();
        let token = ctx.cancel_token().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = tick.tick() => { checker.report_leaks(); }
                }
            }
        });
        Ok(DbNodeState {
            factory,
            slot,
            _stats: stats,
        })
    }

    async fn post_stop(&self, _me: ActorRef<()>, state: &mut DbNodeState) -> Result<(), ActorProcessingErr> {
        state.factory.close();
        let mut slot = state.slot.factory.write().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(&f.inner, &state.factory.inner))
        {
            *slot = None;
        }
        Ok(())
    }
}

/// A handle on a database node: sessions, transactions, groups. Cheap to clone; it follows the
/// node across restarts.
#[derive(Clone)]
pub struct Db {
    slot: Arc<Slot>,
    path: Arc<str>,
    node: SupervisedRef<()>,
    manager: AsyncManager,
    facade: Arc<Facade>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Db {
    /// The node's spec (kind `db`, restarted when it fails), to place it under a supervisor of
    /// your own, and the handle that will reach it once started.
    ///
    /// # Errors
    /// [`DbError::Config`] when `config` is invalid.
    pub fn spec(manager: &AsyncManager, name: &str, config: DbConfig) -> Result<(WorkerSpec<DbNode>, Db), DbError> {
        config.validate()?;
        let config = Arc::new(config);
        let slot = Arc::new(Slot::default());
        let factory_slot = slot.clone();
        let spec = WorkerSpec::new(name, move |ctx: &ChildContext| {
            (
                DbNode,
                DbNodeArgs {
                    ctx: ctx.clone(),
                    config: config.clone(),
                    slot: factory_slot.clone(),
                },
            )
        })
        .kind(NodeKind::Db)
        .restart(Restart::Permanent);
        let node = spec.reference();
        let db = Db {
            slot,
            path: format!("{}/{name}", manager.name()).into(),
            node,
            manager: manager.clone(),
            facade: Arc::default(),
        };
        Ok((spec, db))
    }

    /// Starts a database node named `name` under the manager's root.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future may leave the node starting in the tree.
    ///
    /// # Errors
    /// [`DbError::Config`], or the first connection's [`DbError::Connect`] (permanent failures
    /// at once, transient ones after the configured attempts), with the server's message and
    /// without the password.
    pub async fn start(manager: &AsyncManager, name: &str, config: DbConfig) -> Result<Db, DbError> {
        let (spec, db) = Self::spec(manager, name, config)?;
        if let Err(e) = manager.spawn(spec).await {
            let start_error = db.slot.start_error.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(start_error.unwrap_or_else(|| DbError::Component {
                component: db.path.to_string(),
                message: e.to_string(),
            }));
        }
        Ok(db)
    }

    pub(crate) fn facade(&self) -> &Facade {
        &self.facade
    }

    /// Flushes the rows queued for [`insert_batched`](Self::insert_batched) and waits for
    /// their batches (call it before shutting down).
    ///
    /// # Cancel safety
    /// Cancel safe: the flush goes on if the future is dropped.
    ///
    /// # Errors
    /// None; failed batches report to their callers.
    pub async fn flush(&self) {
        self.facade.shutdown().await;
    }

    /// The node's path, like `root/db`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The node's address.
    pub fn node(&self) -> &SupervisedRef<()> {
        &self.node
    }

    /// The manager the node belongs to.
    pub fn manager(&self) -> &AsyncManager {
        &self.manager
    }

    /// The session factory of the node's current incarnation.
    ///
    /// # Errors
    /// [`DbError::Closed`] while the node is not running.
    pub fn factory(&self) -> Result<SessionFactory, DbError> {
        self.slot
            .factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| DbError::Closed {
                db: self.path.to_string(),
            })
    }

    /// Opens a session (see [`SessionFactory::open`]).
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// # Errors
    /// As [`SessionFactory::open`]; [`DbError::Closed`] while the node is not running.
    #[track_caller]
    pub fn session(&self) -> impl std::future::Future<Output = Result<Session, DbError>> + Send + 'static {
        let location = std::panic::Location::caller();
        let opened = self.factory().map(|f| f.open_at(location));
        async move { opened?.await }
    }

    /// A [`SessionOperationGroup`] on this node.
    ///
    /// # Errors
    /// [`DbError::Closed`] while the node is not running.
    pub fn group(&self) -> Result<SessionOperationGroup, DbError> {
        Ok(SessionOperationGroup::new(&self.factory()?))
    }

    /// Runs `ops` in order in one transaction: all or nothing (see
    /// [`SessionOperationGroup::in_transaction`]).
    ///
    /// # Cancel safety
    /// Dropping the future rolls the transaction back.
    ///
    /// # Errors
    /// The first operation's error, after the rollback.
    pub async fn execute_in_transaction<T: Send + 'static>(&self, ops: Vec<TxOp<T>>) -> Result<Vec<T>, DbError> {
        self.group()?.in_transaction(ops).await
    }
}
