//! [`Db`]: the supervised database subtree and its facade.
//!
//! `Db::start` opens the first connection (retrying transient failures, failing at once on
//! permanent ones, with the server's message), then spawns a supervisor of kind `db` under the
//! manager's root (`rest_for_one`):
//!
//! ```text
//! root/db                    [db]        the subtree
//!   root/db/pool             [pool]      the AsyncResourcePool: size, idle, in_use, closed_broken, ...
//!   root/db/sessions         [sessions]  sessions.open, sessions.limit, sessions.leaked, ...
//!     root/db/sessions/session-1 [session]  one leaf per live session: opened_where, statement, ...
//!   root/db/cache-30000ms    [cache]     one per `query_cached` TTL: hits, misses, hit_ratio, ...
//!   root/db/insert events(kind) [batcher] one per `insert_batched` table and columns
//! ```
//!
//! The `sessions` node reports sessions open longer than the leak threshold. Stopping the
//! subtree cancels every session's running statement on the server, refuses new sessions and
//! closes the pool.
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
//! let pool = manager.tree().find("root/db/pool").cloned();
//! assert!(pool.is_some_and(|n| n.stats.contains_key("in_use")));
//! # drop(s);
//! manager.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uno_actors::{
    AsyncManager, ChildContext, NodeKind, Restart, StatsSource, Strategy, SupervisedRef, SupervisorRef, SupervisorSpec,
    WorkerSpec,
};

use super::config::DbConfig;
use super::error::DbError;
use super::facade::Facade;
use super::group::{SessionOperationGroup, TxOp};
use super::pool::DbPool;
use super::session::{Session, SessionFactory};

/// What a `Db` handle shares with its `sessions` node's current incarnation.
#[derive(Default)]
struct Slot {
    factory: RwLock<Option<SessionFactory>>,
}

/// The actor of a `Db`'s `sessions` node. It has no messages; its work is its start (the
/// session factory on the pool), its leak checks and its stop (refuse sessions, cancel their
/// statements).
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
    pool: DbPool,
    slot: Arc<Slot>,
}

impl Actor for DbNode {
    type Msg = ();
    type State = DbNodeState;
    type Arguments = DbNodeArgs;

    async fn pre_start(&self, _me: ActorRef<()>, args: DbNodeArgs) -> Result<DbNodeState, ActorProcessingErr> {
        let DbNodeArgs {
            ctx,
            config,
            pool,
            slot,
        } = args;
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

/// A handle on a database subtree: sessions, transactions, groups, cached queries and batched
/// inserts. Cheap to clone; it follows the nodes across restarts.
#[derive(Clone)]
pub struct Db {
    slot: Arc<Slot>,
    path: Arc<str>,
    node: SupervisorRef,
    sessions: SupervisedRef<()>,
    pool: DbPool,
    config: Arc<DbConfig>,
    manager: AsyncManager,
    facade: Arc<Facade>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Db {
    /// The subtree's spec (a `rest_for_one` supervisor of kind `db` named `name`, with the
    /// children `pool` and `sessions`), to place it under a supervisor of your own, and the
    /// handle that will reach it once started. Started this way, nothing connects before the
    /// pool's first checkout (use [`start`](Self::start) to fail early on a bad password or an
    /// unknown database).
    ///
    /// # Errors
    /// [`DbError::Config`] when `config` is invalid.
    pub fn spec(manager: &AsyncManager, name: &str, config: DbConfig) -> Result<(SupervisorSpec, Db), DbError> {
        config.validate()?;
        let config = Arc::new(config);
        let path: Arc<str> = format!("{}/{name}", manager.name()).into();
        let slot = Arc::new(Slot::default());
        let (pool_spec, pool) = DbPool::spec(&path, config.clone())?;
        let (node_config, node_pool, node_slot) = (config.clone(), pool.clone(), slot.clone());
        let sessions = WorkerSpec::new("sessions", move |ctx: &ChildContext| {
            (
                DbNode,
                DbNodeArgs {
                    ctx: ctx.clone(),
                    config: node_config.clone(),
                    pool: node_pool.clone(),
                    slot: node_slot.clone(),
                },
            )
        })
        .kind(NodeKind::Other("sessions".into()));
        let sessions_ref = sessions.reference();
        let spec = SupervisorSpec::new(name)
            .kind(NodeKind::Db)
            .strategy(Strategy::RestForOne)
            .restart(Restart::Permanent)
            .child(pool_spec)
            .child(sessions);
        let node = spec.reference();
        let db = Db {
            slot,
            path,
            node,
            sessions: sessions_ref,
            pool,
            config,
            manager: manager.clone(),
            facade: Arc::default(),
        };
        Ok((spec, db))
    }

    /// Opens the first connection, then starts the database subtree named `name` under the
    /// manager's root; the pool's first checkout uses that connection.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future may leave the subtree starting in the tree.
    ///
    /// # Errors
    /// [`DbError::Config`], or the first connection's [`DbError::Connect`] (permanent failures
    /// at once, transient ones after the configured attempts), with the server's message and
    /// without the password; [`DbError::Component`] when the subtree could not start.
    pub async fn start(manager: &AsyncManager, name: &str, config: DbConfig) -> Result<Db, DbError> {
        let (spec, db) = Self::spec(manager, name, config)?;
        db.pool.preconnect(&db.config).await?;
        if let Err(e) = manager.spawn_supervisor(spec).await {
            return Err(DbError::Component {
                component: db.path.to_string(),
                message: e.to_string(),
            });
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

    /// The subtree's path, like `root/db`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subtree's supervisor.
    pub fn node(&self) -> &SupervisorRef {
        &self.node
    }

    /// The address of the `sessions` node (its token cancels every session's statements).
    pub fn sessions_node(&self) -> &SupervisedRef<()> {
        &self.sessions
    }

    /// The manager the node belongs to.
    pub fn manager(&self) -> &AsyncManager {
        &self.manager
    }

    /// The session factory of the node's current incarnation.
    ///
    /// # Errors
    /// [`DbError::Closed`] while the `sessions` node is not running.
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
