//! Tasks: structured groups of short tasks, one-off tasks with limits, long-lived supervised
//! tasks, and a manager of named groups.
//!
//! * [`TaskGroup`]: spawn, then `join` in spawn order; fail-fast or collect-all; no orphans.
//! * [`run_task`] / [`run_tasks`]: one future (or many) with a timeout and typed errors.
//! * [`spawn_task`] / [`as_task`]: a long-lived task as a supervised actor, restarted with
//!   backoff, rebuilt from its factory on every restart.
//! * [`TaskManager`]: named groups, a default group, a listing, `cancel_all`, and a
//!   concurrency cap with [priorities and aging](priority).
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use uno_runtime::task::{run_task, TaskGroup};
//!
//! let mut group = TaskGroup::<u32>::new("squares");
//! for i in 0..4u32 {
//!     group.spawn(&format!("square-{i}"), async move { Ok::<_, std::io::Error>(i * i) }).unwrap();
//! }
//! assert_eq!(group.join().await.unwrap(), [0, 1, 4, 9]);
//! assert_eq!(run_task("one", async { Ok::<_, std::io::Error>(1) }, None).await.unwrap(), 1);
//! # }
//! ```

pub mod error;
pub mod group;
pub mod priority;
pub mod run;

pub use error::{BoxError, TaskError};
pub use group::{GroupMode, TaskGroup, TaskGroupBuilder, TaskHandle};
pub use priority::Priority;
pub use run::{run_task, run_task_cancellable, run_tasks, ReturnWhen};
pub mod supervised;

pub use supervised::{as_task, spawn_task, TaskActor, TaskMsg, TaskRef, TaskState};
pub mod manager;

pub use manager::{ManagedTask, TaskInfo, TaskManager, TaskManagerConfig, TaskStatus, DEFAULT_GROUP};
