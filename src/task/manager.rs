//! [`TaskManager`]: named groups of tasks in the supervision tree, a listing of what runs, and
//! an optional concurrency cap served by priority with aging.
//!
//! Each group is a node of kind `task_group` under the manager's root, and each task a leaf
//! under its group while it runs. A task spawned through the manager is cancelled by
//! [`cancel_all`](TaskManager::cancel_all), by [`cancel_group`](TaskManager::cancel_group), by
//! its own handle, or when the tree shuts down; on cancellation its future is dropped.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::task::{Priority, TaskManager, TaskManagerConfig};
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let tasks = TaskManager::start(&manager, TaskManagerConfig::default()).await.unwrap();
//! tasks.create_group("reports").await.unwrap();
//! let report = tasks
//!     .spawn_in("reports", "daily", Priority::HIGH, async { Ok::<_, std::io::Error>(7) })
//!     .unwrap();
//! let idle = tasks.spawn("idle", std::future::pending::<Result<(), std::io::Error>>()).unwrap();
//! assert_eq!(report.await.unwrap(), 7);
//! let listing = tasks.tasks();
//! assert_eq!((listing[0].name.as_str(), listing[0].group.as_str()), ("idle", "default"));
//! tasks.cancel_all();
//! assert!(idle.await.unwrap_err().is_cancelled());
//! manager.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uno_actors::{AsyncManager, ChildContext, NodeKind, Restart, Shutdown, WorkerSpec};

use super::error::{from_join_error, panic_message, BoxError, TaskError};
use super::group::GroupActor;
use super::priority::{Priority, PriorityGate, DEFAULT_AGING};

/// The name of the group [`TaskManager::spawn`] uses.
pub const DEFAULT_GROUP: &str = "default";

/// Configuration of a [`TaskManager`].
#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// At most this many tasks of the manager run at once (all groups together); the others
    /// wait and start by aged priority. `None` (default): no cap.
    pub limit: Option<usize>,
    /// How long a waiting task waits to gain one priority level (default 100 ms).
    pub aging: Duration,
}

impl Default for TaskManagerConfig {
    fn default() -> Self {
        Self {
            limit: None,
            aging: DEFAULT_AGING,
        }
    }
}

/// Whether a listed task runs or waits for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a slot under the manager's concurrency cap.
    Waiting,
    /// Running.
    Running,
}

/// One task in [`TaskManager::tasks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Its priority.
    pub priority: Priority,
    /// Waiting or running.
    pub status: TaskStatus,
    /// Time since it was spawned.
    pub age: Duration,
}

struct Record {
    name: Arc<str>,
    group: Arc<str>,
    priority: Priority,
    spawned_at: Instant,
    running: AtomicBool,
    token: CancellationToken,
}

struct Group {
    ctx: ChildContext,
    token: CancellationToken,
}

struct Inner {
    manager: AsyncManager,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    tasks: DashMap<u64, Arc<Record>>,
    next: AtomicU64,
    gate: Option<Arc<PriorityGate>>,
}

/// Named task groups under one supervision tree. Cheap to clone.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager")
            .field("tasks", &self.inner.tasks.len())
            .finish()
    }
}

/// Removes a task from the listing when it ends, however it ends.
struct Listed {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.inner.tasks.remove(&self.id);
    }
}

/// A task spawned through a [`TaskManager`]: await it for its result. Dropping the handle
/// does not stop the task (the manager still tracks and can cancel it).
#[derive(Debug)]
pub struct ManagedTask<T> {
    name: Arc<str>,
    token: CancellationToken,
    handle: JoinHandle<Result<T, TaskError>>,
}

impl<T> ManagedTask<T> {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancels the task: its future is dropped and its result is [`TaskError::Cancelled`].
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<T> Future for ManagedTask<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name.clone();
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|e| Err(from_join_error(&name, e))))
    }
}

impl TaskManager {
    /// Creates a task manager on `manager`, with its default group.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped mid-way, the default group's node may stay in the tree.
    ///
    /// # Errors
    /// [`TaskError::ZeroLimit`] for a limit of 0; [`TaskError::Supervisor`] when the default
    /// group's node cannot be started.
    pub async fn start(manager: &AsyncManager, config: TaskManagerConfig) -> Result<Self, TaskError> {
        let gate = match config.limit {
            Some(0) => {
                return Err(TaskError::ZeroLimit {
                    owner: "task manager".to_string(),
                })
            }
            Some(n) => Some(PriorityGate::new(n, config.aging)),
            None => None,
        };
        let tm = Self {
            inner: Arc::new(Inner {
                manager: manager.clone(),
                groups: Mutex::new(HashMap::new()),
                tasks: DashMap::new(),
                next: AtomicU64::new(0),
                gate,
            }),
        };
        tm.create_group(DEFAULT_GROUP).await?;
        Ok(tm)
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Group>>> {
        self.inner.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a named group: a `task_group` node under the root.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped after the node was started, the name stays taken.
    ///
    /// # Errors
    /// [`TaskError::DuplicateGroup`] when the name is taken; [`TaskError::Supervisor`] when its
    /// node cannot be started.
    pub async fn create_group(&self, name: &str) -> Result<(), TaskError> {
        if self.groups().contains_key(name) {
            return Err(TaskError::DuplicateGroup {
                group: name.to_string(),
            });
        }
        let cell: Arc<OnceLock<ChildContext>> = Arc::new(OnceLock::new());
        let slot = cell.clone();
        let spec = WorkerSpec::new(name, move |ctx: &ChildContext| {
            let _ = slot.set(ctx.clone());
            (GroupActor, ())
        })
        .kind(NodeKind::TaskGroup)
        .restart(Restart::Temporary)
        .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
        let supervisor = |source| TaskError::Supervisor {
            name: name.to_string(),
            source,
        };
        self.inner.manager.spawn(spec).await.map_err(supervisor)?;
        let Some(ctx) = cell.get().cloned() else {
            return Err(TaskError::Cancelled { task: name.to_string() });
        };
        let group = Arc::new(Group {
            token: ctx.cancel_token().clone(),
            ctx,
        });
        let mut groups = self.groups();
        if groups.contains_key(name) {
            return Err(TaskError::DuplicateGroup {
                group: name.to_string(),
            });
        }
        groups.insert(name.to_string(), group);
        Ok(())
    }

    /// The names of the groups, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups().keys().cloned().collect();
        names.sort();
        names
    }

    /// Spawns a task into the default group, at [`Priority::NORMAL`].
    ///
    /// # Errors
    /// As [`spawn_in`](Self::spawn_in).
    pub fn spawn<T, E, F>(&self, name: &str, future: F) -> Result<ManagedTask<T>, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.spawn_in(DEFAULT_GROUP, name, Priority::NORMAL, future)
    }

    /// Spawns a task into `group`. Under a concurrency cap it waits for a slot, and slots go
    /// by priority with aging.
    ///
    /// # Errors
    /// [`TaskError::NoSuchGroup`] for an unknown group.
    pub fn spawn_in<T, E, F>(
        &self,
        group: &str,
        name: &str,
        priority: Priority,
        future: F,
    ) -> Result<ManagedTask<T>, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let Some(g) = self.groups().get(group).cloned() else {
            return Err(TaskError::NoSuchGroup {
                group: group.to_string(),
            });
        };
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = name.into();
        let token = g.token.child_token();
        let record = Arc::new(Record {
            name: name.clone(),
            group: group.into(),
            priority,
            spawned_at: Instant::now(),
            running: AtomicBool::new(false),
            token: token.clone(),
        });
        self.inner.tasks.insert(id, record.clone());
        let listed = Listed {
            inner: self.inner.clone(),
            id,
        };
        let gate = self.inner.gate.clone();
        let leaf = g.ctx.add_leaf(&name, NodeKind::Task);
        let task_token = token.clone();
        let task_name = name.clone();
        let handle = tokio::spawn(async move {
            let _listed = listed;
            let cancelled = || TaskError::Cancelled {
                task: task_name.to_string(),
            };
            let _permit = match gate {
                Some(g) => tokio::select! {
                    biased;
                    _ = task_token.cancelled() => return Err(cancelled()),
                    p = g.acquire(priority) => Some(p),
                },
                None => None,
            };
            record.running.store(true, Ordering::Release);
            leaf.running();
            let result = tokio::select! {
                biased;
                _ = task_token.cancelled() => Err(cancelled()),
                r = AssertUnwindSafe(future).catch_unwind() => match r {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(TaskError::Failed { task: task_name.to_string(), source: e.into() }),
                    Err(p) => Err(TaskError::Panicked { task: task_name.to_string(), message: panic_message(&*p) }),
                },
            };
            result
        });
        Ok(ManagedTask { name, token, handle })
    }

    /// The tasks that are waiting or running, in spawn order.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let now = Instant::now();
        let mut list: Vec<(u64, TaskInfo)> = self
            .inner
            .tasks
            .iter()
            .map(|r| {
                (
                    *r.key(),
                    TaskInfo {
                        name: r.name.to_string(),
                        group: r.group.to_string(),
                        priority: r.priority,
                        status: if r.running.load(Ordering::Acquire) {
                            TaskStatus::Running
                        } else {
                            TaskStatus::Waiting
                        },
                        age: now.duration_since(r.spawned_at),
                    },
                )
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, t)| t).collect()
    }

    /// Cancels every task spawned so far; the manager and its groups stay usable.
    pub fn cancel_all(&self) {
        for r in self.inner.tasks.iter() {
            r.token.cancel();
        }
    }

    /// Cancels every task of one group.
    ///
    /// # Errors
    /// [`TaskError::NoSuchGroup`] for an unknown group.
    pub fn cancel_group(&self, group: &str) -> Result<(), TaskError> {
        if !self.groups().contains_key(group) {
            return Err(TaskError::NoSuchGroup {
                group: group.to_string(),
            });
        }
        for r in self.inner.tasks.iter().filter(|r| &*r.group == group) {
            r.token.cancel();
        }
        Ok(())
    }
}
