//! AsyncContextGroup and AsyncExitStack: every rule of issue 5 (context part).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use tokio_util::task::TaskTracker;
use uno_runtime::context::{
    AsyncContext, AsyncContextGroup, AsyncExitStack, BoxError, CleanupFailureKind, ContextError,
};

type Log = Arc<Mutex<Vec<String>>>;

fn entries(log: &Log) -> Vec<String> {
    log.lock().map(|v| v.clone()).unwrap_or_default()
}

fn push(log: &Log, s: String) {
    if let Ok(mut v) = log.lock() {
        v.push(s);
    }
}

/// A resource that logs its open and close, and can be told to fail either.
struct Res {
    name: String,
    log: Log,
    fail_open: bool,
    fail_close: bool,
}

impl Res {
    fn new(name: &str, log: &Log) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            log: log.clone(),
            fail_open: false,
            fail_close: false,
        })
    }
    fn failing_open(name: &str, log: &Log) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            log: log.clone(),
            fail_open: true,
            fail_close: false,
        })
    }
    fn failing_close(name: &str, log: &Log) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            log: log.clone(),
            fail_open: false,
            fail_close: true,
        })
    }
}

impl AsyncContext for Res {
    type Error = BoxError;
    fn name(&self) -> &str {
        &self.name
    }
    async fn open(&self) -> Result<(), BoxError> {
        sleep(Duration::from_millis(1)).await;
        if self.fail_open {
            return Err(format!("{} refused to open", self.name).into());
        }
        push(&self.log, format!("open {}", self.name));
        Ok(())
    }
    async fn close(&self) -> Result<(), BoxError> {
        sleep(Duration::from_millis(1)).await;
        push(&self.log, format!("close {}", self.name));
        if self.fail_close {
            return Err(format!("{} refused to close", self.name).into());
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_opens_in_order_and_closes_in_reverse() {
    let log = Log::default();
    let out = AsyncContextGroup::new("app")
        .with(Res::new("a", &log))
        .with(Res::new("b", &log))
        .with(Res::new("c", &log))
        .run(async {
            push(&log, "body".into());
            7
        })
        .await;
    assert_eq!(out.ok(), Some(7));
    assert_eq!(
        entries(&log),
        ["open a", "open b", "open c", "body", "close c", "close b", "close a"]
    );
}

#[tokio::test(start_paused = true)]
async fn entering_fails_partway_closes_those_already_entered() {
    let log = Log::default();
    let r = AsyncContextGroup::new("app")
        .with(Res::new("a", &log))
        .with(Res::new("b", &log))
        .with(Res::failing_open("c", &log))
        .with(Res::new("d", &log))
        .run(async { push(&log, "body".into()) })
        .await;
    match r {
        Err(e @ ContextError::Enter { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("context `app`: entering `c` failed: c refused to open"),
                "{msg}"
            );
        }
        other => panic!("expected Enter, got {other:?}"),
    }
    assert_eq!(entries(&log), ["open a", "open b", "close b", "close a"]);
}

#[tokio::test(start_paused = true)]
async fn every_cleanup_runs_and_errors_are_aggregated() {
    let log = Log::default();
    let mut stack = AsyncExitStack::new("req").cleanup_timeout(Duration::from_secs(1));
    let _a = stack.enter(Res::failing_close("a", &log)).await;
    stack.push_cleanup("stuck", || async {
        sleep(Duration::from_secs(3600)).await;
        Ok::<(), BoxError>(())
    });
    stack.push_cleanup("panicky", || async {
        if true {
            panic!("cleanup exploded");
        }
        Ok::<(), BoxError>(())
    });
    let _c = stack.enter(Res::failing_close("c", &log)).await;
    let _d = stack.enter(Res::new("d", &log)).await;
    let start = Instant::now();
    let r = stack.close().await;
    assert_eq!(entries(&log)[3..], ["close d", "close c", "close a"]);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(1003),
        "the stuck one timed out at 1 s"
    );
    match r {
        Err(ContextError::Cleanup {
            context,
            total,
            failures,
        }) => {
            assert_eq!((context.as_str(), total), ("req", 5));
            let names: Vec<_> = failures.0.iter().map(|f| f.resource.as_str()).collect();
            assert_eq!(names, ["c", "panicky", "stuck", "a"]);
            assert!(matches!(failures.0[1].kind, CleanupFailureKind::Panicked(ref m) if m.contains("exploded")));
            assert!(matches!(failures.0[2].kind, CleanupFailureKind::TimedOut(d) if d == Duration::from_secs(1)));
            let msg = ContextError::Cleanup {
                context,
                total,
                failures,
            }
            .to_string();
            assert!(
                msg.starts_with("context `req`: 4 of 5 cleanups failed: `c` failed: c refused to close"),
                "{msg}"
            );
            assert!(msg.contains("`stuck` timed out after 1s"), "{msg}");
        }
        other => panic!("expected Cleanup, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cleanup_runs_when_the_body_returns_an_error() {
    let log = Log::default();
    let r: Result<Result<(), &str>, _> = AsyncContextGroup::new("app")
        .with(Res::new("a", &log))
        .run(async { Err("body failed") })
        .await;
    assert_eq!(r.ok(), Some(Err("body failed")));
    assert_eq!(entries(&log), ["open a", "close a"]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_scope_hands_its_cleanup_to_the_tracker() {
    let log = Log::default();
    let tracker = TaskTracker::new();
    let group = AsyncContextGroup::new("app")
        .tracker(tracker.clone())
        .with(Res::new("a", &log))
        .with(Res::new("b", &log));
    let body = group.run(async {
        sleep(Duration::from_secs(3600)).await;
    });
    // The scope is cancelled while its body runs.
    assert!(tokio::time::timeout(Duration::from_secs(1), body).await.is_err());
    tracker.close();
    tracker.wait().await;
    assert_eq!(entries(&log), ["open a", "open b", "close b", "close a"]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stack_without_tracker_still_cleans_up() {
    let log = Log::default();
    let mut stack = AsyncExitStack::new("req");
    let _a = stack.enter(Res::new("a", &log)).await;
    let l = log.clone();
    stack.push_cleanup("note", move || async move {
        push(&l, "note".into());
        Ok::<(), BoxError>(())
    });
    drop(stack);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(entries(&log), ["open a", "note", "close a"]);
}

#[tokio::test(start_paused = true)]
async fn enter_with_passes_the_value_to_its_close() {
    let log = Log::default();
    let mut stack = AsyncExitStack::new("req");
    let l = log.clone();
    let v = stack
        .enter_with("conn", async { Ok::<_, BoxError>(41u32) }, move |v| async move {
            push(&l, format!("close {v}"));
            Ok::<(), BoxError>(())
        })
        .await;
    assert_eq!(v.ok().map(|v| *v + 1), Some(42));
    let failed = stack
        .enter_with("broken", async { Err::<u32, BoxError>("no".into()) }, |_| async {
            Ok::<(), BoxError>(())
        })
        .await;
    assert!(matches!(failed, Err(ContextError::Enter { ref resource, .. }) if resource == "broken"));
    // The failed enter closed what was entered before and left the stack empty.
    assert_eq!(entries(&log), ["close 41"]);
    assert!(stack.is_empty());
    assert!(stack.close().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_open_is_an_enter_error() {
    let log = Log::default();
    let r = AsyncContextGroup::new("app")
        .with(Res::new("a", &log))
        .with_fns(
            "boom",
            || async {
                if true {
                    panic!("open exploded");
                }
                Ok::<(), BoxError>(())
            },
            || async { Ok::<(), BoxError>(()) },
        )
        .run(async {})
        .await;
    match r {
        Err(ContextError::Enter { resource, source, .. }) => {
            assert_eq!(resource, "boom");
            assert!(source.to_string().contains("open exploded"));
        }
        other => panic!("expected Enter, got {other:?}"),
    }
    assert_eq!(entries(&log), ["open a", "close a"]);
}
