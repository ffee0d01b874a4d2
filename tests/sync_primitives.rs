//! Rules of the `sync` primitives, on paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::time::Instant;
use uno_runtime::sync::{
    scope_node_path, timeout, AsyncEvent, AsyncLock, AsyncSemaphore, KeyedRateLimiter, Limiter, LockOwner, RateLimiter,
    SyncError,
};

const MS: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------- AsyncLock

#[tokio::test(start_paused = true)]
async fn lock_records_holder_task_node_location_and_since() {
    let lock = Arc::new(AsyncLock::builder(0u8).name("cfg").build());
    let l = Arc::clone(&lock);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scope_node_path("root/cfg", async move {
        let line = line!() + 1;
        let guard = l.lock().await.unwrap();
        let _ = tx.send(line);
        let _ = release_rx.await;
        drop(guard);
    }));
    let line = rx.await.unwrap();
    tokio::time::sleep(MS * 250).await;
    let holder = lock.holder().expect("held");
    assert_eq!(holder.owner, LockOwner::Task(task.id()));
    assert_eq!(holder.node.as_deref(), Some("root/cfg"));
    assert_eq!(holder.location.line(), line);
    assert!(holder.location.file().ends_with("sync_primitives.rs"));
    assert_eq!(holder.held_for, MS * 250);
    release_tx.send(()).unwrap();
    task.await.unwrap();
    assert!(lock.holder().is_none());
    assert_eq!(lock.stats().acquired, 1);
}

#[tokio::test(start_paused = true)]
async fn lock_timeout_names_lock_holder_and_waited() {
    let lock = Arc::new(AsyncLock::builder(()).name("ledger").build());
    let l = Arc::clone(&lock);
    let holder = tokio::spawn(async move {
        let _g = l.lock().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    tokio::time::sleep(MS * 100).await;
    let start = Instant::now();
    let err = lock.lock_timeout(MS * 300).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 300);
    match &err {
        SyncError::LockTimeout {
            lock: name,
            waited,
            holder: Some(h),
        } => {
            assert_eq!(&**name, "ledger");
            assert_eq!(*waited, MS * 300);
            assert_eq!(h.owner, LockOwner::Task(holder.id()));
            assert_eq!(h.held_for, MS * 400);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("ledger") && msg.contains("300ms") && msg.contains("held by task"),
        "{msg}"
    );
    assert_eq!(lock.stats().timeouts, 1);
    assert_eq!(lock.stats().waiting, 0);
    holder.abort();
}

#[tokio::test]
async fn relocking_from_the_holding_task_is_an_error_not_a_hang() {
    let lock = Arc::new(AsyncLock::new(1));
    let l = Arc::clone(&lock);
    tokio::spawn(async move {
        let _g = l.lock().await.unwrap();
        assert!(matches!(l.lock().await, Err(SyncError::WouldDeadlock { .. })));
        assert!(matches!(l.try_lock(), Err(SyncError::WouldDeadlock { .. })));
        let err = l.lock_timeout(Duration::from_secs(60)).await.unwrap_err();
        assert!(err.to_string().contains("would deadlock"), "{err}");
    })
    .await
    .unwrap();
    assert_eq!(lock.stats().would_deadlock, 3);
    // Another task that finds it held just gets `LockHeld` from try_lock.
    let _g = lock.lock().await.unwrap();
    let other = Arc::clone(&lock);
    let err = tokio::spawn(async move { other.try_lock().map(|_| ()) })
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SyncError::LockHeld { holder: Some(_), .. }));
}

#[tokio::test(start_paused = true)]
async fn lock_held_past_threshold_is_reported() {
    let lock = AsyncLock::builder(()).warn_held_after(Some(MS * 100)).build();
    {
        let _g = lock.lock().await.unwrap();
        tokio::time::sleep(MS * 50).await;
    }
    assert_eq!(lock.stats().held_too_long, 0);
    {
        let _g = lock.lock().await.unwrap();
        tokio::time::sleep(MS * 150).await;
    }
    assert_eq!(lock.stats().held_too_long, 1);
}

#[tokio::test(start_paused = true)]
async fn wait_for_cycle_fails_one_waiter_with_deadlock() {
    let a = Arc::new(
        AsyncLock::builder(())
            .name("accounts")
            .deadlock_check_after(Some(MS * 200))
            .build(),
    );
    let b = Arc::new(
        AsyncLock::builder(())
            .name("orders")
            .deadlock_check_after(Some(MS * 200))
            .build(),
    );
    let barrier = Arc::new(Barrier::new(2));
    let spawn = |first: Arc<AsyncLock<()>>, second: Arc<AsyncLock<()>>, delay: Duration| {
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            let _g1 = first.lock().await.unwrap();
            barrier.wait().await;
            tokio::time::sleep(delay).await;
            let r = second.lock().await.map(|_| ());
            tokio::time::sleep(MS * 10).await;
            r
        })
    };
    let t1 = spawn(Arc::clone(&a), Arc::clone(&b), MS);
    let t2 = spawn(Arc::clone(&b), Arc::clone(&a), MS * 50);
    let start = Instant::now();
    let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
    // t1 started waiting first, so its check comes first: it fails and t2 proceeds.
    assert!(r2.is_ok(), "{r2:?}");
    let err = r1.unwrap_err();
    let SyncError::Deadlock { cycle } = &err else {
        panic!("unexpected {err:?}")
    };
    let names: Vec<&str> = cycle.iter().map(|e| &*e.lock).collect();
    assert_eq!(names, ["orders", "accounts"]);
    let msg = err.to_string();
    assert!(
        msg.contains("`orders` held by task") && msg.contains("`accounts` held by task"),
        "{msg}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(a.stats().deadlocks + b.stats().deadlocks, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pending_lock_leaks_nothing() {
    let lock = Arc::new(AsyncLock::new(0));
    let guard = lock.lock().await.unwrap();
    let l = Arc::clone(&lock);
    let pending = tokio::spawn(async move {
        let _ = l.lock().await;
    });
    tokio::time::sleep(MS * 10).await;
    assert_eq!(lock.stats().waiting, 1);
    pending.abort();
    let _ = pending.await;
    assert_eq!(lock.stats().waiting, 0);
    drop(guard);
    // Free again, for anyone.
    let l = Arc::clone(&lock);
    tokio::spawn(async move { *l.try_lock().unwrap() += 1 }).await.unwrap();
    assert_eq!(*lock.lock().await.unwrap(), 1);
}

// ---------------------------------------------------------------- AsyncSemaphore

#[tokio::test(start_paused = true)]
async fn semaphore_errors_name_semaphore_permits_available_and_waiters() {
    let sem = AsyncSemaphore::new("uploads", 3).unwrap();
    let held = sem.acquire_many(2).await.unwrap();
    assert_eq!(held.num_permits(), 2);
    let err = sem.acquire_many(4).await.unwrap_err();
    assert!(matches!(
        err,
        SyncError::TooManyPermits {
            asked: 4,
            capacity: 3,
            ..
        }
    ));
    let s2 = sem.clone();
    let waiter = tokio::spawn(async move { s2.acquire_many(3).await.map(|_| ()) });
    tokio::time::sleep(MS).await;
    let err = sem.acquire_timeout(2, MS * 100).await.unwrap_err();
    match &err {
        SyncError::NoPermits {
            semaphore,
            asked: 2,
            // tokio hands free permits to the head of the queue (the waiter for 3) as they
            // come, so none is "available" to others; the waiter is counted, not the caller.
            available: 0,
            capacity: 3,
            waiters: 1,
            waited: Some(w),
        } => {
            assert_eq!(&**semaphore, "uploads");
            assert_eq!(*w, MS * 100);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("uploads"));
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_eq!(sem.available_permits(), 3);
    assert!(AsyncSemaphore::new("none", 0).is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_pending_semaphore_acquires_leaks_no_permit() {
    let sem = AsyncSemaphore::new("s", 2).unwrap();
    let one = sem.acquire().await.unwrap();
    {
        // Wants 2 while 1 is free: pending, then dropped.
        let r = tokio::time::timeout(MS * 10, sem.acquire_many(2)).await;
        assert!(r.is_err());
    }
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(sem.stats().waiting, 0);
    drop(one);
    assert_eq!(sem.available_permits(), 2);
    let both = sem.try_acquire_many(2).unwrap();
    assert_eq!(both.num_permits(), 2);
}

// ---------------------------------------------------------------- AsyncEvent

#[tokio::test(start_paused = true)]
async fn event_set_clear_wait_and_who_set_it() {
    let ev = AsyncEvent::new("ready");
    assert!(!ev.wait_timeout(MS * 100).await);
    let e2 = ev.clone();
    let waiter = tokio::spawn(async move {
        e2.wait().await;
        Instant::now()
    });
    tokio::time::sleep(MS * 30).await;
    let line = line!() + 1;
    ev.set();
    let woke = waiter.await.unwrap();
    assert!(ev.is_set());
    assert_eq!(ev.set_by().unwrap().line(), line);
    assert_eq!(ev.set_at(), Some(woke));
    assert!(ev.wait_timeout(MS).await);
    ev.clear();
    assert!(!ev.is_set());
    assert!(ev.set_by().is_none());
    assert!(!ev.wait_timeout(MS * 10).await);
    let stats = ev.stats();
    assert_eq!((stats.sets, stats.timeouts), (1, 2));
}

// ---------------------------------------------------------------- Limiter

#[tokio::test(start_paused = true)]
async fn limiter_counts_active_peak_and_waiting() {
    let limiter = Limiter::new("jobs", 2).unwrap();
    let a = limiter.acquire().await.unwrap();
    let b = limiter.acquire().await.unwrap();
    let l2 = limiter.clone();
    let waiter = tokio::spawn(async move { l2.run(async { 5 }).await });
    tokio::time::sleep(MS).await;
    let s = limiter.stats();
    assert_eq!((s.active, s.peak, s.waiting), (2, 2, 1));
    let err = limiter.acquire_timeout(MS * 20).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::LimiterFull {
                limit: 2,
                waiting: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("jobs"));
    assert!(limiter.try_acquire().is_err());
    drop((a, b));
    assert_eq!(waiter.await.unwrap(), 5);
    let s = limiter.stats();
    assert_eq!((s.active, s.peak, s.waiting, s.rejected), (0, 2, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pending_limiter_acquire_leaks_no_slot() {
    let limiter = Limiter::new("l", 1).unwrap();
    let held = limiter.acquire().await.unwrap();
    assert!(tokio::time::timeout(MS * 5, limiter.acquire()).await.is_err());
    assert!(tokio::time::timeout(MS * 5, limiter.run(async {})).await.is_err());
    assert_eq!(limiter.stats().waiting, 0);
    drop(held);
    assert_eq!(limiter.stats().active, 0);
    let _again = limiter.try_acquire().unwrap();
}

// ---------------------------------------------------------------- RateLimiter

#[tokio::test(start_paused = true)]
async fn rate_limiter_starts_full_refills_continuously_and_waits() {
    let rl = RateLimiter::new("api", 10.0, 3).unwrap();
    rl.try_acquire(3).unwrap(); // starts full
    let err = rl.try_acquire(1).unwrap_err();
    let SyncError::RateLimited { retry_after, .. } = err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(retry_after, MS * 100);
    tokio::time::advance(MS * 100).await;
    rl.try_acquire(1).unwrap(); // one token refilled after 1/rate
    let start = Instant::now();
    rl.acquire(2).await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= MS * 200 && waited < MS * 210, "{waited:?}");
    assert!(matches!(
        rl.acquire(4).await,
        Err(SyncError::ExceedsBurst { asked: 4, burst: 3, .. })
    ));
    assert!(matches!(rl.try_acquire(4), Err(SyncError::ExceedsBurst { .. })));
    rl.acquire(0).await.unwrap();
    let s = rl.stats();
    assert_eq!(s.admitted, 6);
    assert!(s.waits >= 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_timeout_fails_at_once_when_the_wait_is_too_long() {
    let rl = RateLimiter::new("slow", 1.0, 1).unwrap();
    rl.try_acquire(1).unwrap();
    let start = Instant::now();
    let err = rl.acquire_timeout(1, MS * 500).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "must fail at once, not after waiting");
    match &err {
        SyncError::RateWaitTooLong { needed, timeout, .. } => {
            assert_eq!(*needed, Duration::from_secs(1));
            assert_eq!(*timeout, MS * 500);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("slow"));
    // A wait that fits is taken.
    rl.acquire_timeout(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pending_rate_acquire_takes_no_token() {
    let rl = RateLimiter::new("r", 1.0, 1).unwrap();
    rl.try_acquire(1).unwrap();
    assert!(tokio::time::timeout(MS * 500, rl.acquire(1)).await.is_err());
    tokio::time::advance(MS * 500).await;
    // The dropped acquire took nothing: the token refilled at 1 s is there.
    rl.try_acquire(1).unwrap();
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_rejects_bad_config() {
    assert!(RateLimiter::new("x", 0.0, 1).is_err());
    assert!(RateLimiter::new("x", f64::NAN, 1).is_err());
    assert!(RateLimiter::new("x", f64::INFINITY, 1).is_err());
    assert!(RateLimiter::new("x", -1.0, 1).is_err());
    assert!(RateLimiter::new("x", 1.0, 0).is_err());
    assert!(RateLimiter::new("x", 1e-30, 1).is_err());
}

#[tokio::test(start_paused = true)]
async fn keyed_rate_limiter_limits_per_key_and_sweeps_idle_keys() {
    let rl = KeyedRateLimiter::new("per-user", 2.0, 1)
        .unwrap()
        .with_sweep_interval(Duration::from_secs(1));
    rl.try_acquire(&"a", 1).unwrap();
    rl.try_acquire(&"b", 1).unwrap();
    assert!(rl.try_acquire(&"a", 1).is_err());
    assert_eq!(rl.len(), 2);
    let start = Instant::now();
    rl.acquire(&"a", 1).await.unwrap();
    assert_eq!(start.elapsed(), MS * 500);
    tokio::time::advance(Duration::from_secs(2)).await;
    // The next call sweeps: a and b are idle (full again) and go.
    rl.try_acquire(&"c", 1).unwrap();
    assert_eq!(rl.len(), 1);
    assert_eq!(rl.stats().keys_removed, 2);
    let err = rl.acquire_timeout(&"c", 1, MS * 100).await.unwrap_err();
    assert!(matches!(err, SyncError::RateWaitTooLong { .. }));
}

// ---------------------------------------------------------------- timeout

#[tokio::test(start_paused = true)]
async fn timeout_names_operation_limit_and_elapsed() {
    assert_eq!(timeout("quick", MS * 10, async { 3 }).await.unwrap(), 3);
    let err = timeout("load users", MS * 250, std::future::pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(err.operation, "load users");
    assert_eq!(err.limit, MS * 250);
    assert_eq!(err.elapsed, MS * 250);
    assert_eq!(err.to_string(), "`load users` timed out after 250ms (limit 250ms)");
    let as_sync: SyncError = err.into();
    assert!(as_sync.to_string().contains("load users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_lock_on_two_threads_never_reports_a_false_deadlock() {
    let lock = Arc::new(AsyncLock::builder(0u64).name("counter").build());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let lock = Arc::clone(&lock);
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let mut g = lock.lock().await?;
                *g += 1;
                tokio::task::yield_now().await; // hold it across a yield: others queue
            }
            Ok::<_, SyncError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*lock.lock().await.unwrap(), 1600);
    let s = lock.stats();
    assert_eq!((s.acquired, s.would_deadlock, s.deadlocks, s.waiting), (1601, 0, 0, 0));
    assert!(lock.holder().is_none());
}
