//! The supervisor actor: OTP restart semantics on ractor.
//!
//! # The contract
//!
//! * **Start order.** Children start one after another in the order they were added; a
//!   supervisor whose initial child fails to start stops those already started (reverse order)
//!   and fails its own start.
//! * **Exits.** A child exits *normally* when it stops itself (`myself.stop(..)`, draining) and
//!   *abnormally* when its handler returns an error, panics, or it is killed by someone other
//!   than its supervisor.
//! * **Restart types.** `Permanent` children are always restarted; `Transient` children only
//!   after an abnormal exit; `Temporary` children never, not even when a sibling's failure
//!   restarts the group under `OneForAll`/`RestForOne` (they are stopped with the group and
//!   removed).
//! * **Strategies.** `OneForOne` restarts the failed child. `OneForAll` stops every other
//!   running child gracefully in reverse start order, then restarts all in start order.
//!   `RestForOne` does the same for the children started after the failed one. Siblings are
//!   asked to stop (token cancelled, stop requested, killed only after their shutdown timeout),
//!   never killed first.
//! * **Intensity.** Every restart is recorded; more than `max_restarts` within `period` and the
//!   supervisor stops all its children (reverse order) and fails with an
//!   [`EscalationError`]: its own supervisor then applies its policy. At the root, the manager
//!   stops and [`AsyncManager::wait`](crate::AsyncManager::wait) reports the escalation.
//! * **Backoff.** The n-th consecutive restart of a child waits `backoff.delay(n)` on a timer
//!   message, so the supervisor keeps answering meanwhile; the node shows
//!   `backoff until +T` in the tree. After a child stayed up for `reset_after`, n starts again
//!   from 1. Under `OneForAll`/`RestForOne` the whole restart set waits the failed child's delay.
//! * **Failed starts.** A `pre_start` error on restart counts as a failure of that child (and so
//!   towards the intensity).
//! * **Shutdown.** Children stop in reverse start order, depth first: each one's token is
//!   cancelled, it is asked to stop (a supervisor child stops its own children first), waited
//!   for up to its `Shutdown::Timeout`, then killed. `Brutal` kills at once, `Infinity` waits.
//! * **Auto-shutdown.** With `AnySignificant`, the supervisor stops itself (normally) when a
//!   significant child ends without being restarted; with `AllSignificant`, when all have.
//! * **Dynamic children.** `start_child`, `terminate_child` (stop, keep the spec),
//!   `restart_child` (start a terminated child again), `delete_child` (remove a stopped child),
//!   `which_children`, `count_children`, as in OTP.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//! use uno_actors::{AsyncManager, ManagerConfig, Strategy, SupervisorSpec, WorkerSpec};
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
//! let sup = manager
//!     .spawn_supervisor(
//!         SupervisorSpec::new("group")
//!             .strategy(Strategy::RestForOne)
//!             .child(WorkerSpec::new("a", |_| (Idle, ())))
//!             .child(WorkerSpec::new("b", |_| (Idle, ()))),
//!     )
//!     .await
//!     .unwrap();
//! sup.start_child(WorkerSpec::new("c", |_| (Idle, ()))).await.unwrap();
//! assert_eq!(sup.count_children().await.unwrap().active, 3);
//! sup.terminate_child("c").await.unwrap();
//! sup.delete_child("c").await.unwrap();
//! let names: Vec<_> = sup.which_children().await.unwrap().into_iter().map(|c| c.name).collect();
//! assert_eq!(names, ["a", "b"]);
//! manager.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::BackoffState;
use crate::context::ChildContext;
use crate::error::{EscalationError, RefError, SpecError, SupervisorError};
use crate::handle::SupervisedRef;
use crate::manager::{ExitReason, StopOutcome};
use crate::spec::{AutoShutdown, Strategy};
use crate::spec::{
    ChildSpec, ResolvedDefaults, Restart, RestartBackoff, Shutdown, StartArgs, SupervisorOptions, SupervisorSpec,
    WorkerSpec,
};
use crate::tree::{EffectivePolicy, NodeId, NodeKind, Status};

/// Messages of the supervisor actor. Use [`SupervisorRef`] rather than sending these.
#[doc(hidden)]
pub enum SupervisorMsg {
    StartChild(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    RestartChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    DeleteChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    WhichChildren(RpcReplyPort<Vec<ChildInfo>>),
    CountChildren(RpcReplyPort<ChildCounts>),
    RestartDue { uids: Vec<u64>, generation: u64 },
    Shutdown,
}

/// One child as `which_children` reports it (OTP `which_children/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// Name.
    pub name: String,
    /// Path.
    pub path: String,
    /// Kind label.
    pub kind: NodeKind,
    /// Whether it runs right now.
    pub running: bool,
    /// Whether it is a supervisor.
    pub is_supervisor: bool,
    /// Effective restart type.
    pub restart: Restart,
}

/// Counts as `count_children` reports them (OTP `count_children/1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildCounts {
    /// Child specs held (running or not).
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

pub(crate) struct SupervisorArgs {
    pub options: SupervisorOptions,
    pub children: Vec<ChildSpec>,
    pub defaults: ResolvedDefaults,
    pub ctx: ChildContext,
    pub is_root: bool,
}

pub(crate) struct SupervisorActor;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Policy {
    restart: Restart,
    shutdown: Shutdown,
    backoff: RestartBackoff,
    significant: bool,
}

struct Child {
    uid: u64,
    spec: ChildSpec,
    node: NodeId,
    path: Arc<str>,
    policy: Policy,
    cell: Option<ActorCell>,
    token: Option<CancellationToken>,
    ctx: Option<ChildContext>,
    incarnation: u64,
    /// The generation of the restart this child waits for, if any.
    pending: Option<u64>,
    /// Ended and not to be restarted (a transient child that exited normally, or terminated).
    ended: bool,
    failures: u32,
    backoff_state: BackoffState,
    started_at: Option<Instant>,
    recent: VecDeque<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopPurpose {
    /// Part of a restart: the child will come back.
    Restart,
    /// The supervisor gives up; its parent may start it (and so the child) again.
    Escalation,
    /// Shutdown of this supervisor (manager shutdown, parent restart, auto-shutdown).
    Shutdown,
    /// `terminate_child`.
    Terminate,
}

enum Exit {
    Normal(Option<String>),
    Failed(String),
}

pub(crate) struct SupervisorState {
    options: SupervisorOptions,
    defaults: ResolvedDefaults,
    ctx: ChildContext,
    is_root: bool,
    span: tracing::Span,
    children: Vec<Child>,
    names: HashSet<String>,
    next_uid: u64,
    restarts: VecDeque<Instant>,
    generation: u64,
    shutting_down: bool,
    /// Cells stopped on purpose, by id, with their path: their exit events are expected.
    stopping: HashMap<ActorId, Arc<str>>,
    timers: Vec<JoinHandle<()>>,
}

fn spawn_err_text(e: SpawnErr) -> String {
    match e {
        SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl SupervisorState {
    fn path(&self) -> &str {
        self.ctx.path()
    }

    fn registry(&self) -> &crate::tree::Registry {
        &self.ctx.shared().registry
    }

    fn resolve(&self, spec: &ChildSpec) -> Result<Policy, SpecError> {
        let restart = spec.restart.unwrap_or(self.defaults.restart);
        if spec.significant && restart == Restart::Permanent {
            return Err(SpecError::SignificantPermanent {
                name: spec.name.clone(),
            });
        }
        let shutdown = spec.shutdown.unwrap_or(if spec.is_supervisor {
            Shutdown::Infinity
        } else {
            self.defaults.shutdown
        });
        Ok(Policy {
            restart,
            shutdown,
            backoff: spec.backoff.unwrap_or(self.defaults.backoff),
            significant: spec.significant,
        })
    }

    fn add_child(&mut self, spec: ChildSpec) -> Result<usize, SupervisorError> {
        spec.validate(self.path())?;
        if self.names.contains(&spec.name) {
            return Err(SpecError::DuplicateName {
                name: spec.name.clone(),
                parent: self.path().to_string(),
            }
            .into());
        }
        let policy = self.resolve(&spec)?;
        let path: Arc<str> = format!("{}/{}", self.path(), spec.name).into();
        let node = self
            .registry()
            .insert(Some(self.ctx.id()), path.clone(), spec.name.clone(), spec.kind.clone());
        let supervisor_options = spec.supervisor;
        self.registry().update(node, |e| {
            e.policy = Some(EffectivePolicy {
                restart: policy.restart,
                shutdown: policy.shutdown,
                backoff: policy.backoff,
                significant: policy.significant,
                strategy: supervisor_options.map(|o| o.0),
                intensity: supervisor_options.map(|o| o.1),
                auto_shutdown: supervisor_options.map(|o| o.2),
            })
        });
        self.next_uid += 1;
        self.names.insert(spec.name.clone());
        self.children.push(Child {
            uid: self.next_uid,
            spec,
            node,
            path,
            policy,
            cell: None,
            token: None,
            ctx: None,
            incarnation: 0,
            pending: None,
            ended: false,
            failures: 0,
            backoff_state: BackoffState::new(),
            started_at: None,
            recent: VecDeque::new(),
        });
        Ok(self.children.len() - 1)
    }

    fn remove_child(&mut self, idx: usize) {
        let child = self.children.remove(idx);
        self.names.remove(&child.spec.name);
        child.spec.starter.slot().mark_stopped();
        self.registry().remove_subtree(child.node);
    }

    fn find(&self, name: &str) -> Result<usize, SupervisorError> {
        self.children
            .iter()
            .position(|c| c.spec.name == name)
            .ok_or_else(|| SupervisorError::NoSuchChild {
                name: name.to_string(),
                parent: self.path().to_string(),
            })
    }

    fn index_of_uid(&self, uid: u64) -> Option<usize> {
        self.children.iter().position(|c| c.uid == uid)
    }

    async fn start_child(&mut self, idx: usize, myself: &ActorRef<SupervisorMsg>) -> Result<(), String> {
        let token = self.ctx.cancel_token().child_token();
        let shared = self.ctx.shared().clone();
        let child = &mut self.children[idx];
        child.incarnation += 1;
        child.pending = None;
        child.ended = false;
        let ctx = ChildContext::new(
            shared.clone(),
            child.node,
            child.path.clone(),
            child.spec.name.clone(),
            child.spec.kind.clone(),
            token.clone(),
            child.incarnation,
        );
        shared.registry.set_status(child.node, Status::Starting);
        let span = tracing::info_span!(parent: None, "uno.node", path = %child.path);
        child.ctx = Some(ctx.clone());
        let start = child.spec.starter.start(StartArgs {
            ctx,
            parent: myself.get_cell(),
            inherited: self.defaults,
        });
        let result = start.instrument(span.clone()).await;
        let child = &mut self.children[idx];
        match result {
            Ok(cell) => {
                child.cell = Some(cell);
                child.token = Some(token);
                child.started_at = Some(Instant::now());
                shared.registry.set_status(child.node, Status::Running);
                span.in_scope(|| tracing::info!(incarnation = child.incarnation, "node started"));
                Ok(())
            }
            Err(e) => {
                token.cancel();
                let error = spawn_err_text(e);
                shared.registry.set_error(child.node, error.clone());
                shared.registry.set_status(child.node, Status::Failed);
                span.in_scope(|| tracing::warn!(path = %child.path, %error, "node failed to start"));
                Err(error)
            }
        }
    }

    async fn stop_child(&mut self, idx: usize, purpose: StopPurpose) -> Option<StopOutcome> {
        let shared = self.ctx.shared().clone();
        let child = &mut self.children[idx];
        let cell = child.cell.take()?;
        if matches!(purpose, StopPurpose::Shutdown | StopPurpose::Terminate) {
            if let Some(ctx) = &child.ctx {
                ctx.mark_final_stop();
            }
        }
        if let Some(t) = child.token.take() {
            t.cancel();
        }
        shared.registry.set_status(child.node, Status::Stopping);
        self.stopping.insert(cell.get_id(), child.path.clone());
        let span = tracing::info_span!(parent: None, "uno.node", path = %child.path);
        let (shutdown, is_supervisor, node, path) = (
            child.policy.shutdown,
            child.spec.is_supervisor,
            child.node,
            child.path.clone(),
        );
        span.in_scope(|| tracing::debug!(?purpose, ?shutdown, "stopping node"));
        let outcome = stop_cell(&cell, shutdown, is_supervisor).await;
        let child = &mut self.children[idx];
        match purpose {
            StopPurpose::Restart | StopPurpose::Escalation => {
                child.spec.starter.slot().mark_down();
                shared.registry.set_status(node, Status::Restarting);
            }
            StopPurpose::Shutdown | StopPurpose::Terminate => {
                child.spec.starter.slot().mark_stopped();
                shared.registry.set_status(node, Status::Stopped);
            }
        }
        if let StopOutcome::Killed { after } = outcome {
            span.in_scope(|| tracing::warn!(%path, ?after, "node killed: it did not stop within its shutdown"));
        } else {
            span.in_scope(|| tracing::info!("node stopped"));
        }
        if purpose == StopPurpose::Shutdown {
            shared.record_stop(&path, outcome.clone());
        }
        Some(outcome)
    }

    /// Stops every running child, in reverse start order.
    async fn stop_all(&mut self, purpose: StopPurpose) {
        for idx in (0..self.children.len()).rev() {
            self.stop_child(idx, purpose).await;
            self.children[idx].pending = None;
        }
    }

    fn record_restart(&mut self, idx: usize) -> usize {
        let now = Instant::now();
        let period = self.options.intensity.period();
        self.restarts.push_back(now);
        while self.restarts.front().is_some_and(|t| now.duration_since(*t) >= period) {
            self.restarts.pop_front();
        }
        let child = &mut self.children[idx];
        child.recent.push_back(now);
        while child.recent.front().is_some_and(|t| now.duration_since(*t) >= period) {
            child.recent.pop_front();
        }
        let in_window = child.recent.len() as u32;
        self.ctx.shared().registry.update(child.node, |e| {
            e.restarts += 1;
            e.restarts_in_window = in_window;
        });
        self.restarts.len()
    }

    fn restart_after_failure<'a>(
        &'a mut self,
        myself: &'a ActorRef<SupervisorMsg>,
        idx: usize,
        reason: String,
    ) -> BoxFuture<'a, Result<(), ActorProcessingErr>> {
        Box::pin(async move {
            let restarts = self.record_restart(idx);
            let failed_path = self.children[idx].path.clone();
            let failed_uid = self.children[idx].uid;
            if restarts > self.options.intensity.max_restarts() as usize {
                return self.escalate(format!("{failed_path}: {reason}")).await;
            }
            let n = self.children.len();
            let affected: Vec<usize> = match self.options.strategy {
                Strategy::OneForOne => Vec::new(),
                Strategy::OneForAll => (0..n).filter(|&j| j != idx).collect(),
                Strategy::RestForOne => (idx + 1..n).collect(),
            };
            let mut set = vec![self.children[idx].uid];
            for &j in affected.iter().rev() {
                let was_up = self.stop_child(j, StopPurpose::Restart).await.is_some();
                let c = &self.children[j];
                if c.policy.restart != Restart::Temporary && !c.ended && (was_up || c.pending.is_some()) {
                    set.push(c.uid);
                }
            }
            // Temporary siblings stopped with the group are never restarted: remove them.
            for j in affected.into_iter().rev() {
                if self.children[j].policy.restart == Restart::Temporary && self.children[j].cell.is_none() {
                    self.remove_child(j);
                }
            }
            let mut set: Vec<(usize, u64)> = set
                .into_iter()
                .filter_map(|u| self.index_of_uid(u).map(|i| (i, u)))
                .collect();
            set.sort_unstable();
            let Some(idx) = self.index_of_uid(failed_uid) else {
                return Ok(());
            };
            let now = Instant::now();
            let child = &mut self.children[idx];
            if child
                .started_at
                .is_some_and(|t| now.duration_since(t) >= child.policy.backoff.reset_after)
            {
                child.failures = 0;
                child.backoff_state.reset();
            }
            child.failures += 1;
            let attempt = child.failures;
            let delay = child.policy.backoff.backoff.delay(attempt, &mut child.backoff_state);
            self.generation += 1;
            let generation = self.generation;
            let status = if delay.is_zero() {
                Status::Restarting
            } else {
                Status::Backoff(now + delay)
            };
            for &(i, _) in &set {
                let c = &mut self.children[i];
                c.pending = Some(generation);
                c.spec.starter.slot().mark_down();
                self.ctx.shared().registry.set_status(c.node, status);
                if c.uid != failed_uid {
                    // Restarted with the group: a restart of this node too, though not its failure.
                    self.ctx.shared().registry.update(c.node, |e| e.restarts += 1);
                }
            }
            let span = tracing::info_span!(parent: None, "uno.node", path = %failed_path);
            span.in_scope(|| tracing::info!(attempt, ?delay, restarting = set.len(), "restart scheduled"));
            let uids = set.into_iter().map(|(_, u)| u).collect();
            self.schedule(myself, uids, generation, delay);
            Ok(())
        })
    }

    fn schedule(&mut self, myself: &ActorRef<SupervisorMsg>, uids: Vec<u64>, generation: u64, delay: Duration) {
        self.timers.retain(|t| !t.is_finished());
        let me = myself.clone();
        if delay.is_zero() {
            let _ = me.cast(SupervisorMsg::RestartDue { uids, generation });
            return;
        }
        self.timers.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::RestartDue { uids, generation });
        }));
    }

    async fn restart_due(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        uids: Vec<u64>,
        generation: u64,
    ) -> Result<(), ActorProcessingErr> {
        if self.shutting_down {
            return Ok(());
        }
        for uid in uids {
            let Some(idx) = self.index_of_uid(uid) else {
                continue;
            };
            let c = &self.children[idx];
            if c.pending != Some(generation) || c.cell.is_some() {
                continue;
            }
            if let Err(error) = self.start_child(idx, myself).await {
                return self
                    .restart_after_failure(myself, idx, format!("restart failed: {error}"))
                    .await;
            }
        }
        Ok(())
    }

    async fn escalate(&mut self, last_failure: String) -> Result<(), ActorProcessingErr> {
        self.shutting_down = true;
        for t in self.timers.drain(..) {
            t.abort();
        }
        let err = EscalationError {
            path: self.path().to_string(),
            max_restarts: self.options.intensity.max_restarts(),
            period: self.options.intensity.period(),
            last_failure,
        };
        tracing::error!(error = %err, "restart intensity exceeded: escalating");
        // Below the root, the parent decides whether this subtree comes back; at the root
        // nothing will restart it, so the stop is final.
        let purpose = if self.is_root {
            StopPurpose::Shutdown
        } else {
            StopPurpose::Escalation
        };
        self.stop_all(purpose).await;
        self.ctx.cancel_token().cancel();
        let id = self.ctx.id();
        self.registry().set_error(id, err.to_string());
        self.registry().set_status(id, Status::Failed);
        if self.is_root {
            self.ctx.shared().set_exit(ExitReason::Escalation {
                path: err.path.clone(),
                error: err.to_string(),
            });
        }
        Err(Box::new(err))
    }

    async fn shutdown_self(&mut self, myself: &ActorRef<SupervisorMsg>, purpose: StopPurpose) {
        self.shutting_down = true;
        for t in self.timers.drain(..) {
            t.abort();
        }
        self.stop_all(purpose).await;
        self.ctx.cancel_token().cancel();
        // Drain rather than stop: the exit events of the children just stopped are queued in
        // the supervision port and must be seen (a child that failed while stopping).
        let _ = myself.drain();
    }

    async fn on_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: ActorId,
        exit: Exit,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(path) = self.stopping.remove(&id) {
            if let Exit::Failed(error) = exit {
                tracing::warn!(path = %path, %error, "node failed while stopping");
                self.ctx.shared().record_stop(&path, StopOutcome::Failed { error });
            }
            return Ok(());
        }
        let Some(idx) = self
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|c| c.get_id() == id))
        else {
            return Ok(());
        };
        let shared = self.ctx.shared().clone();
        let child = &mut self.children[idx];
        child.cell = None;
        if let Some(t) = child.token.take() {
            t.cancel();
        }
        let abnormal = match exit {
            Exit::Failed(e) => Some(e),
            Exit::Normal(Some(r)) if r == "killed" => Some("killed".to_string()),
            Exit::Normal(_) => None,
        };
        let span = tracing::info_span!(parent: None, "uno.node", path = %child.path);
        match &abnormal {
            Some(error) => {
                span.in_scope(|| tracing::error!(path = %child.path, %error, "node failed"));
                shared.registry.set_error(child.node, error.clone());
            }
            None => span.in_scope(|| tracing::info!("node exited normally")),
        }
        if self.shutting_down {
            child.spec.starter.slot().mark_stopped();
            shared.registry.set_status(child.node, Status::Stopped);
            return Ok(());
        }
        let restart = match child.policy.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal.is_some(),
            Restart::Temporary => false,
        };
        if restart {
            child.spec.starter.slot().mark_down();
            shared.registry.set_status(child.node, Status::Restarting);
            let reason = abnormal.unwrap_or_else(|| "exited normally".to_string());
            return self.restart_after_failure(myself, idx, reason).await;
        }
        let significant = child.policy.significant;
        if child.policy.restart == Restart::Temporary {
            self.remove_child(idx);
        } else {
            child.ended = true;
            child.spec.starter.slot().mark_stopped();
            let status = if abnormal.is_some() {
                Status::Failed
            } else {
                Status::Stopped
            };
            shared.registry.set_status(child.node, status);
        }
        if significant {
            let trigger = match self.options.auto_shutdown {
                AutoShutdown::Never => false,
                AutoShutdown::AnySignificant => true,
                AutoShutdown::AllSignificant => self
                    .children
                    .iter()
                    .filter(|c| c.policy.significant)
                    .all(|c| c.cell.is_none() && c.pending.is_none()),
            };
            if trigger {
                tracing::info!(auto_shutdown = ?self.options.auto_shutdown, "significant children ended: auto-shutdown");
                self.shutdown_self(myself, StopPurpose::Shutdown).await;
            }
        }
        Ok(())
    }

    fn stopped_error(&self) -> SupervisorError {
        SupervisorError::SupervisorStopped {
            path: self.path().to_string(),
        }
    }

    async fn handle_msg(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                if self.shutting_down {
                    let _ = reply.send(Err(self.stopped_error()));
                    return Ok(());
                }
                let result = match self.add_child(spec) {
                    Err(e) => Err(e),
                    Ok(idx) => match self.start_child(idx, myself).await {
                        Ok(()) => Ok(()),
                        Err(error) => {
                            let path = self.children[idx].path.to_string();
                            self.remove_child(idx);
                            Err(SupervisorError::StartFailed { path, error })
                        }
                    },
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::TerminateChild(name, reply) => {
                let result = match self.find(&name) {
                    Err(e) => Err(e),
                    Ok(idx) => {
                        self.stop_child(idx, StopPurpose::Terminate).await;
                        let c = &mut self.children[idx];
                        c.pending = None;
                        c.ended = true;
                        c.spec.starter.slot().mark_stopped();
                        self.ctx.shared().registry.set_status(c.node, Status::Stopped);
                        if c.policy.restart == Restart::Temporary {
                            self.remove_child(idx);
                        }
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::RestartChild(name, reply) => {
                let result = match self.find(&name) {
                    Err(e) => Err(e),
                    Ok(idx) if self.children[idx].cell.is_some() => Err(SupervisorError::ChildRunning {
                        path: self.children[idx].path.to_string(),
                    }),
                    Ok(_) if self.shutting_down => Err(self.stopped_error()),
                    Ok(idx) => self
                        .start_child(idx, myself)
                        .await
                        .map_err(|error| SupervisorError::StartFailed {
                            path: self.children[idx].path.to_string(),
                            error,
                        }),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::DeleteChild(name, reply) => {
                let result = match self.find(&name) {
                    Err(e) => Err(e),
                    Ok(idx) if self.children[idx].cell.is_some() => Err(SupervisorError::ChildRunning {
                        path: self.children[idx].path.to_string(),
                    }),
                    Ok(idx) => {
                        self.remove_child(idx);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::WhichChildren(reply) => {
                let infos = self
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.spec.name.clone(),
                        path: c.path.to_string(),
                        kind: c.spec.kind.clone(),
                        running: c.cell.is_some(),
                        is_supervisor: c.spec.is_supervisor,
                        restart: c.policy.restart,
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            SupervisorMsg::CountChildren(reply) => {
                let supervisors = self.children.iter().filter(|c| c.spec.is_supervisor).count();
                let _ = reply.send(ChildCounts {
                    specs: self.children.len(),
                    active: self.children.iter().filter(|c| c.cell.is_some()).count(),
                    supervisors,
                    workers: self.children.len() - supervisors,
                });
            }
            SupervisorMsg::RestartDue { uids, generation } => {
                return self.restart_due(myself, uids, generation).await;
            }
            SupervisorMsg::Shutdown => {
                if !self.shutting_down {
                    self.shutdown_self(myself, StopPurpose::Shutdown).await;
                }
            }
        }
        Ok(())
    }
}

async fn stop_cell(cell: &ActorCell, shutdown: Shutdown, is_supervisor: bool) -> StopOutcome {
    let ask = || {
        if is_supervisor {
            let _ = cell.send_message(SupervisorMsg::Shutdown);
        } else {
            cell.stop(Some("shutdown".to_string()));
        }
    };
    match shutdown {
        Shutdown::Brutal => {
            cell.kill();
            let _ = cell.wait(None).await;
            StopOutcome::Killed { after: Duration::ZERO }
        }
        Shutdown::Timeout(limit) => {
            ask();
            if cell.wait(Some(limit)).await.is_ok() {
                StopOutcome::Clean
            } else {
                cell.kill();
                let _ = cell.wait(None).await;
                StopOutcome::Killed { after: limit }
            }
        }
        Shutdown::Infinity => {
            ask();
            let _ = cell.wait(None).await;
            StopOutcome::Clean
        }
    }
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let span = tracing::info_span!(parent: None, "uno.node", path = %args.ctx.path());
        let mut state = SupervisorState {
            options: args.options,
            defaults: args.defaults,
            ctx: args.ctx,
            is_root: args.is_root,
            span: span.clone(),
            children: Vec::new(),
            names: HashSet::new(),
            next_uid: 0,
            restarts: VecDeque::new(),
            generation: 0,
            shutting_down: false,
            stopping: HashMap::new(),
            timers: Vec::new(),
        };
        // A restarted supervisor starts from its spec: forget the previous incarnation's nodes.
        state.registry().remove_below(state.ctx.id());
        async {
            for spec in args.children {
                let started = match state.add_child(spec) {
                    Ok(idx) => state
                        .start_child(idx, &myself)
                        .await
                        .map_err(|error| SupervisorError::StartFailed {
                            path: state.children[idx].path.to_string(),
                            error,
                        }),
                    Err(e) => Err(e),
                };
                if let Err(e) = started {
                    state.shutting_down = true;
                    state.stop_all(StopPurpose::Shutdown).await;
                    return Err(Box::new(e) as ActorProcessingErr);
                }
            }
            Ok(())
        }
        .instrument(span)
        .await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        state.handle_msg(&myself, msg).instrument(span).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        let (id, exit) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell.get_id(), Exit::Normal(reason)),
            SupervisionEvent::ActorFailed(cell, error) => (cell.get_id(), Exit::Failed(error.to_string())),
            _ => return Ok(()),
        };
        state.on_exit(&myself, id, exit).instrument(span).await
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for t in state.timers.drain(..) {
            t.abort();
        }
        // Normally empty: every path that stops a supervisor stops its children first.
        for child in state.children.iter_mut().rev() {
            if let Some(cell) = child.cell.take() {
                cell.kill();
            }
        }
        state.ctx.cancel_token().cancel();
        Ok(())
    }
}

/// The stable address of a supervisor: manage its children at runtime (OTP's dynamic child
/// functions). Follows the supervisor across its restarts.
#[derive(Clone, Debug)]
pub struct SupervisorRef {
    inner: SupervisedRef<SupervisorMsg>,
}

impl SupervisorRef {
    pub(crate) fn new(inner: SupervisedRef<SupervisorMsg>) -> Self {
        Self { inner }
    }

    /// The supervisor's path, once started.
    pub fn path(&self) -> Option<String> {
        self.inner.path()
    }

    /// Whether the supervisor is running right now.
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    pub(crate) fn raw(&self) -> &SupervisedRef<SupervisorMsg> {
        &self.inner
    }

    fn map_ref_error(&self, e: RefError) -> SupervisorError {
        match e {
            RefError::NodeStopped { path } => SupervisorError::SupervisorStopped { path },
            other => SupervisorError::Unreachable(other),
        }
    }

    async fn request<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> SupervisorMsg,
    ) -> Result<R, SupervisorError> {
        self.inner.call(build).await.map_err(|e| self.map_ref_error(e))
    }

    /// Adds a child (worker or supervisor) and starts it.
    ///
    /// # Cancel safety
    /// If dropped after the request was sent, the child is still added and started.
    ///
    /// # Errors
    /// A [`SpecError`] for an invalid spec (empty or duplicate name, significant and
    /// permanent), [`SupervisorError::StartFailed`] when its `pre_start` fails (the child is
    /// then not added), [`SupervisorError::SupervisorStopped`] when the supervisor is gone.
    pub async fn start_child(&self, spec: impl Into<ChildSpec>) -> Result<(), SupervisorError> {
        let spec = spec.into();
        spec.validate(&self.path().unwrap_or_default())?;
        self.request(|r| SupervisorMsg::StartChild(spec, r)).await?
    }

    /// Adds a worker, starts it, and returns its stable address.
    ///
    /// # Cancel safety
    /// As [`start_child`](Self::start_child).
    ///
    /// # Errors
    /// As [`start_child`](Self::start_child).
    pub async fn start_worker<A: Actor>(&self, spec: WorkerSpec<A>) -> Result<SupervisedRef<A::Msg>, SupervisorError> {
        let reference = spec.reference();
        self.start_child(spec).await?;
        Ok(reference)
    }

    /// Adds a supervisor, starts it (and its children), and returns its stable address.
    ///
    /// # Cancel safety
    /// As [`start_child`](Self::start_child).
    ///
    /// # Errors
    /// As [`start_child`](Self::start_child).
    pub async fn start_supervisor(&self, spec: SupervisorSpec) -> Result<SupervisorRef, SupervisorError> {
        let reference = spec.reference();
        self.start_child(spec).await?;
        Ok(reference)
    }

    /// Stops a child (gracefully, per its shutdown) and keeps its spec; it is not restarted
    /// until [`restart_child`](Self::restart_child). A temporary child is removed.
    ///
    /// # Cancel safety
    /// If dropped after the request was sent, the child is still stopped.
    ///
    /// # Errors
    /// [`SupervisorError::NoSuchChild`], [`SupervisorError::SupervisorStopped`].
    pub async fn terminate_child(&self, name: &str) -> Result<(), SupervisorError> {
        let name = name.to_string();
        self.request(|r| SupervisorMsg::TerminateChild(name, r)).await?
    }

    /// Starts a terminated child again from its spec.
    ///
    /// # Cancel safety
    /// If dropped after the request was sent, the child is still started.
    ///
    /// # Errors
    /// [`SupervisorError::ChildRunning`] if it runs, [`SupervisorError::StartFailed`],
    /// [`SupervisorError::NoSuchChild`], [`SupervisorError::SupervisorStopped`].
    pub async fn restart_child(&self, name: &str) -> Result<(), SupervisorError> {
        let name = name.to_string();
        self.request(|r| SupervisorMsg::RestartChild(name, r)).await?
    }

    /// Removes the spec of a stopped child.
    ///
    /// # Cancel safety
    /// If dropped after the request was sent, the child is still removed.
    ///
    /// # Errors
    /// [`SupervisorError::ChildRunning`] if it runs, [`SupervisorError::NoSuchChild`],
    /// [`SupervisorError::SupervisorStopped`].
    pub async fn delete_child(&self, name: &str) -> Result<(), SupervisorError> {
        let name = name.to_string();
        self.request(|r| SupervisorMsg::DeleteChild(name, r)).await?
    }

    /// Every child, in start order.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// # Errors
    /// [`SupervisorError::SupervisorStopped`] when the supervisor is gone.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.request(SupervisorMsg::WhichChildren).await
    }

    /// Counts of children.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// # Errors
    /// [`SupervisorError::SupervisorStopped`] when the supervisor is gone.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.request(SupervisorMsg::CountChildren).await
    }
}
