//! [`AsyncManager`]: the root of a supervision tree and the handle to it.
//!
//! `AsyncManager::start` spawns the root supervisor (a ractor actor) and returns a cheap,
//! cloneable handle. Everything the application supervises lives below it.
//! [`shutdown`](AsyncManager::shutdown) stops the tree in reverse start order, depth first, and
//! reports what stopped cleanly, what had to be killed and what failed while stopping;
//! [`wait`](AsyncManager::wait) resolves when the root stops and says why (a requested
//! shutdown, or an escalation naming the supervisor that gave up and the failure).
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//! use uno_actors::{AsyncManager, ExitReason, ManagerConfig, WorkerSpec};
//!
//! struct Idle;
//! impl Actor for Idle {
//!     type Msg = ();
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) }
//! }
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! manager.spawn(WorkerSpec::new("a", |_| (Idle, ()))).await.unwrap();
//! manager.spawn(WorkerSpec::new("b", |_| (Idle, ()))).await.unwrap();
//! let report = manager.shutdown(Duration::from_secs(5)).await;
//! assert_eq!(report.stopped, ["root/b", "root/a", "root"]); // reverse start order, root last
//! assert!(report.is_clean());
//! assert_eq!(manager.wait().await, ExitReason::Shutdown);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ractor::Actor;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::context::ChildContext;
use crate::error::{SpecError, SupervisorError};
use crate::handle::SupervisedRef;
use crate::spec::{ChildDefaults, Intensity, ResolvedDefaults, Strategy, SupervisorSpec, WorkerSpec};
use crate::supervisor::{SupervisorActor, SupervisorArgs, SupervisorRef};
use crate::tree::{EffectivePolicy, NodeKind, Registry, Status, TreeSnapshot};

/// Configuration of a manager's root supervisor.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Name of the root node (the first path segment). Default `"root"`.
    pub name: String,
    /// The root's strategy. Default `OneForOne`.
    pub strategy: Strategy,
    /// The root's intensity; exceeding it ends the application. Default 1 in 5 s (OTP).
    pub intensity: Intensity,
    /// Defaults inherited by the whole tree.
    pub defaults: ChildDefaults,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            name: "root".to_string(),
            strategy: Strategy::OneForOne,
            intensity: Intensity::default(),
            defaults: ChildDefaults::default(),
        }
    }
}

/// Why the root stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// [`AsyncManager::shutdown`] was called.
    Shutdown,
    /// A supervisor exceeded its restart intensity and the failure reached the root.
    Escalation {
        /// Path of the supervisor that gave up last (the root).
        path: String,
        /// The escalation, naming the failing child and its error.
        error: String,
    },
    /// The root stopped by itself (auto-shutdown after its significant children ended).
    RootStopped {
        /// The exit reason ractor reported, if any.
        reason: Option<String>,
    },
}

impl ExitReason {
    /// Whether the application ended on purpose (not by an escalation).
    pub fn is_clean(&self) -> bool {
        !matches!(self, ExitReason::Escalation { .. })
    }
}

/// How one node ended during a shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopOutcome {
    /// It stopped when asked.
    Clean,
    /// It was killed: `Brutal`, or it outlived its shutdown timeout.
    Killed {
        /// How long it was given.
        after: Duration,
    },
    /// Its `post_stop` failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// A node killed during shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KilledNode {
    /// Its path.
    pub path: String,
    /// How long it was given before the kill.
    pub after: Duration,
}

/// A node that failed while stopping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedNode {
    /// Its path.
    pub path: String,
    /// The error.
    pub error: String,
}

/// What [`AsyncManager::shutdown`] did, node by node, in stop order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReport {
    /// Nodes that stopped cleanly, in the order they stopped.
    pub stopped: Vec<String>,
    /// Nodes that were killed.
    pub killed: Vec<KilledNode>,
    /// Nodes that failed while stopping.
    pub failed: Vec<FailedNode>,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// True when every node stopped cleanly.
    pub fn is_clean(&self) -> bool {
        self.killed.is_empty() && self.failed.is_empty()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shutdown in {:?}: {} stopped cleanly, {} killed, {} failed",
            self.elapsed,
            self.stopped.len(),
            self.killed.len(),
            self.failed.len()
        )?;
        for p in &self.stopped {
            writeln!(f, "  stopped  {p}")?;
        }
        for k in &self.killed {
            writeln!(f, "  killed   {} (after {:?})", k.path, k.after)?;
        }
        for e in &self.failed {
            writeln!(f, "  failed   {}: {}", e.path, e.error)?;
        }
        Ok(())
    }
}

pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    /// Cancelled once the root has stopped, for whatever reason.
    pub exited: CancellationToken,
    name: String,
    exit: watch::Sender<Option<ExitReason>>,
    shutting_down: AtomicBool,
    report: Mutex<Option<StopLog>>,
    root: OnceLock<SupervisorRef>,
    root_token: CancellationToken,
    cleanup: TaskTracker,
    shutdown_once: OnceCell<ShutdownReport>,
}

impl Shared {
    pub(crate) fn set_exit(&self, reason: ExitReason) {
        self.exit.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Records how a node stopped, if a manager shutdown is collecting a report. A later
    /// `Failed` (its exit event) replaces an earlier `Clean` for the same path.
    pub(crate) fn record_stop(&self, path: &str, outcome: StopOutcome) {
        let mut guard = self.report.lock().unwrap_or_else(|p| p.into_inner());
        let Some(report) = guard.as_mut() else { return };
        match report.index.get(path) {
            Some(&i) => {
                if matches!(outcome, StopOutcome::Failed { .. }) {
                    report.entries[i].1 = outcome;
                }
            }
            None => {
                report.index.insert(path.to_string(), report.entries.len());
                report.entries.push((path.to_string(), outcome));
            }
        }
    }
}

/// How nodes stopped during a shutdown, in stop order, indexed by path.
#[derive(Default)]
pub(crate) struct StopLog {
    entries: Vec<(String, StopOutcome)>,
    index: std::collections::HashMap<String, usize>,
}

/// The handle to a supervision tree. Cheap to clone; every clone addresses the same tree.
#[derive(Clone)]
pub struct AsyncManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for AsyncManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncManager")
            .field("name", &self.shared.name)
            .field("nodes", &self.shared.registry.len())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

impl AsyncManager {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts the root supervisor.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future mid-way may leave a root actor running without a
    /// handle.
    ///
    /// # Errors
    /// [`SpecError::EmptyName`] or [`SpecError::InvalidName`] for a bad root name;
    /// [`SupervisorError::StartFailed`] if the root actor fails to start.
    pub async fn start(config: ManagerConfig) -> Result<Self, SupervisorError> {
        if config.name.is_empty() {
            return Err(SpecError::EmptyName {
                parent: "(manager)".to_string(),
            }
            .into());
        }
        if config.name.contains('/') {
            return Err(SpecError::InvalidName {
                name: config.name,
                parent: "(manager)".to_string(),
            }
            .into());
        }
        let registry = Arc::new(Registry::default());
        let path: Arc<str> = config.name.as_str().into();
        let root_id = registry.insert(None, path.clone(), config.name.clone(), NodeKind::Root);
        let defaults = ResolvedDefaults::default().overridden_by(&config.defaults);
        registry.update(root_id, |e| {
            e.policy = Some(EffectivePolicy {
                restart: defaults.restart,
                shutdown: crate::spec::Shutdown::Infinity,
                backoff: defaults.backoff,
                significant: false,
                strategy: Some(config.strategy),
                intensity: Some(config.intensity),
                auto_shutdown: None,
            })
        });
        let root_token = CancellationToken::new();
        let shared = Arc::new(Shared {
            registry,
            exited: CancellationToken::new(),
            name: config.name.clone(),
            exit: watch::channel(None).0,
            shutting_down: AtomicBool::new(false),
            report: Mutex::new(None),
            root: OnceLock::new(),
            root_token: root_token.clone(),
            cleanup: TaskTracker::new(),
            shutdown_once: OnceCell::new(),
        });
        let spec = SupervisorSpec::new(config.name.clone())
            .strategy(config.strategy)
            .intensity(config.intensity)
            .defaults(config.defaults)
            .kind(NodeKind::Root);
        let root_ref = spec.reference();
        let ctx = ChildContext::new(
            shared.clone(),
            root_id,
            path.clone(),
            config.name.clone(),
            NodeKind::Root,
            root_token,
            1,
        );
        let args = SupervisorArgs {
            options: spec.options.clone(),
            children: Vec::new(),
            defaults,
            ctx,
            is_root: true,
        };
        let (actor, join) =
            Actor::spawn(None, SupervisorActor, args)
                .await
                .map_err(|e| SupervisorError::StartFailed {
                    path: path.to_string(),
                    error: e.to_string(),
                })?;
        spec.slot.set_running(path.to_string(), actor, shared.exited.clone());
        shared.registry.set_status(root_id, Status::Running);
        let _ = shared.root.set(root_ref);
        let watcher = Arc::downgrade(&shared);
        let slot = spec.slot.clone();
        tokio::spawn(async move {
            let _ = join.await;
            use crate::handle::SlotControl;
            slot.mark_stopped();
            if let Some(shared) = watcher.upgrade() {
                let reason = if shared.shutting_down.load(Ordering::SeqCst) {
                    ExitReason::Shutdown
                } else {
                    ExitReason::RootStopped { reason: None }
                };
                shared.set_exit(reason);
                shared.registry.update(root_id, |e| {
                    if !matches!(e.status, Status::Failed) {
                        e.status = Status::Stopped;
                    }
                });
                shared.root_token.cancel();
                shared.exited.cancel();
            }
        });
        tracing::info!(root = %path, "manager started");
        Ok(Self { shared })
    }

    fn root_ref(&self) -> Result<&SupervisorRef, SupervisorError> {
        if self.shared.exited.is_cancelled() {
            return Err(SupervisorError::ManagerStopped {
                name: self.shared.name.clone(),
            });
        }
        self.shared.root.get().ok_or_else(|| SupervisorError::ManagerStopped {
            name: self.shared.name.clone(),
        })
    }

    /// The root supervisor, to manage its children directly.
    ///
    /// # Errors
    /// [`SupervisorError::ManagerStopped`] once the root has stopped.
    pub fn root(&self) -> Result<SupervisorRef, SupervisorError> {
        self.root_ref().cloned()
    }

    /// The root's name (the first segment of every path).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Spawns a supervised worker under the root and returns its stable address.
    ///
    /// # Cancel safety
    /// If dropped after the request reached the root, the worker is still started.
    ///
    /// # Errors
    /// [`SupervisorError::ManagerStopped`] once the manager has stopped; otherwise as
    /// [`SupervisorRef::start_child`].
    pub async fn spawn<A: Actor>(&self, spec: WorkerSpec<A>) -> Result<SupervisedRef<A::Msg>, SupervisorError> {
        self.root_ref()?
            .start_worker(spec)
            .await
            .map_err(|e| self.stopped_as_manager(e))
    }

    /// Spawns a supervisor (and its children) under the root.
    ///
    /// # Cancel safety
    /// If dropped after the request reached the root, the supervisor is still started.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub async fn spawn_supervisor(&self, spec: SupervisorSpec) -> Result<SupervisorRef, SupervisorError> {
        self.root_ref()?
            .start_supervisor(spec)
            .await
            .map_err(|e| self.stopped_as_manager(e))
    }

    fn stopped_as_manager(&self, e: SupervisorError) -> SupervisorError {
        match e {
            SupervisorError::SupervisorStopped { path } if path == self.shared.name => {
                SupervisorError::ManagerStopped {
                    name: self.shared.name.clone(),
                }
            }
            other => other,
        }
    }

    /// A snapshot of the whole tree, read from the registry without messaging any actor.
    pub fn tree(&self) -> TreeSnapshot {
        self.shared.registry.snapshot()
    }

    /// The root's cancellation token: every node's token descends from it. It is cancelled
    /// when the root stops; cancelling it yourself tells every node to wind down (it does not
    /// stop the actors: use [`shutdown`](Self::shutdown)).
    pub fn cancel_token(&self) -> CancellationToken {
        self.shared.root_token.clone()
    }

    /// Whether a shutdown has begun (or the root has stopped).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::SeqCst) || self.shared.exited.is_cancelled()
    }

    /// Runs a cleanup future that [`shutdown`](Self::shutdown) waits for (within its timeout):
    /// for work that must finish even though its owner was dropped, such as a rollback or
    /// closing a resource.
    pub fn spawn_cleanup<F>(&self, name: &str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("uno.cleanup", name = %name);
        self.shared.cleanup.spawn(future.instrument(span));
    }

    /// Stops the whole tree: children in reverse start order, depth first, each with its own
    /// shutdown policy, then waits for cleanup tasks; everything is bounded by `timeout`, after
    /// which whatever is left is killed. Calling it again returns the first call's report.
    ///
    /// # Cancel safety
    /// Cancel safe in the sense that the shutdown goes on in the root if the future is dropped
    /// after it began; a later call waits for it and returns its report.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.shared
            .shutdown_once
            .get_or_init(|| self.do_shutdown(timeout))
            .await
            .clone()
    }

    async fn do_shutdown(&self, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        let deadline = started + timeout;
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        *self.shared.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(StopLog::default());
        tracing::info!(root = %self.shared.name, ?timeout, "shutdown started");
        let root_cell = self
            .shared
            .root
            .get()
            .and_then(|r| r.raw().current())
            .map(|a| a.get_cell());
        let mut root_outcome = StopOutcome::Clean;
        if let Some(cell) = root_cell {
            let _ = cell.send_message(crate::supervisor::SupervisorMsg::Shutdown);
            if tokio::time::timeout_at(deadline, self.shared.exited.cancelled())
                .await
                .is_err()
            {
                // Past the deadline: kill the root; ractor kills every descendant with it.
                for path in self.shared.registry.paths_not_stopped() {
                    if path != self.shared.name {
                        self.shared.record_stop(&path, StopOutcome::Killed { after: timeout });
                    }
                }
                cell.kill();
                self.shared.exited.cancelled().await;
                root_outcome = StopOutcome::Killed { after: timeout };
            }
        }
        self.shared.exited.cancelled().await;
        self.shared.record_stop(&self.shared.name, root_outcome);
        self.shared.cleanup.close();
        if tokio::time::timeout_at(deadline, self.shared.cleanup.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.shared.cleanup.len(),
                "cleanup tasks still running at the shutdown deadline"
            );
            let error = format!(
                "{} cleanup task(s) still running at the deadline",
                self.shared.cleanup.len()
            );
            self.shared
                .record_stop("(cleanup tasks)", StopOutcome::Failed { error });
        }
        self.shared.registry.mark_all_stopped();
        let entries = self
            .shared
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let mut report = ShutdownReport {
            elapsed: started.elapsed(),
            ..Default::default()
        };
        for (path, outcome) in entries.entries {
            match outcome {
                StopOutcome::Clean => report.stopped.push(path),
                StopOutcome::Killed { after } => report.killed.push(KilledNode { path, after }),
                StopOutcome::Failed { error } => report.failed.push(FailedNode { path, error }),
            }
        }
        tracing::info!(
            stopped = report.stopped.len(),
            killed = report.killed.len(),
            failed = report.failed.len(),
            "shutdown finished"
        );
        report
    }

    /// Resolves when the root has stopped, with the reason.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self) -> ExitReason {
        self.shared.exited.cancelled().await;
        let reason = self.shared.exit.borrow().clone();
        reason.unwrap_or(ExitReason::RootStopped { reason: None })
    }
}
