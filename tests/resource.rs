//! Resource actors: call round trip, health checks that restart, failed opens, panics.
//! Paused tokio time for everything about timing.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uno_runtime::actors::{AsyncManager, Intensity, ManagerConfig, NodeKind, RestartBackoff, SupervisorError};
use uno_runtime::resource::{AsyncResource, ResourceError, ResourceHandle, ResourceOptions};

/// Counters shared by every connection opened from one config.
#[derive(Default)]
struct Backend {
    opens: AtomicU64,
    closes: AtomicU64,
    checks: AtomicU64,
    fail_opens: AtomicU32,
    fail_checks: AtomicU32,
    hang_checks: AtomicBool,
}

/// A real in-process resource: it knows which open it came from.
struct Conn {
    id: u64,
    uses: u64,
    backend: Arc<Backend>,
}

#[derive(Debug, thiserror::Error)]
#[error("backend unavailable: {0}")]
struct BackendError(String);

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
        .is_ok()
}

impl AsyncResource for Conn {
    type Config = Arc<Backend>;
    type Error = BackendError;

    async fn open(backend: &Arc<Backend>) -> Result<Self, BackendError> {
        if take_one(&backend.fail_opens) {
            return Err(BackendError("connection refused".into()));
        }
        let id = backend.opens.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Conn {
            id,
            uses: 0,
            backend: backend.clone(),
        })
    }

    async fn close(self) {
        self.backend.closes.fetch_add(1, Ordering::SeqCst);
    }

    async fn health_check(&mut self) -> Result<(), BackendError> {
        self.backend.checks.fetch_add(1, Ordering::SeqCst);
        if self.backend.hang_checks.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if take_one(&self.backend.fail_checks) {
            return Err(BackendError("ping failed".into()));
        }
        Ok(())
    }
}

async fn manager() -> AsyncManager {
    AsyncManager::start(ManagerConfig {
        intensity: Intensity::new(100, Duration::from_secs(1)).unwrap(),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn options(every: Option<Duration>) -> ResourceOptions {
    ResourceOptions {
        health_check_interval: every,
        health_check_timeout: Duration::from_secs(1),
    }
}

/// Which open the resource answering now came from (retries a call lost in a restart).
async fn conn_id(h: &ResourceHandle<Conn>) -> u64 {
    loop {
        match h.call(|c| Box::pin(async move { c.id })).await {
            Ok(id) => return id,
            Err(ResourceError::Call { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("call failed: {e}"),
        }
    }
}

/// Waits (in paused time) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

#[tokio::test(start_paused = true)]
async fn call_round_trip_runs_against_the_resource_and_returns_its_result() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let h = ResourceHandle::<Conn>::spawn(&m, "db", backend.clone(), options(None))
        .await
        .unwrap();
    for expected in 1..=3u64 {
        let uses = h
            .call(|c| {
                Box::pin(async move {
                    tokio::task::yield_now().await; // the borrow lives across an await
                    c.uses += 1;
                    c.uses
                })
            })
            .await
            .unwrap();
        assert_eq!(uses, expected);
    }
    assert_eq!(h.path().as_deref(), Some("root/db"));
    let node = m.tree().find("root/db").cloned().unwrap();
    assert_eq!(node.kind, NodeKind::Resource);
    assert_eq!(node.stats["calls"], 3);
    assert_eq!(node.stats["opens"], 1);
    m.shutdown(Duration::from_secs(1)).await;
    assert_eq!(backend.closes.load(Ordering::SeqCst), 1, "closed on stop");
}

#[tokio::test(start_paused = true)]
async fn a_failing_health_check_closes_the_resource_and_the_supervisor_opens_a_new_one() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let (spec, h) = ResourceHandle::<Conn>::spec("db", backend.clone(), options(Some(Duration::from_secs(10))));
    m.spawn(spec.backoff(RestartBackoff::immediate())).await.unwrap();
    assert_eq!(conn_id(&h).await, 1);
    backend.fail_checks.store(1, Ordering::SeqCst);
    until(|| backend.opens.load(Ordering::SeqCst) == 2).await;
    assert_eq!(conn_id(&h).await, 2, "calls reach the new resource");
    assert_eq!(backend.closes.load(Ordering::SeqCst), 1, "the old one was closed");
    let node = m.tree().find("root/db").cloned().unwrap();
    assert_eq!(node.restarts, 1);
    assert!(
        node.last_error.as_ref().is_some_and(|e| e
            .message
            .contains("health check failed: backend unavailable: ping failed")),
        "{node:?}"
    );
    assert_eq!(node.stats["health_check_failures"], 1);
    assert!(node.stats["health_checks"].as_u64().unwrap() >= 1);
    assert_eq!(node.stats["last_check_ok"], false);
    m.shutdown(Duration::from_secs(1)).await;
    assert_eq!(backend.closes.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hung_health_check_counts_as_failed_after_its_timeout() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let (spec, h) = ResourceHandle::<Conn>::spec("db", backend.clone(), options(Some(Duration::from_secs(5))));
    m.spawn(spec.backoff(RestartBackoff::immediate())).await.unwrap();
    backend.hang_checks.store(true, Ordering::SeqCst);
    until(|| backend.closes.load(Ordering::SeqCst) == 1).await;
    backend.hang_checks.store(false, Ordering::SeqCst);
    assert_eq!(conn_id(&h).await, 2);
    let node = m.tree().find("root/db").cloned().unwrap();
    assert!(node
        .last_error
        .is_some_and(|e| e.message.contains("did not finish within 1s")));
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_open_is_a_failed_start() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    backend.fail_opens.store(1, Ordering::SeqCst);
    let err = ResourceHandle::<Conn>::spawn(&m, "db", backend.clone(), options(None))
        .await
        .unwrap_err();
    match &err {
        ResourceError::Spawn(SupervisorError::StartFailed { path, error }) => {
            assert_eq!(path, "root/db");
            assert!(error.contains("open failed: backend unavailable: connection refused"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(m.tree().find("root/db").is_none());

    // A failed reopen during a restart is a failed restart: counted, then retried.
    let (spec, h) = ResourceHandle::<Conn>::spec("db2", backend.clone(), options(Some(Duration::from_secs(1))));
    m.spawn(spec.backoff(RestartBackoff::immediate())).await.unwrap();
    backend.fail_opens.store(1, Ordering::SeqCst);
    backend.fail_checks.store(1, Ordering::SeqCst);
    until(|| backend.opens.load(Ordering::SeqCst) == 2).await;
    assert_eq!(conn_id(&h).await, 2);
    let node = m.tree().find("root/db2").cloned().unwrap();
    assert_eq!(node.restarts, 2, "the failed reopen counts as a restart");
    assert_eq!(node.stats["open_failures"], 1);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_call_fails_the_caller_closes_the_resource_and_restarts_the_node() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let (spec, h) = ResourceHandle::<Conn>::spec("db", backend.clone(), options(None));
    m.spawn(spec.backoff(RestartBackoff::immediate())).await.unwrap();
    let err = h
        .call(|_c| -> futures::future::BoxFuture<'_, ()> { Box::pin(async { panic!("boom") }) })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("root/db"), "{err}");
    assert_eq!(conn_id(&h).await, 2);
    assert_eq!(backend.closes.load(Ordering::SeqCst), 1);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn call_timeout_names_the_node_and_the_limit() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let h = ResourceHandle::<Conn>::spawn(&m, "db", backend, options(None))
        .await
        .unwrap();
    let err = h
        .call_timeout(|_c| Box::pin(std::future::pending::<()>()), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "resource root/db: call did not finish within 50ms");
    m.shutdown(Duration::from_millis(100)).await;
}
