//! [`TaskError`]: how a task, a group of tasks or a task operation failed.
//!
//! Every variant names the task or group it is about, and the limit that was hit where there
//! is one, so that a log line alone says what went wrong.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::task::{run_task, TaskError};
//!
//! let err = run_task("slow", async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Ok::<_, std::io::Error>(())
//! }, Some(Duration::from_millis(10)))
//! .await
//! .unwrap_err();
//! assert!(matches!(err, TaskError::TimedOut { ref task, .. } if task == "slow"));
//! assert_eq!(err.to_string(), "task \"slow\" timed out after 10ms");
//! # }
//! ```

use std::any::Any;
use std::time::Duration;

use uno_actors::SupervisorError;

/// A boxed error, the failure type every task is reduced to.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the `task` module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task returned an error.
    #[error("task {task:?} failed: {source}")]
    Failed {
        /// The task's name.
        task: String,
        /// The error it returned.
        #[source]
        source: BoxError,
    },
    /// The task panicked.
    #[error("task {task:?} panicked: {message}")]
    Panicked {
        /// The task's name.
        task: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The task did not finish within its time limit and was aborted.
    #[error("task {task:?} timed out after {limit:?}")]
    TimedOut {
        /// The task's name.
        task: String,
        /// The limit it exceeded.
        limit: Duration,
    },
    /// The task was cancelled (its token was cancelled, it was aborted, or its runtime shut
    /// down) before it finished.
    #[error("task {task:?} was cancelled")]
    Cancelled {
        /// The task's name.
        task: String,
    },
    /// One or more tasks of a group failed: the first failure, with every other one attached.
    #[error(
        "task group {group:?}: {} task(s) failed, {cancelled} cancelled; first: {first}",
        .others.len() + 1
    )]
    Group {
        /// The group's name.
        group: String,
        /// The first failure (in completion order).
        #[source]
        first: Box<TaskError>,
        /// Every other failure, in spawn order.
        others: Vec<TaskError>,
        /// How many tasks were cancelled because of the failure (fail-fast).
        cancelled: usize,
    },
    /// A group did not finish within its join timeout; its remaining tasks were cancelled and
    /// aborted.
    #[error("task group {group:?} did not finish within {limit:?}; {} task(s) still running were aborted: {pending:?}", .pending.len())]
    GroupTimedOut {
        /// The group's name.
        group: String,
        /// The join timeout.
        limit: Duration,
        /// Names of the tasks that were still running.
        pending: Vec<String>,
    },
    /// A task was spawned into a group that has already been joined (groups are single use).
    #[error("task group {group:?} is closed (already joined): cannot spawn task {task:?}")]
    GroupClosed {
        /// The group's name.
        group: String,
        /// The task that was refused.
        task: String,
    },
    /// A task group of that name already exists.
    #[error("a task group named {group:?} already exists")]
    DuplicateGroup {
        /// The name.
        group: String,
    },
    /// No task group of that name.
    #[error("no task group named {group:?}")]
    NoSuchGroup {
        /// The name.
        group: String,
    },
    /// A concurrency limit of zero would never let a task start.
    #[error("the concurrency limit of {owner:?} must be at least 1 (got 0)")]
    ZeroLimit {
        /// The group or task manager it was configured for.
        owner: String,
    },
    /// The supervision tree refused to start the task's or group's node.
    #[error("could not start {name:?} in the supervision tree: {source}")]
    Supervisor {
        /// The task or group.
        name: String,
        /// The kernel's error.
        #[source]
        source: SupervisorError,
    },
}

impl TaskError {
    /// The name of the task (or group) the error is about.
    pub fn name(&self) -> &str {
        match self {
            TaskError::Failed { task, .. }
            | TaskError::Panicked { task, .. }
            | TaskError::TimedOut { task, .. }
            | TaskError::Cancelled { task }
            | TaskError::GroupClosed { task, .. } => task,
            TaskError::Group { group, .. }
            | TaskError::GroupTimedOut { group, .. }
            | TaskError::DuplicateGroup { group }
            | TaskError::NoSuchGroup { group } => group,
            TaskError::ZeroLimit { owner } => owner,
            TaskError::Supervisor { name, .. } => name,
        }
    }

    /// Whether this is a cancellation (not a failure of the task itself).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled { .. })
    }

    /// Whether this is a failure: an error or a panic of the task.
    pub fn is_failure(&self) -> bool {
        matches!(self, TaskError::Failed { .. } | TaskError::Panicked { .. })
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Turns a tokio join error into a task error.
pub(crate) fn from_join_error(task: &str, e: tokio::task::JoinError) -> TaskError {
    match e.try_into_panic() {
        Ok(payload) => TaskError::Panicked {
            task: task.to_string(),
            message: panic_message(&*payload),
        },
        Err(_) => TaskError::Cancelled { task: task.to_string() },
    }
}
