//! Child specifications and the restart contract.
//!
//! A [`WorkerSpec`] describes one supervised ractor actor: its name (unique within its
//! supervisor, never a ractor registry name), the factory that builds a fresh actor and its
//! arguments on every (re)start, and its policy. A [`SupervisorSpec`] describes a supervisor and
//! its initial children. Policy fields left unset are inherited from the enclosing supervisor's
//! [`ChildDefaults`], recursively; the effective policy of every node is shown in the tree.
//!
//! ```
//! use std::time::Duration;
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//! use uno_actors::{Intensity, Restart, Shutdown, Strategy, SupervisorSpec, WorkerSpec};
//!
//! struct Echo;
//! impl Actor for Echo {
//!     type Msg = String;
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<String>, _: ()) -> Result<(), ActorProcessingErr> {
//!         Ok(())
//!     }
//! }
//!
//! let worker = WorkerSpec::new("echo", |_ctx| (Echo, ()))
//!     .restart(Restart::Transient)
//!     .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
//! let echo = worker.reference(); // usable before the spawn; follows every restart
//! let sup = SupervisorSpec::new("workers")
//!     .strategy(Strategy::OneForAll)
//!     .intensity(Intensity::new(3, Duration::from_secs(10)).unwrap())
//!     .child(worker);
//! assert_eq!(sup.name(), "workers");
//! # let _ = echo;
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, SpawnErr};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::context::ChildContext;
use crate::error::SpecError;
use crate::handle::{Slot, SlotControl, SupervisedRef};
use crate::supervisor::{SupervisorActor, SupervisorArgs, SupervisorMsg, SupervisorRef};
use crate::tree::NodeKind;

/// When a terminated child is restarted (OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Restart {
    /// Always restarted, whatever the exit.
    Permanent,
    /// Restarted only after an abnormal exit (an error, a panic, or a kill it did not ask for).
    Transient,
    /// Never restarted, not even when a sibling's failure restarts the group; removed once it ends.
    Temporary,
}

/// How a child is stopped (OTP shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shutdown {
    /// Killed at once (its token is cancelled first).
    Brutal,
    /// Its token is cancelled and it is asked to stop; killed if still running after the timeout.
    Timeout(Duration),
    /// Its token is cancelled and it is asked to stop; waited for as long as it takes.
    /// The default for supervisors.
    Infinity,
}

/// Which siblings a failure restarts (OTP strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the failed child is restarted.
    #[default]
    OneForOne,
    /// Every other child is stopped (reverse start order), then all are restarted (start order).
    OneForAll,
    /// The children started after the failed one are stopped (reverse order), then the failed
    /// one and those are restarted (start order).
    RestForOne,
}

/// When a supervisor stops itself because significant children ended (OTP 24 auto_shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AutoShutdown {
    /// Never: significant children are ignored.
    #[default]
    Never,
    /// When any significant child ends without being restarted.
    AnySignificant,
    /// When every significant child has ended without being restarted.
    AllSignificant,
}

/// Restart intensity: more than `max_restarts` restarts within `period` makes the supervisor
/// give up (escalate to its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Intensity {
    max_restarts: u32,
    period: Duration,
}

impl Default for Intensity {
    /// OTP's default: 1 restart in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 1,
            period: Duration::from_secs(5),
        }
    }
}

impl Intensity {
    /// At most `max_restarts` restarts within any `period`.
    ///
    /// # Errors
    /// [`SpecError::ZeroPeriod`] when `period` is zero.
    pub fn new(max_restarts: u32, period: Duration) -> Result<Self, SpecError> {
        if period.is_zero() {
            return Err(SpecError::ZeroPeriod { max_restarts });
        }
        Ok(Self { max_restarts, period })
    }

    /// The number of restarts allowed within the period.
    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The sliding window.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// Restart backoff (as Akka's `restartWithBackoff`): the delay before the n-th consecutive
/// restart follows `backoff`; once a child has stayed up for `reset_after`, its count resets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RestartBackoff {
    /// The delay policy (min, max, jitter).
    pub backoff: Backoff,
    /// Uptime after which the failure count goes back to zero.
    pub reset_after: Duration,
}

impl Default for RestartBackoff {
    /// Exponential 100 ms to 10 s with 0.2 jitter, reset after 30 s up.
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl RestartBackoff {
    /// Restart at once, every time.
    pub fn immediate() -> Self {
        Self {
            backoff: Backoff::none(),
            reset_after: Duration::ZERO,
        }
    }

    /// Exponential backoff from `min` to `max` with a jitter factor (0..=1) and a reset.
    ///
    /// # Errors
    /// [`SpecError::Backoff`] when `min > max` or `jitter` is outside `0..=1`.
    pub fn exponential(min: Duration, max: Duration, jitter: f64, reset_after: Duration) -> Result<Self, SpecError> {
        Ok(Self {
            backoff: Backoff::exponential(min, max)?.with_jitter(jitter)?,
            reset_after,
        })
    }
}

/// Policy defaults a supervisor applies to children whose spec leaves them unset. Unset here
/// means "inherit from my own supervisor".
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChildDefaults {
    /// Default restart type (built-in: `Permanent`).
    pub restart: Option<Restart>,
    /// Default shutdown for worker children (built-in: 5 s). Supervisors default to `Infinity`.
    pub shutdown: Option<Shutdown>,
    /// Default restart backoff (built-in: [`RestartBackoff::default`]).
    pub backoff: Option<RestartBackoff>,
}

/// Fully resolved defaults, passed down the tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ResolvedDefaults {
    pub restart: Restart,
    pub shutdown: Shutdown,
    pub backoff: RestartBackoff,
}

impl Default for ResolvedDefaults {
    fn default() -> Self {
        Self {
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            backoff: RestartBackoff::default(),
        }
    }
}

impl ResolvedDefaults {
    pub(crate) fn overridden_by(self, d: &ChildDefaults) -> Self {
        Self {
            restart: d.restart.unwrap_or(self.restart),
            shutdown: d.shutdown.unwrap_or(self.shutdown),
            backoff: d.backoff.unwrap_or(self.backoff),
        }
    }
}

/// What starting a child needs from its supervisor.
pub(crate) struct StartArgs {
    pub ctx: ChildContext,
    pub parent: ActorCell,
    pub inherited: ResolvedDefaults,
}

/// Builds and spawns one incarnation of a child, and controls its stable address.
pub(crate) trait Starter: Send + Sync + 'static {
    fn start(&self, args: StartArgs) -> BoxFuture<'static, Result<ActorCell, SpawnErr>>;
    fn slot(&self) -> &dyn SlotControl;
    /// Validates what this child would start below itself (a supervisor's children).
    fn validate_below(&self, _path: &str) -> Result<(), SpecError> {
        Ok(())
    }
}

struct WorkerStarter<A: Actor, F> {
    factory: F,
    slot: Arc<Slot<A::Msg>>,
}

impl<A, F> Starter for WorkerStarter<A, F>
where
    A: Actor,
    F: Fn(&ChildContext) -> (A, A::Arguments) + Send + Sync + 'static,
{
    fn start(&self, args: StartArgs) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let (actor, arguments) = (self.factory)(&args.ctx);
        let slot = self.slot.clone();
        let path = args.ctx.path().to_string();
        let exited = args.ctx.manager_exited();
        Box::pin(async move {
            let (actor_ref, _join) = Actor::spawn_linked(None, actor, arguments, args.parent).await?;
            slot.set_running(path, actor_ref.clone(), exited);
            Ok(actor_ref.get_cell())
        })
    }

    fn slot(&self) -> &dyn SlotControl {
        &*self.slot
    }
}

struct SupervisorStarter {
    spec: SupervisorSpec,
}

impl Starter for SupervisorStarter {
    fn start(&self, args: StartArgs) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let slot = self.spec.slot.clone();
        let path = args.ctx.path().to_string();
        let exited = args.ctx.manager_exited();
        let sup_args = SupervisorArgs {
            options: self.spec.options.clone(),
            children: self.spec.children.clone(),
            defaults: args.inherited.overridden_by(&self.spec.options.defaults),
            ctx: args.ctx,
            is_root: false,
        };
        Box::pin(async move {
            let (actor_ref, _join) = Actor::spawn_linked(None, SupervisorActor, sup_args, args.parent).await?;
            slot.set_running(path, actor_ref.clone(), exited);
            Ok(actor_ref.get_cell())
        })
    }

    fn slot(&self) -> &dyn SlotControl {
        &*self.spec.slot
    }

    fn validate_below(&self, path: &str) -> Result<(), SpecError> {
        self.spec.validate_children(path)
    }
}

/// A type-erased child specification, as a supervisor stores it. Made from a [`WorkerSpec`] or a
/// [`SupervisorSpec`] with `into()`. Cheap to clone: a supervisor that restarts rebuilds its
/// children from these.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) restart: Option<Restart>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) backoff: Option<RestartBackoff>,
    pub(crate) significant: bool,
    pub(crate) is_supervisor: bool,
    pub(crate) supervisor: Option<(Strategy, Intensity, AutoShutdown)>,
    pub(crate) starter: Arc<dyn Starter>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("significant", &self.significant)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this child is a supervisor.
    pub fn is_supervisor(&self) -> bool {
        self.is_supervisor
    }

    pub(crate) fn validate(&self, parent: &str) -> Result<(), SpecError> {
        if self.name.is_empty() {
            return Err(SpecError::EmptyName {
                parent: parent.to_string(),
            });
        }
        if self.name.contains('/') {
            return Err(SpecError::InvalidName {
                name: self.name.clone(),
                parent: parent.to_string(),
            });
        }
        if self.significant && self.restart == Some(Restart::Permanent) {
            return Err(SpecError::SignificantPermanent {
                name: self.name.clone(),
            });
        }
        self.starter.validate_below(&format!("{parent}/{}", self.name))
    }
}

/// The spec of one supervised worker: a plain ractor actor built by a factory on every start.
pub struct WorkerSpec<A: Actor> {
    spec: ChildSpec,
    slot: Arc<Slot<A::Msg>>,
}

impl<A: Actor> WorkerSpec<A> {
    /// A worker named `name` (unique within its supervisor) whose actor and arguments are built
    /// by `factory` on every start, with the node's [`ChildContext`].
    pub fn new<F>(name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&ChildContext) -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let name = name.into();
        let slot = Arc::new(Slot::new(name.clone()));
        let starter = Arc::new(WorkerStarter::<A, F> {
            factory,
            slot: slot.clone(),
        });
        Self {
            spec: ChildSpec {
                name,
                kind: NodeKind::Worker,
                restart: None,
                shutdown: None,
                backoff: None,
                significant: false,
                is_supervisor: false,
                supervisor: None,
                starter,
            },
            slot,
        }
    }

    /// Sets the restart type (else inherited).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.spec.restart = Some(restart);
        self
    }

    /// Sets how the worker is stopped (else inherited; built-in 5 s).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.spec.shutdown = Some(shutdown);
        self
    }

    /// Sets the restart backoff (else inherited).
    pub fn backoff(mut self, backoff: RestartBackoff) -> Self {
        self.spec.backoff = Some(backoff);
        self
    }

    /// Marks the worker significant for its supervisor's [`AutoShutdown`].
    pub fn significant(mut self, significant: bool) -> Self {
        self.spec.significant = significant;
        self
    }

    /// Sets the node kind label shown in the tree (default [`NodeKind::Worker`]).
    pub fn kind(mut self, kind: NodeKind) -> Self {
        self.spec.kind = kind;
        self
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The stable address of this worker. It can be taken before the spec is spawned; it
    /// follows every restart.
    pub fn reference(&self) -> SupervisedRef<A::Msg> {
        SupervisedRef::new(self.slot.clone())
    }
}

impl<A: Actor> From<WorkerSpec<A>> for ChildSpec {
    fn from(w: WorkerSpec<A>) -> Self {
        w.spec
    }
}

/// Options of a supervisor (everything but its children).
#[derive(Debug, Clone)]
pub(crate) struct SupervisorOptions {
    pub name: String,
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub auto_shutdown: AutoShutdown,
    pub defaults: ChildDefaults,
    pub kind: NodeKind,
}

/// The spec of a supervisor and its initial children (started in order, stopped in reverse).
#[derive(Clone)]
pub struct SupervisorSpec {
    pub(crate) options: SupervisorOptions,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) restart: Option<Restart>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) backoff: Option<RestartBackoff>,
    pub(crate) significant: bool,
    pub(crate) slot: Arc<Slot<SupervisorMsg>>,
}

impl std::fmt::Debug for SupervisorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorSpec")
            .field("options", &self.options)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl SupervisorSpec {
    /// A `OneForOne` supervisor with OTP's default intensity (1 in 5 s) and no children.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            slot: Arc::new(Slot::new(name.clone())),
            options: SupervisorOptions {
                name,
                strategy: Strategy::OneForOne,
                intensity: Intensity::default(),
                auto_shutdown: AutoShutdown::Never,
                defaults: ChildDefaults::default(),
                kind: NodeKind::Supervisor,
            },
            children: Vec::new(),
            restart: None,
            shutdown: None,
            backoff: None,
            significant: false,
        }
    }

    /// Sets the restart strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.options.strategy = strategy;
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.options.intensity = intensity;
        self
    }

    /// Sets when the supervisor stops itself after significant children end.
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.options.auto_shutdown = auto_shutdown;
        self
    }

    /// Sets the defaults its children (and, recursively, theirs) inherit.
    pub fn defaults(mut self, defaults: ChildDefaults) -> Self {
        self.options.defaults = defaults;
        self
    }

    /// Sets the kind label shown in the tree (default [`NodeKind::Supervisor`]).
    pub fn kind(mut self, kind: NodeKind) -> Self {
        self.options.kind = kind;
        self
    }

    /// Adds a child, started after those added before it.
    pub fn child(mut self, child: impl Into<ChildSpec>) -> Self {
        self.children.push(child.into());
        self
    }

    /// Sets this supervisor's own restart type, as a child of its parent (else inherited).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Sets how its parent stops it (default `Infinity`).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Sets this supervisor's own restart backoff, as a child of its parent (else inherited).
    pub fn backoff(mut self, backoff: RestartBackoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Marks this supervisor significant for its parent's [`AutoShutdown`].
    pub fn significant(mut self, significant: bool) -> Self {
        self.significant = significant;
        self
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The stable address of this supervisor (follows its restarts).
    pub fn reference(&self) -> SupervisorRef {
        SupervisorRef::new(SupervisedRef::new(self.slot.clone()))
    }

    /// Checks its children's names (non-empty, no '/', unique among siblings) and
    /// significance, recursively.
    pub(crate) fn validate_children(&self, path: &str) -> Result<(), SpecError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.children {
            c.validate(path)?;
            if !seen.insert(c.name.as_str()) {
                return Err(SpecError::DuplicateName {
                    name: c.name.clone(),
                    parent: path.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl From<SupervisorSpec> for ChildSpec {
    fn from(s: SupervisorSpec) -> Self {
        ChildSpec {
            name: s.options.name.clone(),
            kind: s.options.kind.clone(),
            restart: s.restart,
            shutdown: s.shutdown,
            backoff: s.backoff,
            significant: s.significant,
            is_supervisor: true,
            supervisor: Some((s.options.strategy, s.options.intensity, s.options.auto_shutdown)),
            starter: Arc::new(SupervisorStarter { spec: s }),
        }
    }
}
