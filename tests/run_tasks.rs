//! run_task and run_tasks in every mode.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use uno_runtime::task::{run_task, run_task_cancellable, run_tasks, ReturnWhen, TaskError};

type R<T> = Result<T, std::io::Error>;
type Job = Pin<Box<dyn Future<Output = R<u32>> + Send>>;

fn after(ms: u64, v: R<u32>) -> Job {
    Box::pin(async move {
        sleep(Duration::from_millis(ms)).await;
        v
    })
}

fn boom() -> R<u32> {
    Err(std::io::Error::other("boom"))
}

#[tokio::test(start_paused = true)]
async fn run_task_tells_outcomes_apart() {
    assert_eq!(run_task("ok", after(10, Ok(1)), None).await.unwrap(), 1);
    let e = run_task("bad", after(10, boom()), None).await.unwrap_err();
    assert!(matches!(e, TaskError::Failed { ref task, .. } if task == "bad"), "{e}");
    let e = run_task(
        "panics",
        async {
            if true {
                panic!("oh no");
            }
            R::Ok(0)
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TaskError::Panicked { ref task, ref message } if task == "panics" && message == "oh no"));
    let e = run_task("slow", after(5_000, Ok(1)), Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::TimedOut { ref task, limit } if task == "slow" && limit == Duration::from_secs(1)));
    assert_eq!(e.to_string(), "task \"slow\" timed out after 1s");
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(100)).await;
        t.cancel();
    });
    let e = run_task_cancellable("stopped", after(5_000, Ok(1)), None, &token)
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Cancelled { ref task } if task == "stopped"));
}

#[tokio::test(start_paused = true)]
async fn all_completed_waits_for_everything() {
    let r = run_tasks(
        [after(300, Ok(1)), after(100, boom()), after(200, Ok(3))],
        ReturnWhen::AllCompleted,
    )
    .await;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].as_ref().unwrap(), &1);
    assert!(matches!(r[1], Err(TaskError::Failed { ref task, .. }) if task == "run_tasks[1]"));
    assert_eq!(r[2].as_ref().unwrap(), &3);
}

#[tokio::test(start_paused = true)]
async fn first_completed_cancels_the_rest() {
    let baseline = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let r = run_tasks(
        [after(300, Ok(1)), after(100, Ok(2)), after(200, Ok(3))],
        ReturnWhen::FirstCompleted,
    )
    .await;
    assert!(matches!(r[0], Err(TaskError::Cancelled { .. })));
    assert_eq!(r[1].as_ref().unwrap(), &2);
    assert!(matches!(r[2], Err(TaskError::Cancelled { .. })));
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn first_error_returns_at_the_first_failure() {
    let r = run_tasks(
        [after(50, Ok(1)), after(100, boom()), after(1_000, Ok(3))],
        ReturnWhen::FirstError,
    )
    .await;
    assert_eq!(r[0].as_ref().unwrap(), &1);
    assert!(matches!(r[1], Err(TaskError::Failed { .. })));
    assert!(matches!(r[2], Err(TaskError::Cancelled { .. })));
    // Without a failure it waits for all.
    let r = run_tasks([after(50, Ok(1)), after(100, Ok(2))], ReturnWhen::FirstError).await;
    assert!(r.iter().all(Result::is_ok));
}
