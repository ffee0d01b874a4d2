//! AsyncResourcePool: pre-warming, the acquire-timeout error, leak reports, restarts, closing,
//! background validation and stats. Paused tokio time (bb8 times out on tokio time too).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uno_runtime::actors::{AsyncManager, Intensity, ManagerConfig, NodeKind, RestartBackoff};
use uno_runtime::resource::{AsyncResource, AsyncResourcePool, PoolConfig, ResourceError, ResourcePool};

#[derive(Default)]
struct Backend {
    opens: AtomicU64,
    closes: AtomicU64,
    fail_opens: AtomicU32,
    fail_checks: AtomicU32,
}

struct Conn {
    id: u64,
    backend: Arc<Backend>,
}

#[derive(Debug, thiserror::Error)]
#[error("backend unavailable: {0}")]
struct BackendError(&'static str);

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
        .is_ok()
}

impl AsyncResource for Conn {
    type Config = Arc<Backend>;
    type Error = BackendError;

    async fn open(backend: &Arc<Backend>) -> Result<Self, BackendError> {
        if take_one(&backend.fail_opens) {
            return Err(BackendError("connection refused"));
        }
        let id = backend.opens.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Conn {
            id,
            backend: backend.clone(),
        })
    }

    async fn close(self) {
        self.backend.closes.fetch_add(1, Ordering::SeqCst);
    }

    async fn health_check(&mut self) -> Result<(), BackendError> {
        if take_one(&self.backend.fail_checks) {
            return Err(BackendError("ping failed"));
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

fn config(max_size: u32, min_idle: Option<u32>) -> PoolConfig {
    PoolConfig {
        max_size,
        min_idle,
        acquire_timeout: Duration::from_secs(2),
        idle_check_interval: None,
        ..PoolConfig::default()
    }
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

fn stat(m: &AsyncManager, path: &str, key: &str) -> serde_json::Value {
    let tree = m.tree();
    let node = tree.find(path).unwrap_or_else(|| panic!("no {path} in\n{tree}"));
    node.stats
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no stat {key} in {:?}", node.stats))
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_pre_warmed_before_the_spawn_returns_and_stats_are_in_the_tree() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let pool = ResourcePool::<Conn>::spawn_resources(&m, "pool", backend.clone(), config(4, Some(3)))
        .await
        .unwrap();
    assert_eq!(backend.opens.load(Ordering::SeqCst), 3, "pre-warmed");
    assert_eq!(pool.path(), "root/pool");
    let node = m.tree().find("root/pool").cloned().unwrap();
    assert_eq!(node.kind, NodeKind::Pool);
    for (key, value) in [
        ("size", 3),
        ("idle", 3),
        ("in_use", 0),
        ("waiters", 0),
        ("created", 3),
        ("closed", 0),
        ("timeouts", 0),
        ("max_size", 4),
        ("leaked", 0),
    ] {
        assert_eq!(node.stats[key], value, "{key}: {:?}", node.stats);
    }
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(stat(&m, "root/pool", "in_use"), 2);
    drop((a, b));
    assert_eq!(stat(&m, "root/pool", "in_use"), 0);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_pre_warm_is_a_failed_start() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    backend.fail_opens.store(u32::MAX, Ordering::SeqCst);
    let err = ResourcePool::<Conn>::spawn_resources(
        &m,
        "pool",
        backend,
        PoolConfig {
            acquire_timeout: Duration::from_millis(1), // bb8 retries opens on the real clock
            ..config(2, Some(1))
        },
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("root/pool"), "{text}");
    assert!(
        text.contains("pre-warming 1 connections failed: backend unavailable: connection refused"),
        "{text}"
    );
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_acquire_timeout_names_the_pool_its_size_in_use_waiters_and_the_last_error() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    backend.fail_opens.store(1, Ordering::SeqCst); // the first open fails, bb8 retries
    let pool = ResourcePool::<Conn>::spawn_resources(&m, "pool", backend.clone(), config(2, None))
        .await
        .unwrap();
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();

    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|_| ()) }
    });
    let started = tokio::time::Instant::now();
    let err = first.await.unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match &err {
        ResourceError::AcquireTimeout {
            pool,
            timeout,
            size,
            max_size,
            in_use,
            idle,
            waiters,
            last_error,
        } => {
            assert_eq!(pool, "root/pool");
            assert_eq!(*timeout, Duration::from_secs(2));
            assert_eq!((*size, *max_size, *in_use, *idle), (2, 2, 2, 0));
            assert_eq!(*waiters, 1);
            assert_eq!(last_error.as_deref(), Some("backend unavailable: connection refused"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "pool root/pool: no connection within 2s (size 2/2, in use 2, idle 0, waiters 1); \
         last connection error: backend unavailable: connection refused"
    );
    assert_eq!(stat(&m, "root/pool", "timeouts"), 1);
    assert_eq!(
        stat(&m, "root/pool", "last_error"),
        "backend unavailable: connection refused"
    );
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_checkout_held_too_long_is_reported_live_and_on_release_with_its_location() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let pool = ResourcePool::<Conn>::spawn_resources(
        &m,
        "pool",
        backend,
        PoolConfig {
            leak_threshold: Some(Duration::from_secs(1)),
            ..config(2, None)
        },
    )
    .await
    .unwrap();
    let line = line!() + 1;
    let held = pool.acquire().await.unwrap();
    assert_eq!(held.acquired_at().line(), line);
    let quick = pool.acquire().await.unwrap();
    drop(quick);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stat(&m, "root/pool", "leaked"), 1, "live count");
    assert_eq!(stat(&m, "root/pool", "leaks_total"), 0);
    drop(held);
    assert_eq!(stat(&m, "root/pool", "leaked"), 0);
    assert_eq!(stat(&m, "root/pool", "leaks_total"), 1);
    let last = stat(&m, "root/pool", "last_leak");
    let last = last.as_str().unwrap();
    assert!(last.contains(&format!("tests/pool.rs:{line}")), "{last}");
    assert!(last.contains(" held about "), "{last}"); // at the resolution of threshold / 8
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_pool_node_builds_a_fresh_pool_and_handles_follow() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let (spec, pool) = ResourcePool::<Conn>::resource_spec("pool", backend.clone(), config(2, Some(1))).unwrap();
    m.spawn(spec.backoff(RestartBackoff::immediate())).await.unwrap();
    let clone = pool.clone();
    let old = pool.acquire().await.unwrap();
    assert_eq!(old.id, 1);
    let node = pool.node().unwrap().clone();
    node.current().unwrap().stop(Some("operator restart".into()));
    until(|| node.incarnation() == 2 && pool.bb8_pool().is_some()).await;
    // The new pool pre-warmed its own connection; the handle and its clone use it.
    let fresh = clone.acquire().await.unwrap();
    assert!(fresh.id > 1, "a connection of the new pool");
    drop(fresh);
    // The checkout of the old pool is closed when it comes back, not reused.
    let closes = backend.closes.load(Ordering::SeqCst);
    drop(old);
    until(|| backend.closes.load(Ordering::SeqCst) == closes + 1).await;
    assert_eq!(m.tree().find("root/pool").unwrap().restarts, 1);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn closing_the_pool_fails_waiters_at_once_and_closes_idle_resources() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let pool = ResourcePool::<Conn>::spawn_resources(&m, "pool", backend.clone(), config(3, Some(3)))
        .await
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let c = pool.acquire().await.unwrap();
    drop((b, c)); // two idle, one held
    let _held_b = pool.acquire().await.unwrap();
    let _held_c = pool.acquire().await.unwrap();
    drop(a); // now one idle, two held
    let _held_a = pool.acquire().await.unwrap();
    // All three are held: a waiter queues.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    m.root().unwrap().terminate_child("pool").await.unwrap();
    let err = waiter.await.unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100), "failed at once");
    assert!(
        matches!(&err, ResourceError::PoolClosed { pool, restarting: false } if pool == "root/pool"),
        "{err:?}"
    );
    // After the node stopped, acquire fails at once too.
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, ResourceError::PoolClosed { .. }), "{err:?}");
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_closes_idle_resources_and_returned_ones() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let pool = ResourcePool::<Conn>::spawn_resources(&m, "pool", backend.clone(), config(3, Some(2)))
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    // bb8 tops the idle connections back up to min_idle: one held, two idle.
    until(|| stat(&m, "root/pool", "idle") == 2).await;
    let opened = backend.opens.load(Ordering::SeqCst);
    assert_eq!(opened, 3);
    m.root().unwrap().terminate_child("pool").await.unwrap();
    until(|| backend.closes.load(Ordering::SeqCst) == 2).await;
    drop(held);
    until(|| backend.closes.load(Ordering::SeqCst) == opened).await;
    m.shutdown(Duration::from_secs(1)).await;
    assert_eq!(backend.opens.load(Ordering::SeqCst), opened, "none reopened");
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_discarded_and_idle_ones_are_validated_in_the_background() {
    let m = manager().await;
    let backend = Arc::new(Backend::default());
    let pool = ResourcePool::<Conn>::spawn_resources(
        &m,
        "pool",
        backend.clone(),
        PoolConfig {
            idle_check_interval: Some(Duration::from_secs(1)),
            ..config(2, None)
        },
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    conn.mark_broken();
    drop(conn);
    until(|| backend.closes.load(Ordering::SeqCst) == 1).await;
    assert_eq!(stat(&m, "root/pool", "closed_broken"), 1);

    let conn = pool.acquire().await.unwrap();
    drop(conn); // idle now
    backend.fail_checks.store(1, Ordering::SeqCst);
    until(|| backend.closes.load(Ordering::SeqCst) == 2).await;
    assert_eq!(stat(&m, "root/pool", "validation_failures"), 1);
    assert_eq!(stat(&m, "root/pool", "last_error"), "backend unavailable: ping failed");
    m.shutdown(Duration::from_secs(1)).await;
}

/// A plain bb8 manager, not an AsyncResource: the pool takes any `ManageConnection`.
struct Numbers(AtomicU64);

impl bb8::ManageConnection for Numbers {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn any_bb8_manager_can_be_pooled() {
    let m = manager().await;
    let pool = AsyncResourcePool::spawn(&m, "numbers", |_| Numbers(AtomicU64::new(7)), config(1, Some(1)))
        .await
        .unwrap();
    let n = pool.acquire().await.unwrap();
    assert_eq!(*n, 7);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn invalid_configuration_is_a_typed_error_naming_the_pool_and_the_values() {
    let err = ResourcePool::<Conn>::resource_spec("pool", Arc::new(Backend::default()), config(2, Some(3)))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid configuration for pool: min_idle 3 is larger than max_size 2"
    );
    let err = ResourcePool::<Conn>::resource_spec("pool", Arc::new(Backend::default()), config(0, None))
        .err()
        .unwrap();
    assert!(err.to_string().contains("max_size is 0"));
}
