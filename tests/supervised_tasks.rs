//! Supervised tasks: restarts with backoff, factory rebuilt, cancellation, abort past timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use uno_runtime::actors::{AsyncManager, Intensity, ManagerConfig, NodeKind, Restart, RestartBackoff, Shutdown};
use uno_runtime::task::{as_task, spawn_task};

fn tolerant() -> ManagerConfig {
    ManagerConfig {
        intensity: Intensity::new(100, Duration::from_secs(60)).unwrap(),
        ..ManagerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_task_is_rebuilt_and_restarted_with_backoff() {
    let manager = AsyncManager::start(tolerant()).await.unwrap();
    let starts = Arc::new(Mutex::new(Vec::<(u64, Instant)>::new()));
    let s = starts.clone();
    let spec = as_task("flaky", move |ctx| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((ctx.incarnation(), Instant::now()));
            if ctx.incarnation() < 5 {
                Err(std::io::Error::other(format!("attempt {}", ctx.incarnation())))
            } else {
                ctx.cancelled().await;
                Ok(())
            }
        }
    })
    .restart(Restart::Permanent)
    .backoff(
        RestartBackoff::exponential(
            Duration::from_millis(100),
            Duration::from_secs(10),
            0.0,
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let task = spawn_task(&manager, spec).await.unwrap();
    sleep(Duration::from_secs(5)).await;
    let starts = starts.lock().unwrap().clone();
    let incarnations: Vec<u64> = starts.iter().map(|s| s.0).collect();
    assert_eq!(incarnations, [1, 2, 3, 4, 5], "rebuilt from the factory on every start");
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for (gap, min) in gaps.iter().zip([100u64, 200, 400, 800]) {
        assert!(*gap >= Duration::from_millis(min), "gaps {gaps:?}");
        assert!(*gap < Duration::from_millis(min * 2), "gaps {gaps:?}");
    }
    let node = manager.tree().find("root/flaky").cloned().unwrap();
    assert_eq!(node.kind, NodeKind::Task);
    assert_eq!(node.restarts, 4);
    assert!(task.is_running());
    assert!(manager.shutdown(Duration::from_secs(5)).await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_restarted() {
    let manager = AsyncManager::start(tolerant()).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let spec = as_task("panicky", move |ctx| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                panic!("first run panics");
            }
            ctx.cancelled().await;
            Ok::<_, std::io::Error>(())
        }
    })
    .backoff(RestartBackoff::immediate());
    spawn_task(&manager, spec).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let node = manager.tree().find("root/panicky").cloned().unwrap();
    assert!(node.last_error.unwrap().message.contains("first run panics"));
    manager.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_ignoring_cancellation_is_aborted_after_its_shutdown_timeout() {
    let baseline = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    let spec = as_task("stubborn", move |_ctx| {
        let g = Guard(d.clone());
        async move {
            let _g = g;
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>(())
        }
    })
    .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
    spawn_task(&manager, spec).await.unwrap();
    let polite = as_task("polite", |ctx| async move {
        ctx.cancelled().await;
        Ok::<_, std::io::Error>(())
    });
    spawn_task(&manager, polite).await.unwrap();
    let started = Instant::now();
    let report = manager.shutdown(Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(report.killed.len(), 1, "{report}");
    assert_eq!(report.killed[0].path, "root/stubborn");
    assert!(report.stopped.contains(&"root/polite".to_string()));
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the future was aborted");
    drop(manager);
    for _ in 0..1000 {
        if tokio::runtime::Handle::current().metrics().num_alive_tasks() == baseline {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        baseline,
        "no orphan tasks"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_task_that_returns_ok_is_not_restarted() {
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let spec = as_task("once", move |_ctx| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::io::Error>(()) }
    })
    .restart(Restart::Transient);
    let task = spawn_task(&manager, spec).await.unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!task.is_running());
    manager.shutdown(Duration::from_secs(5)).await;
}
