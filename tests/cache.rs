//! AsyncCache: every rule of issue 5 (cache part), timing with paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{advance, sleep, Instant};
use uno_runtime::cache::{AsyncCache, CacheConfigError, CacheError};

#[derive(Debug, PartialEq, Eq)]
struct Boom(&'static str);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}
impl std::error::Error for Boom {}

fn cache(ttl_s: u64) -> AsyncCache<String, u64> {
    match AsyncCache::builder("test").ttl(Duration::from_secs(ttl_s)).build() {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    }
}

/// Yields enough times for spawned tasks to run to their next await.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn config_is_validated() {
    let e = AsyncCache::<u32, u32>::builder("c").ttl(Duration::ZERO).build().err();
    assert_eq!(e, Some(CacheConfigError::ZeroTtl { cache: "c".to_string() }));
    let e = AsyncCache::<u32, u32>::builder("c").max_capacity(0).build().err();
    assert!(matches!(e, Some(CacheConfigError::ZeroCapacity { .. })));
    let e = AsyncCache::<u32, u32>::builder("c")
        .ttl(Duration::from_secs(5))
        .refresh_before(Duration::from_secs(5))
        .build()
        .err();
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("refresh_before (5s)") && msg.contains("ttl (5s)"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn get_insert_and_ttl_expiry() {
    let c = cache(10);
    assert_eq!(c.get("a"), None);
    c.insert("a".to_string(), 1);
    assert_eq!(c.get("a"), Some(1));
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(c.get("a"), Some(1));
    advance(Duration::from_millis(1)).await;
    assert_eq!(c.get("a"), None);
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (2, 2));
    assert_eq!(c.purge_expired(), 1);
    assert_eq!(c.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_misses_call_the_loader_once() {
    let c = cache(60);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            c.get_with("k".to_string(), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(50)).await;
                Ok::<_, Boom>(42)
            })
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.ok().and_then(|r| r.ok()), Some(42));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = c.stats();
    assert_eq!((s.loads, s.misses, s.size), (1, 100, 1));
}

#[tokio::test(start_paused = true)]
async fn different_keys_load_in_parallel() {
    let c = cache(60);
    let start = Instant::now();
    let load = |k: &'static str, v: u64| {
        let c = c.clone();
        async move {
            c.get_with(k.to_string(), move || async move {
                sleep(Duration::from_secs(1)).await;
                Ok::<_, Boom>(v)
            })
            .await
        }
    };
    let (a, b) = tokio::join!(load("a", 1), load("b", 2));
    assert_eq!((a.ok(), b.ok()), (Some(1), Some(2)));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_loader_error_reaches_every_waiter() {
    let c = cache(60);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            c.get_with("k".to_string(), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(10)).await;
                Err::<u64, _>(Boom("db down"))
            })
            .await
        }));
    }
    let mut sources = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Err(CacheError::Load { cache, source })) => {
                assert_eq!(cache, "test");
                assert_eq!(*source, Boom("db down"));
                sources.push(source);
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // One error, shared: the error type is not Clone.
    assert!(sources.iter().all(|s| Arc::ptr_eq(s, &sources[0])));
    assert_eq!(c.stats().load_failures, 1);
    assert_eq!(c.get("k"), None, "a failed load caches nothing");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_is_an_error_and_the_key_recovers() {
    let c = cache(60);
    let r = c
        .get_with("k".to_string(), || async {
            if true {
                panic!("loader exploded");
            }
            Ok::<u64, Boom>(1)
        })
        .await;
    match r {
        Err(CacheError::LoaderPanicked { message, .. }) => {
            assert!(message.contains("loader exploded"))
        }
        other => panic!("expected LoaderPanicked, got {other:?}"),
    }
    let r = c.get_with("k".to_string(), || async { Ok::<u64, Boom>(5) }).await;
    assert_eq!(r.ok(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn dropped_callers_do_not_cancel_the_load() {
    let c = cache(60);
    let fut = c.get_with("k".to_string(), || async {
        sleep(Duration::from_secs(1)).await;
        Ok::<u64, Boom>(9)
    });
    // Poll once (starting the load), then drop the caller.
    assert!(tokio::time::timeout(Duration::from_millis(1), fut).await.is_err());
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(c.get("k"), Some(9));
}

fn refreshing_cache(max_stale: Option<u64>) -> AsyncCache<String, u64> {
    let b = AsyncCache::builder("refreshing")
        .ttl(Duration::from_secs(10))
        .refresh_before(Duration::from_secs(3));
    let b = match max_stale {
        Some(s) => b.max_stale(Duration::from_secs(s)),
        None => b,
    };
    match b.build() {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    }
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_serves_current_value_and_refreshes_once() {
    let c = refreshing_cache(None);
    c.insert("k".to_string(), 1);
    let calls = Arc::new(AtomicUsize::new(0));
    let loader = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(1)).await;
            Ok::<u64, Boom>(2)
        }
    };
    // Before the refresh window: a plain hit, no refresh.
    advance(Duration::from_secs(6)).await;
    assert_eq!(c.get_with("k".into(), loader(calls.clone())).await.ok(), Some(1));
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // In the window: every hit returns the current value at once, one refresh starts.
    advance(Duration::from_secs(2)).await;
    for _ in 0..5 {
        assert_eq!(c.get_with("k".into(), loader(calls.clone())).await.ok(), Some(1));
    }
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats().refreshes, 1);
    advance(Duration::from_secs(1)).await;
    settle().await;
    // The refreshed value replaced the old one and is fresh for a new ttl.
    assert_eq!(c.get("k"), Some(2));
    advance(Duration::from_secs(9)).await;
    assert_eq!(c.get("k"), Some(2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_serves_stale_up_to_max_staleness() {
    let c = refreshing_cache(Some(5));
    c.insert("k".to_string(), 1);
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<u64, _>(Boom("backend down"))
        }
    };
    advance(Duration::from_secs(8)).await;
    assert_eq!(c.get_with("k".into(), failing(calls.clone())).await.ok(), Some(1));
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh");
    // After a failure no new refresh starts before expiry.
    assert_eq!(c.get_with("k".into(), failing(calls.clone())).await.ok(), Some(1));
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Past expiry, within max staleness: still served (and retried in the background).
    advance(Duration::from_secs(4)).await; // t = 12 s, expired at 10 s
    assert_eq!(c.get("k"), Some(1));
    assert_eq!(c.get_with("k".into(), failing(calls.clone())).await.ok(), Some(1));
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Past max staleness (15 s): the value is gone and the loader's error surfaces.
    advance(Duration::from_secs(3)).await; // t = 15 s
    assert_eq!(c.get("k"), None);
    let r = c.get_with("k".into(), failing(calls.clone())).await;
    assert!(matches!(r, Err(CacheError::Load { .. })), "{r:?}");
    let s = c.stats();
    assert_eq!(s.load_failures, 3);
    assert!(s.stale_served >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_foreground_reload_serves_stale() {
    let c = match AsyncCache::<String, u64>::builder("stale")
        .ttl(Duration::from_secs(10))
        .max_stale(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    c.insert("k".into(), 1);
    advance(Duration::from_secs(11)).await;
    let r = c.get_with("k".into(), || async { Err::<u64, _>(Boom("x")) }).await;
    assert_eq!(r.ok(), Some(1));
    // After a failure, hits serve stale at once and retry in the background; the
    // successful retry replaces the stale value.
    let r = c.get_with("k".into(), || async { Ok::<u64, Boom>(2) }).await;
    assert_eq!(r.ok(), Some(1));
    settle().await;
    assert_eq!(c.get("k"), Some(2));
    assert_eq!(c.stats().refreshes, 1);
}

/// Sets its flag when dropped: detects that a loader future was cancelled.
struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn invalidate_cancels_an_in_flight_refresh() {
    let c = refreshing_cache(None);
    c.insert("k".to_string(), 1);
    advance(Duration::from_secs(8)).await;
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = c
        .get_with("k".into(), move || async move {
            let _flag = DropFlag(d);
            sleep(Duration::from_secs(1)).await;
            Ok::<u64, Boom>(2)
        })
        .await;
    assert_eq!(r.ok(), Some(1));
    settle().await;
    assert_eq!(c.stats().in_flight, 1);
    assert!(c.invalidate("k"));
    settle().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "refresh aborted");
    assert_eq!(c.stats().in_flight, 0);
    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(c.get("k"), None, "the cancelled refresh wrote nothing");
}

#[tokio::test(start_paused = true)]
async fn invalidate_during_a_load_wakes_waiters_who_retry() {
    let c = cache(60);
    let c2 = c.clone();
    let first = tokio::spawn(async move {
        c2.get_with("k".to_string(), || async {
            sleep(Duration::from_secs(5)).await;
            Ok::<u64, Boom>(1)
        })
        .await
    });
    settle().await;
    let c3 = c.clone();
    let second = tokio::spawn(async move { c3.get_with("k".to_string(), || async { Ok::<u64, Boom>(2) }).await });
    settle().await;
    c.invalidate("k");
    settle().await;
    // The first caller's loader was consumed: it reports the cancellation; the second
    // still had its own loader and loaded the new state.
    let a = first.await.ok();
    let b = second.await.ok();
    assert!(matches!(a, Some(Err(CacheError::Cancelled { .. }))), "{a:?}");
    assert_eq!(b.and_then(|r| r.ok()), Some(2));
    assert_eq!(c.get("k"), Some(2));
}

#[tokio::test(start_paused = true)]
async fn invalidate_if_removes_a_prefix_and_clear_cancels_everything() {
    let c = cache(60);
    for k in ["user:1", "user:2", "order:1"] {
        c.insert(k.to_string(), 1);
    }
    assert_eq!(c.invalidate_if(|k| k.starts_with("user:")), 2);
    assert_eq!(c.get("user:1"), None);
    assert_eq!(c.get("order:1"), Some(1));
    assert_eq!(c.len(), 1);

    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.get_with("slow".to_string(), move || async move {
            let _flag = DropFlag(d);
            sleep(Duration::from_secs(5)).await;
            Ok::<u64, Boom>(1)
        })
        .await
    });
    settle().await;
    c.clear();
    settle().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(c.is_empty());
    let r = waiter.await.ok();
    assert!(matches!(r, Some(Err(CacheError::Cancelled { .. }))), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn insert_overrides_an_in_flight_load() {
    let c = cache(60);
    let c2 = c.clone();
    let t = tokio::spawn(async move {
        c2.get_with("k".to_string(), || async {
            sleep(Duration::from_secs(1)).await;
            Ok::<u64, Boom>(1)
        })
        .await
    });
    settle().await;
    c.insert("k".to_string(), 7);
    advance(Duration::from_secs(2)).await;
    settle().await;
    let _ = t.await;
    assert_eq!(c.get("k"), Some(7), "the older load did not overwrite the insert");
}

#[tokio::test(start_paused = true)]
async fn capacity_is_bounded_and_clock_keeps_hot_keys() {
    let c = match AsyncCache::<u32, u32>::builder("bounded")
        .ttl(Duration::from_secs(60))
        .max_capacity(1000)
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    for k in 0..1000 {
        c.insert(k, k);
    }
    assert_eq!(c.len(), 1000);
    for k in 0..500 {
        assert_eq!(c.get(&k), Some(k));
    }
    for k in 1000..1500 {
        c.insert(k, k);
    }
    assert_eq!(c.len(), 1000);
    let s = c.stats();
    assert_eq!(s.evictions, 500);
    assert_eq!(s.size, 1000);
    let hot = (0..500).filter(|k| c.get(k).is_some()).count();
    let cold = (500..1000).filter(|k| c.get(k).is_some()).count();
    assert!(hot > 2 * cold, "hot {hot} cold {cold}");
}

#[tokio::test(start_paused = true)]
async fn close_aborts_loads_and_refuses_new_ones() {
    let c = cache(60);
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let c2 = c.clone();
    let _waiter = tokio::spawn(async move {
        c2.get_with("k".to_string(), move || async move {
            let _flag = DropFlag(d);
            sleep(Duration::from_secs(5)).await;
            Ok::<u64, Boom>(1)
        })
        .await
    });
    settle().await;
    c.close().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let r = c.get_with("k".to_string(), || async { Ok::<u64, Boom>(1) }).await;
    assert!(matches!(r, Err(CacheError::Closed { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_aborts_its_loads() {
    let c = cache(60);
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let fut = c.get_with("k".to_string(), move || async move {
        let _flag = DropFlag(d);
        sleep(Duration::from_secs(5)).await;
        Ok::<u64, Boom>(1)
    });
    assert!(tokio::time::timeout(Duration::from_millis(1), fut).await.is_err());
    settle().await;
    drop(c);
    settle().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "no orphan load task");
}

#[tokio::test]
async fn the_coarse_clock_serves_hits_and_loads() {
    let c = match AsyncCache::<u32, u32>::builder("coarse")
        .ttl(Duration::from_secs(60))
        .coarse_clock(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(c.config().coarse_clock);
    let v = c.get_with(1, || async { Ok::<u32, Boom>(10) }).await;
    assert_eq!(v.ok(), Some(10));
    assert_eq!(c.get(&1), Some(10));
    assert!(c.invalidate(&1));
    assert_eq!(c.get(&1), None);
}
