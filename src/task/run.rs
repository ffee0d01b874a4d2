//! [`run_task`] and [`run_tasks`]: run futures as tokio tasks, with a time limit, and get a
//! [`TaskError`] that tells a timeout, a failure, a panic and a cancellation apart.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::task::{run_task, run_tasks, ReturnWhen, TaskError};
//!
//! let n = run_task("answer", async { Ok::<_, std::io::Error>(42) }, None).await.unwrap();
//! assert_eq!(n, 42);
//!
//! type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, std::io::Error>> + Send>>;
//! let jobs: Vec<Job> = vec![
//!     Box::pin(async { Ok(1) }),
//!     Box::pin(async { Err(std::io::Error::other("boom")) }),
//!     Box::pin(async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         Ok(3)
//!     }),
//! ];
//! let results = run_tasks(jobs, ReturnWhen::FirstError).await;
//! assert_eq!(results[0].as_ref().unwrap(), &1);
//! assert!(matches!(results[1], Err(TaskError::Failed { .. })));
//! assert!(matches!(results[2], Err(TaskError::Cancelled { .. }))); // cancelled, not a silent None
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::error::{from_join_error, BoxError, TaskError};

/// Runs `future` as a tokio task named `name`, within an optional time limit.
///
/// The future runs on its own task, so a panic in it is caught and reported instead of
/// unwinding into the caller.
///
/// # Cancel safety
/// Cancel safe: dropping the returned future aborts the task.
///
/// # Errors
/// [`TaskError::Failed`] when the future returns an error, [`TaskError::Panicked`] when it
/// panics, [`TaskError::TimedOut`] when it runs past `timeout` (it is then aborted), and
/// [`TaskError::Cancelled`] when its runtime aborts it.
pub async fn run_task<T, E, F>(name: &str, future: F, timeout: Option<Duration>) -> Result<T, TaskError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let handle = AbortOnDropHandle::new(tokio::spawn(future));
    let joined = match timeout {
        None => handle.await,
        Some(limit) => match tokio::time::timeout(limit, handle).await {
            Ok(joined) => joined,
            Err(_) => {
                return Err(TaskError::TimedOut {
                    task: name.to_string(),
                    limit,
                })
            }
        },
    };
    finish(name, joined)
}

/// As [`run_task`], and also cancelled when `token` is: the future is then dropped (aborted)
/// and the result is [`TaskError::Cancelled`].
///
/// # Cancel safety
/// Cancel safe: dropping the returned future aborts the task.
///
/// # Errors
/// As [`run_task`]; [`TaskError::Cancelled`] when `token` is cancelled first.
pub async fn run_task_cancellable<T, E, F>(
    name: &str,
    future: F,
    timeout: Option<Duration>,
    token: &CancellationToken,
) -> Result<T, TaskError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    tokio::select! {
        biased;
        _ = token.cancelled() => Err(TaskError::Cancelled { task: name.to_string() }),
        r = run_task(name, future, timeout) => r,
    }
}

fn finish<T, E: Into<BoxError>>(
    name: &str,
    joined: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, TaskError> {
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TaskError::Failed {
            task: name.to_string(),
            source: e.into(),
        }),
        Err(e) => Err(from_join_error(name, e)),
    }
}

/// When [`run_tasks`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// When every task has finished.
    #[default]
    AllCompleted,
    /// As soon as any task finishes, successfully or not.
    FirstCompleted,
    /// As soon as any task fails (an error or a panic), or when all have finished.
    FirstError,
}

/// Runs every future as its own tokio task and returns one result per input, in input order.
///
/// Tasks are named `run_tasks[i]` after their position. When it returns early
/// ([`ReturnWhen::FirstCompleted`], [`ReturnWhen::FirstError`]), the tasks still running are
/// aborted and awaited, and their results are [`TaskError::Cancelled`]: no task outlives the
/// call.
///
/// # Cancel safety
/// Cancel safe: dropping the returned future aborts every task.
///
/// # Errors
/// Never fails as a whole; each entry is `Ok` or the [`TaskError`] of that task.
pub async fn run_tasks<T, E, F, I>(futures: I, when: ReturnWhen) -> Vec<Result<T, TaskError>>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut index = HashMap::new();
    let mut results: Vec<Option<Result<T, TaskError>>> = Vec::new();
    for (i, f) in futures.into_iter().enumerate() {
        let handle = set.spawn(f);
        index.insert(handle.id(), i);
        results.push(None);
    }
    let name = |i: usize| format!("run_tasks[{i}]");
    let mut stop = false;
    while let Some(joined) = set.join_next_with_id().await {
        let (i, result) = match joined {
            Ok((id, r)) => {
                let i = index.get(&id).copied().unwrap_or_default();
                (
                    i,
                    r.map_err(|e| TaskError::Failed {
                        task: name(i),
                        source: e.into(),
                    }),
                )
            }
            Err(e) => {
                let i = index.get(&e.id()).copied().unwrap_or_default();
                (i, Err(from_join_error(&name(i), e)))
            }
        };
        if !stop {
            stop = match when {
                ReturnWhen::AllCompleted => false,
                ReturnWhen::FirstCompleted => true,
                ReturnWhen::FirstError => matches!(&result, Err(e) if !e.is_cancelled()),
            };
            if stop {
                set.abort_all();
            }
        }
        if let Some(slot) = results.get_mut(i) {
            // After an early return began, tasks that still finished keep their result.
            *slot = Some(result);
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| Err(TaskError::Cancelled { task: name(i) })))
        .collect()
}
