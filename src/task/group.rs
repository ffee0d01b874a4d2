//! [`TaskGroup`]: structured concurrency for short tasks.
//!
//! A group runs tasks as tokio tasks and owns them: [`join`](TaskGroup::join) waits for every
//! one and returns their results in spawn order, and nothing a group started outlives it.
//!
//! * **Fail-fast** (the default): the first failure (an error or a panic) cancels the group's
//!   token. Tasks spawned with [`spawn`](TaskGroup::spawn) are dropped at their current await
//!   point; tasks spawned with [`spawn_with`](TaskGroup::spawn_with) see the token and get the
//!   group's grace period to wind down, after which they are aborted.
//! * **Collect-all**: failures do not affect siblings; `join` still reports them.
//! * `join` returns `Ok` with every value in spawn order, or a [`TaskError::Group`] carrying the
//!   first failure (in time) with every other failure attached.
//! * A group is single use: spawning after `join` is a [`TaskError::GroupClosed`].
//! * Dropping a group that was not joined cancels and aborts its tasks.
//! * Started in a supervision tree ([`TaskGroupBuilder::start`]), the group is a node of kind
//!   `task_group` and each of its tasks a leaf with name, status and age; no actor per task.
//!   The group's token is a child of its node's, so stopping the node's ancestors (or a manager
//!   shutdown) cancels the tasks.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::task::{TaskError, TaskGroup};
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let mut group = TaskGroup::<u32>::builder("fetch").start(&manager).await.unwrap();
//! group.spawn("fast", async { Ok::<_, std::io::Error>(1) }).unwrap();
//! group.spawn("broken", async { Err(std::io::Error::other("boom")) }).unwrap();
//! group.spawn("slow", async {
//!     tokio::time::sleep(Duration::from_secs(3600)).await; // cancelled by the failure
//!     Ok::<_, std::io::Error>(3)
//! }).unwrap();
//! match group.join().await {
//!     Err(TaskError::Group { first, cancelled, .. }) => {
//!         assert_eq!(first.name(), "broken");
//!         assert_eq!(cancelled, 1);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! manager.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uno_actors::{AsyncManager, ChildContext, LeafNode, NodeKind, Restart, Shutdown, SupervisorRef, WorkerSpec};

use super::error::{panic_message, BoxError, TaskError};
use super::priority::{Priority, PriorityGate, DEFAULT_AGING};

/// How a group reacts to a failing task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupMode {
    /// The first failure cancels every sibling (the default).
    #[default]
    FailFast,
    /// Failures do not affect siblings; every task runs to its end.
    CollectAll,
}

/// The default grace period cancelled tasks get before they are aborted.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Configuration of a [`TaskGroup`].
#[derive(Debug, Clone)]
pub struct TaskGroupBuilder {
    name: String,
    mode: GroupMode,
    grace: Duration,
    limit: Option<usize>,
    aging: Duration,
}

impl TaskGroupBuilder {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mode: GroupMode::FailFast,
            grace: DEFAULT_GRACE,
            limit: None,
            aging: DEFAULT_AGING,
        }
    }

    /// Fail-fast (default) or collect-all.
    pub fn mode(mut self, mode: GroupMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long cancelled tasks may take to stop before they are aborted (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// At most `limit` tasks run at once; the others wait and start by aged priority.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// How long a waiting task waits to gain one priority level (default 100 ms).
    pub fn aging(mut self, aging: Duration) -> Self {
        self.aging = aging;
        self
    }

    fn gate(&self) -> Result<Option<Arc<PriorityGate>>, TaskError> {
        match self.limit {
            Some(0) => Err(TaskError::ZeroLimit {
                owner: self.name.clone(),
            }),
            Some(n) => Ok(Some(PriorityGate::new(n, self.aging))),
            None => Ok(None),
        }
    }

    fn assemble<T>(
        self,
        gate: Option<Arc<PriorityGate>>,
        node: Option<Node>,
        token: CancellationToken,
    ) -> TaskGroup<T> {
        TaskGroup {
            shared: Arc::new(Shared {
                name: self.name,
                mode: self.mode,
                token,
                first_failure: AtomicUsize::new(usize::MAX),
            }),
            grace: self.grace,
            gate,
            entries: Mutex::new(Entries {
                closed: false,
                list: Vec::new(),
            }),
            node,
        }
    }

    /// A group outside any supervision tree (it shows in no tree).
    ///
    /// # Errors
    /// [`TaskError::ZeroLimit`] for a limit of 0.
    pub fn detached<T>(self) -> Result<TaskGroup<T>, TaskError> {
        let gate = self.gate()?;
        Ok(self.assemble(gate, None, CancellationToken::new()))
    }

    /// Starts the group as a node under the manager's root.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped after the node was started, the node stays in the tree until
    /// the manager shuts down.
    ///
    /// # Errors
    /// [`TaskError::ZeroLimit`] for a limit of 0; [`TaskError::Supervisor`] when the node
    /// cannot be started (manager stopped, a sibling of the same name).
    pub async fn start<T>(self, manager: &AsyncManager) -> Result<TaskGroup<T>, TaskError> {
        let root = manager.root().map_err(|source| TaskError::Supervisor {
            name: self.name.clone(),
            source,
        })?;
        self.start_in(&root).await
    }

    /// Starts the group as a node under `parent`.
    ///
    /// # Cancel safety
    /// As [`start`](Self::start).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_in<T>(self, parent: &SupervisorRef) -> Result<TaskGroup<T>, TaskError> {
        let gate = self.gate()?;
        let cell: Arc<OnceLock<ChildContext>> = Arc::new(OnceLock::new());
        let slot = cell.clone();
        let spec = WorkerSpec::new(self.name.clone(), move |ctx: &ChildContext| {
            let _ = slot.set(ctx.clone());
            (GroupActor, ())
        })
        .kind(NodeKind::TaskGroup)
        .restart(Restart::Temporary)
        .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
        parent
            .start_worker(spec)
            .await
            .map_err(|source| TaskError::Supervisor {
                name: self.name.clone(),
                source,
            })?;
        let Some(ctx) = cell.get().cloned() else {
            return Err(TaskError::Cancelled { task: self.name });
        };
        let token = ctx.cancel_token().child_token();
        let node = Node {
            parent: parent.clone(),
            ctx,
        };
        Ok(self.assemble(gate, Some(node), token))
    }
}

/// The group's node: a memberless actor whose context carries the tasks' leaves.
pub(crate) struct GroupActor;

impl Actor for GroupActor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

struct Node {
    parent: SupervisorRef,
    ctx: ChildContext,
}

struct Shared {
    name: String,
    mode: GroupMode,
    token: CancellationToken,
    first_failure: AtomicUsize,
}

impl Shared {
    fn failed(&self, index: usize) {
        let _ = self
            .first_failure
            .compare_exchange(usize::MAX, index, Ordering::AcqRel, Ordering::Acquire);
        if self.mode == GroupMode::FailFast {
            self.token.cancel();
        }
    }
}

type Output<T> = (Result<T, TaskError>, Option<LeafNode>);

struct Entry<T> {
    name: Arc<str>,
    handle: JoinHandle<Output<T>>,
}

struct Entries<T> {
    closed: bool,
    list: Vec<Entry<T>>,
}

/// A group of short tasks joined together. See the [module docs](self).
pub struct TaskGroup<T> {
    shared: Arc<Shared>,
    grace: Duration,
    gate: Option<Arc<PriorityGate>>,
    entries: Mutex<Entries<T>>,
    node: Option<Node>,
}

impl<T> std::fmt::Debug for TaskGroup<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskGroup")
            .field("name", &self.shared.name)
            .field("mode", &self.shared.mode)
            .field("tasks", &self.entries.lock().map_or(0, |e| e.list.len()))
            .finish()
    }
}

/// The handle of one task of a group.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    name: Arc<str>,
    index: usize,
    abort: AbortHandle,
}

impl TaskHandle {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its position in spawn order (its index in `join`'s results).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }

    /// Aborts this task alone; its result is [`TaskError::Cancelled`].
    pub fn abort(&self) {
        self.abort.abort();
    }
}

impl<T: Send + 'static> TaskGroup<T> {
    /// A detached, fail-fast group without limit (see [`TaskGroupBuilder::detached`]).
    pub fn new(name: impl Into<String>) -> Self {
        TaskGroupBuilder::new(name).assemble(None, None, CancellationToken::new())
    }

    /// Configures a group.
    pub fn builder(name: impl Into<String>) -> TaskGroupBuilder {
        TaskGroupBuilder::new(name)
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The group's cancellation token (cancelling it cancels every task).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// Cancels every task (as a fail-fast failure would).
    pub fn cancel(&self) {
        self.shared.token.cancel();
    }

    /// The group's path in the tree, if it was started in one.
    pub fn path(&self) -> Option<&str> {
        self.node.as_ref().map(|n| n.ctx.path())
    }

    /// How many tasks were spawned so far.
    pub fn len(&self) -> usize {
        self.lock().list.len()
    }

    /// Whether no task was spawned yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns a task. On cancellation (fail-fast, [`cancel`](Self::cancel), the node's
    /// cancellation) the future is dropped at its current await point.
    ///
    /// # Errors
    /// [`TaskError::GroupClosed`] after the group was joined.
    pub fn spawn<E, F>(&self, name: &str, future: F) -> Result<TaskHandle, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.spawn_inner(name, Priority::NORMAL, true, move |_| future)
    }

    /// Spawns a task with a priority (it matters when the group has a limit).
    ///
    /// # Errors
    /// [`TaskError::GroupClosed`] after the group was joined.
    pub fn spawn_with_priority<E, F>(&self, name: &str, priority: Priority, future: F) -> Result<TaskHandle, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.spawn_inner(name, priority, true, move |_| future)
    }

    /// Spawns a cooperative task: `make` gets a token cancelled with the group and the future
    /// is left to finish by itself; if it is still running a grace period after the
    /// cancellation, it is aborted. Its result after a cancellation is still what it returns.
    ///
    /// # Errors
    /// [`TaskError::GroupClosed`] after the group was joined.
    pub fn spawn_with<E, F, M>(&self, name: &str, make: M) -> Result<TaskHandle, TaskError>
    where
        M: FnOnce(CancellationToken) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.spawn_inner(name, Priority::NORMAL, false, make)
    }

    fn spawn_inner<E, F, M>(&self, name: &str, priority: Priority, race: bool, make: M) -> Result<TaskHandle, TaskError>
    where
        M: FnOnce(CancellationToken) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let mut entries = self.lock();
        if entries.closed {
            return Err(TaskError::GroupClosed {
                group: self.shared.name.clone(),
                task: name.to_string(),
            });
        }
        let index = entries.list.len();
        let name: Arc<str> = name.into();
        let shared = self.shared.clone();
        let leaf = self.node.as_ref().map(|n| n.ctx.add_leaf(&name, NodeKind::Task));
        let gate = self.gate.clone();
        let task_name = name.clone();
        let future = if race {
            make(self.shared.token.clone())
        } else {
            make(self.shared.token.child_token())
        };
        // Locks taken by the task record its leaf's path (or the spawner's node path).
        let node_path: Option<Arc<str>> = leaf
            .as_ref()
            .map(|l| Arc::from(l.path()))
            .or_else(crate::sync::current_node_path);
        let handle = tokio::spawn(async move {
            let token = &shared.token;
            let mut waited_out = false;
            let _permit = match gate {
                Some(g) => tokio::select! {
                    biased;
                    _ = token.cancelled() => {
                        waited_out = true;
                        None
                    }
                    p = g.acquire(priority) => Some(p),
                },
                None => None,
            };
            let result = if waited_out {
                Err(TaskError::Cancelled {
                    task: task_name.to_string(),
                })
            } else {
                if let Some(l) = &leaf {
                    l.running();
                }
                let future = async move {
                    match node_path {
                        Some(path) => crate::sync::scope_node_path(path, future).await,
                        None => future.await,
                    }
                };
                let run = AssertUnwindSafe(future).catch_unwind();
                let caught = if race {
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => None,
                        r = run => Some(r),
                    }
                } else {
                    Some(run.await)
                };
                match caught {
                    None => Err(TaskError::Cancelled {
                        task: task_name.to_string(),
                    }),
                    Some(Ok(Ok(v))) => Ok(v),
                    Some(Ok(Err(e))) => Err(TaskError::Failed {
                        task: task_name.to_string(),
                        source: e.into(),
                    }),
                    Some(Err(payload)) => Err(TaskError::Panicked {
                        task: task_name.to_string(),
                        message: panic_message(&*payload),
                    }),
                }
            };
            match &result {
                Ok(_) => {
                    if let Some(l) = &leaf {
                        l.stopped();
                    }
                }
                Err(e) => {
                    if e.is_failure() {
                        shared.failed(index);
                    }
                    if let Some(l) = &leaf {
                        l.failed(e.to_string());
                    }
                }
            }
            (result, leaf)
        });
        let abort = handle.abort_handle();
        entries.list.push(Entry {
            name: name.clone(),
            handle,
        });
        Ok(TaskHandle { name, index, abort })
    }
}

enum Event<O> {
    Done(O),
    Cancelled,
    GraceOver,
    Deadline,
}

/// Aborts every task still running when dropped (a `join` that is itself cancelled).
struct AbortAll<T>(Vec<Entry<T>>);

impl<T> Drop for AbortAll<T> {
    fn drop(&mut self) {
        for e in &self.0 {
            e.handle.abort();
        }
    }
}

impl<T: Send + 'static> TaskGroup<T> {
    /// Waits for every task and returns their values in spawn order.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future aborts the tasks still running and their results
    /// are lost; the group stays closed.
    ///
    /// # Errors
    /// [`TaskError::Group`] when any task failed (the first failure in time, with every other
    /// one attached and the number of cancelled tasks); [`TaskError::GroupClosed`] when the
    /// group was already joined.
    pub async fn join(&mut self) -> Result<Vec<T>, TaskError> {
        let results = self.collect(None).await?;
        self.values(results)
    }

    /// As [`join`](Self::join), bounded by `limit` for the whole group: past it, every task
    /// still running is cancelled and aborted.
    ///
    /// # Cancel safety
    /// As [`join`](Self::join).
    ///
    /// # Errors
    /// As [`join`](Self::join), and [`TaskError::GroupTimedOut`] naming the tasks that were
    /// still running at the limit.
    pub async fn join_timeout(&mut self, limit: Duration) -> Result<Vec<T>, TaskError> {
        let results = self.collect(Some(limit)).await?;
        self.values(results)
    }

    /// Waits for every task and returns each one's result in spawn order (useful with
    /// [`GroupMode::CollectAll`]).
    ///
    /// # Cancel safety
    /// As [`join`](Self::join).
    ///
    /// # Errors
    /// [`TaskError::GroupClosed`] when the group was already joined.
    pub async fn join_results(&mut self) -> Result<Vec<Result<T, TaskError>>, TaskError> {
        self.collect(None).await
    }

    fn values(&self, results: Vec<Result<T, TaskError>>) -> Result<Vec<T>, TaskError> {
        if results.iter().all(Result::is_ok) {
            return Ok(results.into_iter().flatten().collect());
        }
        let first_index = self.shared.first_failure.load(Ordering::Acquire);
        let first_index = match results.get(first_index) {
            Some(Err(e)) if e.is_failure() => first_index,
            _ => results
                .iter()
                .position(|r| matches!(r, Err(e) if e.is_failure()))
                .or_else(|| results.iter().position(Result::is_err))
                .unwrap_or_default(),
        };
        let mut first = None;
        let mut others = Vec::new();
        let mut cancelled = 0;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Err(e) if i == first_index => first = Some(e),
                Err(e) if e.is_cancelled() => cancelled += 1,
                Err(e) => others.push(e),
                Ok(_) => {}
            }
        }
        let first = first.unwrap_or_else(|| TaskError::Cancelled {
            task: self.shared.name.clone(),
        });
        Err(TaskError::Group {
            group: self.shared.name.clone(),
            first: Box::new(first),
            others,
            cancelled,
        })
    }

    async fn collect(&mut self, timeout: Option<Duration>) -> Result<Vec<Result<T, TaskError>>, TaskError> {
        let list = {
            let mut e = self.lock();
            if e.closed {
                return Err(TaskError::GroupClosed {
                    group: self.shared.name.clone(),
                    task: "(join)".to_string(),
                });
            }
            e.closed = true;
            std::mem::take(&mut e.list)
        };
        let mut tasks = AbortAll(list);
        let n = tasks.0.len();
        let deadline = timeout.map(|d| Instant::now() + d);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut grace_at: Option<Instant> = None;
        let mut aborted = false;
        let mut results = Vec::with_capacity(n);
        let mut leaves = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let ev = {
                let handle = &mut tasks.0[i].handle;
                if handle.is_finished() {
                    Event::Done(handle.await)
                } else {
                    let token = &self.shared.token;
                    tokio::select! {
                        biased;
                        r = handle => Event::Done(r),
                        _ = token.cancelled(), if grace_at.is_none() && !aborted => Event::Cancelled,
                        _ = tokio::time::sleep_until(grace_at.unwrap_or(far)), if grace_at.is_some() && !aborted => Event::GraceOver,
                        _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Event::Deadline,
                    }
                }
            };
            match ev {
                Event::Done(joined) => {
                    match joined {
                        Ok((r, leaf)) => {
                            results.push(r);
                            leaves.push(leaf);
                        }
                        Err(e) => results.push(Err(super::error::from_join_error(&tasks.0[i].name, e))),
                    }
                    i += 1;
                }
                Event::Cancelled => grace_at = Some(Instant::now() + self.grace),
                Event::GraceOver => {
                    aborted = true;
                    for e in &tasks.0[i..] {
                        e.handle.abort();
                    }
                }
                Event::Deadline => {
                    self.shared.token.cancel();
                    let pending: Vec<String> = tasks.0[i..]
                        .iter()
                        .filter(|e| !e.handle.is_finished())
                        .map(|e| e.name.to_string())
                        .collect();
                    for e in &tasks.0[i..] {
                        e.handle.abort();
                    }
                    for e in &mut tasks.0[i..] {
                        let _ = (&mut e.handle).await;
                    }
                    self.stop_node().await;
                    return Err(TaskError::GroupTimedOut {
                        group: self.shared.name.clone(),
                        limit: timeout.unwrap_or_default(),
                        pending,
                    });
                }
            }
        }
        // Remove the group's node (and with it every leaf at once) before the leaves drop.
        self.stop_node().await;
        drop(leaves);
        Ok(results)
    }

    async fn stop_node(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.parent.terminate_child(node.ctx.name()).await;
        }
    }
}

impl<T> Drop for TaskGroup<T> {
    fn drop(&mut self) {
        let entries = self.entries.get_mut().unwrap_or_else(|p| p.into_inner());
        if !entries.list.is_empty() {
            self.shared.token.cancel();
            for e in &entries.list {
                e.handle.abort();
            }
        }
        if let Some(node) = self.node.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let manager = node.ctx.manager();
                manager.spawn_cleanup("task group node", async move {
                    let _ = node.parent.terminate_child(node.ctx.name()).await;
                });
            }
        }
    }
}
