//! Cache, batcher and context wired into the supervision tree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use uno_runtime::actors::{ractor, AsyncManager, ManagerConfig, NodeKind, Strategy, SupervisorSpec, WorkerSpec};
use uno_runtime::batch::{AsyncBatcher, BatchError};
use uno_runtime::cache::AsyncCache;
use uno_runtime::context::{AsyncExitStack, BoxError};

async fn manager() -> AsyncManager {
    match AsyncManager::start(ManagerConfig::default()).await {
        Ok(m) => m,
        Err(e) => panic!("manager: {e}"),
    }
}

#[tokio::test]
async fn cache_and_batcher_publish_their_stats_in_the_tree() {
    let m = manager().await;
    let cache: AsyncCache<u32, u32> = match AsyncCache::builder("users").ttl(Duration::from_secs(60)).build() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let batcher = match AsyncBatcher::builder("writes")
        .max_batch_size(4)
        .build(|v: Vec<u32>| async move { Ok::<_, std::io::Error>(v) })
    {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(m.spawn(cache.worker_spec(Duration::from_secs(1))).await.is_ok());
    assert!(m.spawn(batcher.worker_spec()).await.is_ok());

    for k in 0..4 {
        let _ = cache
            .get_with(k, move || async move { Ok::<_, std::io::Error>(k) })
            .await;
    }
    for k in 0..4 {
        assert_eq!(cache.get(&k), Some(k));
    }
    let rs = futures::future::join_all((0..4).map(|i| batcher.submit(i))).await;
    assert!(rs.iter().all(|r| r.is_ok()));

    let tree = m.tree();
    let node = match tree.find("root/users") {
        Some(n) => n,
        None => panic!("no cache node in\n{tree}"),
    };
    assert_eq!(node.kind, NodeKind::Cache);
    assert_eq!(node.stats.get("hits"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("misses"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("hit_ratio"), Some(&serde_json::json!(0.5)));
    assert_eq!(node.stats.get("size"), Some(&serde_json::json!(4)));
    let node = match tree.find("root/writes") {
        Some(n) => n,
        None => panic!("no batcher node in\n{tree}"),
    };
    assert_eq!(node.kind, NodeKind::Batcher);
    assert_eq!(node.stats.get("succeeded"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("batches"), Some(&serde_json::json!(1)));
    batcher.shutdown().await;
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn the_manager_shutdown_waits_for_the_cleanup_of_a_dropped_stack() {
    let m = manager().await;
    let log = Arc::new(Mutex::new(Vec::<&str>::new()));
    let mut stack = AsyncExitStack::new("request").manager(m.clone());
    let l = log.clone();
    stack.push_cleanup("slow close", move || async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(mut v) = l.lock() {
            v.push("closed");
        }
        Ok::<(), BoxError>(())
    });
    drop(stack);
    let _ = m.shutdown(Duration::from_secs(5)).await;
    assert_eq!(log.lock().map(|v| v.clone()).unwrap_or_default(), ["closed"]);
}

/// A worker that fails on every message.
struct Crasher;

impl ractor::Actor for Crasher {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ractor::ActorRef<()>, _: (), _: &mut ()) -> Result<(), ractor::ActorProcessingErr> {
        Err("crash on demand".into())
    }
}

fn gauge(tree: &uno_runtime::actors::TreeSnapshot, path: &str, key: &str) -> Option<serde_json::Value> {
    tree.find(path).and_then(|n| n.stats.get(key).cloned())
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_fails_its_callers_then_the_node_restarts_and_serves_the_queue() {
    let m = manager().await;
    let batcher = match AsyncBatcher::builder("panicky")
        .max_batch_size(2)
        .max_wait(Duration::from_millis(10))
        .max_concurrent(1)
        .build(|items: Vec<u32>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if items.contains(&0) {
                panic!("batch function exploded");
            }
            Ok::<_, std::io::Error>(items)
        }) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(m.spawn(batcher.worker_spec()).await.is_ok());

    let submit = |i: u32| {
        let b = batcher.clone();
        tokio::spawn(async move { b.submit(i).await })
    };
    // 0 and 1 form the batch that panics; 2, 3 and 4 queue behind it.
    let first: Vec<_> = (0..2).map(submit).collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let queued: Vec<_> = (2..5).map(submit).collect();

    for h in first {
        match h.await {
            Ok(Err(BatchError::Panicked { message, .. })) => assert!(message.contains("exploded")),
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    let mut served = Vec::new();
    for h in queued {
        match h.await {
            Ok(Ok(v)) => served.push(v),
            other => panic!("a queued item was not served: {other:?}"),
        }
    }
    assert_eq!(served, vec![2, 3, 4]);

    let tree = m.tree();
    let node = match tree.find("root/panicky") {
        Some(n) => n,
        None => panic!("no batcher node in\n{tree}"),
    };
    assert_eq!(node.restarts, 1, "{tree}");
    let last = node.last_error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    assert!(last.contains("panicked"), "last error: {last}");
    // Stats are attached again by the new incarnation.
    assert_eq!(gauge(&tree, "root/panicky", "panics"), Some(serde_json::json!(1)));
    assert_eq!(gauge(&tree, "root/panicky", "succeeded"), Some(serde_json::json!(3)));
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_final_stop_of_the_batcher_node_flushes_the_queue_and_waits_for_running_batches() {
    let m = manager().await;
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = finished.clone();
    let batcher = match AsyncBatcher::builder("flushing")
        .max_batch_size(3)
        .max_wait(Duration::from_secs(3600))
        .max_concurrent(1)
        .build(move |items: Vec<u32>| {
            let f = f.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                f.fetch_add(items.len(), std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(items)
            }
        }) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(m.spawn(batcher.worker_spec()).await.is_ok());
    // 3 items fill a batch that starts running; 2 more wait for an hour-long window.
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit(i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(batcher.stats().running, 1);
    assert_eq!(batcher.stats().queued, 2);

    let root = match m.root() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(root.terminate_child("flushing").await.is_ok());
    // When the stop returns, every item was served: nothing queued, nothing running.
    assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), 5);
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(v)) => assert_eq!(v as usize, i),
            other => panic!("item {i} lost: {other:?}"),
        }
    }
    assert!(matches!(batcher.submit(9).await, Err(BatchError::Closed { .. })));
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn the_cache_node_closes_the_cache_only_on_a_final_stop() {
    let m = manager().await;
    let cache: AsyncCache<u32, u32> = match AsyncCache::builder("lifetime").ttl(Duration::from_secs(60)).build() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    // One-for-all: when the sibling crashes, the cache node is stopped for a restart.
    let crasher = WorkerSpec::new("crasher", |_| (Crasher, ()));
    let crash = crasher.reference();
    let group = SupervisorSpec::new("group")
        .strategy(Strategy::OneForAll)
        .child(cache.worker_spec(Duration::from_secs(1)))
        .child(crasher);
    let group = match m.spawn_supervisor(group).await {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    // A slow load is in flight across the restart.
    let slow = {
        let c = cache.clone();
        tokio::spawn(async move {
            c.get_with(1, || async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, std::io::Error>(10)
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(crash.cast(()).await.is_ok());
    // The crasher's restart is recorded once the whole group (the cache node too) was
    // stopped and started again.
    for _ in 0..100 {
        if m.tree().find("root/group/crasher").map(|n| n.restarts) == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(m.tree().find("root/group/crasher").map(|n| n.restarts), Some(1));
    // The restart neither cancelled the load nor closed the cache.
    assert_eq!(slow.await.ok().and_then(Result::ok), Some(10));
    let loaded = cache.get_with(2, || async { Ok::<_, std::io::Error>(20) }).await;
    assert_eq!(loaded.ok(), Some(20));
    // Stats are attached again by the new incarnation.
    assert_eq!(
        gauge(&m.tree(), "root/group/lifetime", "size"),
        Some(serde_json::json!(2))
    );

    // A final stop closes it: a running load is cancelled, no new load starts, reads work.
    let pending = {
        let c = cache.clone();
        tokio::spawn(async move {
            c.get_with(3, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, std::io::Error>(30)
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(group.terminate_child("lifetime").await.is_ok());
    assert!(matches!(pending.await, Ok(Err(_))));
    let refused = cache.get_with(4, || async { Ok::<_, std::io::Error>(40) }).await;
    assert!(
        matches!(refused, Err(uno_runtime::cache::CacheError::Closed { .. })),
        "{refused:?}"
    );
    assert_eq!(cache.get(&1), Some(10));
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

type Handles = Vec<Arc<dyn uno_runtime::actors::StatsSource>>;

#[tokio::test(start_paused = true)]
async fn sync_primitives_attached_to_a_task_node_show_their_counters_and_holder_path() {
    use uno_runtime::sync::{AsyncEvent, AsyncLock, AsyncSemaphore, KeyedRateLimiter, Limiter, RateLimiter};
    let m = manager().await;
    let lock = Arc::new(AsyncLock::builder(0u32).name("ledger").build());
    let sem = AsyncSemaphore::new("slots", 3).unwrap_or_else(|e| panic!("{e}"));
    let lim = Limiter::new("fetches", 2).unwrap_or_else(|e| panic!("{e}"));
    let rate = RateLimiter::new("calls", 10.0, 5).unwrap_or_else(|e| panic!("{e}"));
    let keyed = KeyedRateLimiter::<u32>::new("per-user", 10.0, 5).unwrap_or_else(|e| panic!("{e}"));
    let ready = AsyncEvent::new("ready");
    let spec = {
        let (lock, sem, lim, rate, keyed, ready) = (
            lock.clone(),
            sem.clone(),
            lim.clone(),
            rate.clone(),
            keyed.clone(),
            ready.clone(),
        );
        uno_runtime::task::as_task("worker", move |ctx| {
            let (lock, sem, lim, rate, keyed, ready) = (
                lock.clone(),
                sem.clone(),
                lim.clone(),
                rate.clone(),
                keyed.clone(),
                ready.clone(),
            );
            async move {
                let stats = ctx.stats();
                let _handles: Handles = vec![
                    lock.attach_stats(&stats),
                    sem.attach_stats(&stats),
                    lim.attach_stats(&stats),
                    rate.attach_stats(&stats),
                    keyed.attach_stats(&stats),
                    ready.attach_stats(&stats),
                ];
                let _permit = sem.try_acquire()?;
                lim.run(async {}).await;
                rate.try_acquire(2)?;
                keyed.try_acquire(&7, 1)?;
                let _held = lock.lock().await?;
                ready.set();
                ctx.cancelled().await;
                Ok::<_, uno_runtime::sync::SyncError>(())
            }
        })
    };
    assert!(uno_runtime::task::spawn_task(&m, spec).await.is_ok());
    assert!(ready.wait_timeout(Duration::from_secs(5)).await);

    let tree = m.tree();
    let at = |key: &str| gauge(&tree, "root/worker", key);
    assert_eq!(at("ledger.acquired"), Some(serde_json::json!(1)), "{tree}");
    let holder = at("ledger.holder")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(holder.contains("root/worker"), "holder: {holder}");
    assert_eq!(lock.holder().and_then(|h| h.node).as_deref(), Some("root/worker"));
    assert_eq!(at("slots.acquired"), Some(serde_json::json!(1)), "{tree}");
    assert_eq!(at("fetches.peak"), Some(serde_json::json!(1)), "{tree}");
    assert_eq!(at("calls.admitted"), Some(serde_json::json!(2)), "{tree}");
    assert_eq!(at("per-user.admitted"), Some(serde_json::json!(1)), "{tree}");
    assert_eq!(at("ready.is_set"), Some(serde_json::json!(true)), "{tree}");
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn resilience_primitives_attached_to_a_node_show_their_counters() {
    use uno_runtime::resilience::{AdmissionGate, CircuitBreaker};
    let m = manager().await;
    let breaker = CircuitBreaker::builder("payments")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let gate = AdmissionGate::builder("inbox", 4)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Attached by a task node to its own stats.
    let (b, g) = (breaker.clone(), gate.clone());
    let attached = Arc::new(Mutex::new(Handles::new()));
    let a = attached.clone();
    let spec = uno_runtime::task::as_task("payments-worker", move |ctx| {
        let (b, g, a) = (b.clone(), g.clone(), a.clone());
        async move {
            if let Ok(mut v) = a.lock() {
                v.push(b.attach_stats(&ctx.stats()));
                v.push(g.attach_stats(&ctx.stats()));
            }
            ctx.cancelled().await;
            Ok::<_, std::io::Error>(())
        }
    });
    assert!(uno_runtime::task::spawn_task(&m, spec).await.is_ok());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ok = breaker.call(async { Ok::<_, std::io::Error>(1) }).await;
    assert!(ok.is_ok());
    let admitted = gate.try_admit();
    assert!(admitted.is_ok());

    let tree = m.tree();
    let at = |key: &str| gauge(&tree, "root/payments-worker", key);
    assert_eq!(at("payments.calls"), Some(serde_json::json!(1)), "{tree}");
    assert_eq!(at("payments.state"), Some(serde_json::json!("Closed")), "{tree}");
    assert_eq!(at("inbox.admitted"), Some(serde_json::json!(1)), "{tree}");
    assert_eq!(at("inbox.in_flight"), Some(serde_json::json!(1)), "{tree}");
    drop(admitted);
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn tasks_of_a_group_run_with_their_leaf_path_for_lock_holders() {
    let m = manager().await;
    let mut group = match uno_runtime::task::TaskGroup::<()>::builder("jobs")
        .start::<Option<String>>(&m)
        .await
    {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let spawned = group.spawn("one", async {
        Ok::<_, std::io::Error>(uno_runtime::sync::current_node_path().map(|p| p.to_string()))
    });
    assert!(spawned.is_ok());
    let paths = group.join().await.unwrap_or_else(|e| panic!("{e}"));
    let path = paths.into_iter().next().flatten().unwrap_or_default();
    assert!(path.starts_with("root/jobs") && path.ends_with("one"), "path: {path}");
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}
