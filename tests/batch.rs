//! AsyncBatcher: every rule of issue 5 (batcher part), timing with paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{advance, sleep, Instant};
use uno_runtime::batch::{AsyncBatcher, BatchError, BatcherConfigError};

#[derive(Debug, PartialEq, Eq)]
struct Boom(String);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

type Sizes = Arc<Mutex<Vec<usize>>>;

fn sizes(s: &Sizes) -> Vec<usize> {
    s.lock().map(|v| v.clone()).unwrap_or_default()
}

/// A batcher doubling its inputs and recording each batch's size.
fn doubler(max_batch: usize, max_wait_ms: u64) -> (AsyncBatcher<u64, u64, Boom>, Sizes) {
    let seen: Sizes = Arc::default();
    let s = seen.clone();
    let b = AsyncBatcher::builder("doubler")
        .max_batch_size(max_batch)
        .max_wait(Duration::from_millis(max_wait_ms))
        .max_concurrent(4)
        .build(move |items: Vec<u64>| {
            if let Ok(mut v) = s.lock() {
                v.push(items.len());
            }
            async move { Ok::<_, Boom>(items.iter().map(|i| i * 2).collect()) }
        });
    match b {
        Ok(b) => (b, seen),
        Err(e) => panic!("{e}"),
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn config_is_validated() {
    let f = |v: Vec<u8>| async move { Ok::<_, Boom>(v) };
    let e = AsyncBatcher::builder("b").max_batch_size(0).build(f).err();
    assert_eq!(e, Some(BatcherConfigError::ZeroBatchSize { batcher: "b".into() }));
    let e = AsyncBatcher::builder("b").max_concurrent(0).build(f).err();
    assert!(matches!(e, Some(BatcherConfigError::ZeroConcurrency { .. })));
    let e = AsyncBatcher::builder("b").queue_capacity(0).build(f).err();
    assert!(matches!(e, Some(BatcherConfigError::ZeroQueueCapacity { .. })));
}

#[tokio::test(start_paused = true)]
async fn seven_submits_with_max_batch_three_give_3_3_1() {
    let (b, seen) = doubler(3, 50);
    let start = Instant::now();
    let calls: Vec<_> = (0..7u64)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { (i, b.submit(i).await, Instant::now()) })
        })
        .collect();
    for c in calls {
        let (i, r, at) = match c.await {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.ok(), Some(i * 2));
        // Full batches go at once; the last single item waits max_wait.
        let expected = if i < 6 { 0 } else { 50 };
        assert_eq!(at - start, Duration::from_millis(expected), "item {i}");
    }
    assert_eq!(sizes(&seen), vec![3, 3, 1]);
    assert_eq!(b.stats().batches, 3);
}

#[tokio::test(start_paused = true)]
async fn max_wait_counts_from_the_first_queued_item() {
    let (b, seen) = doubler(10, 100);
    let start = Instant::now();
    let b1 = b.clone();
    let first = tokio::spawn(async move { (b1.submit(1).await, Instant::now()) });
    settle().await;
    advance(Duration::from_millis(60)).await;
    let b2 = b.clone();
    let second = tokio::spawn(async move { (b2.submit(2).await, Instant::now()) });
    let (r1, t1) = first
        .await
        .unwrap_or((Err(BatchError::Lost { batcher: String::new() }), start));
    let (r2, t2) = second
        .await
        .unwrap_or((Err(BatchError::Lost { batcher: String::new() }), start));
    assert_eq!((r1.ok(), r2.ok()), (Some(2), Some(4)));
    assert_eq!(t1 - start, Duration::from_millis(100));
    assert_eq!(t2, t1);
    assert_eq!(sizes(&seen), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn results_reach_the_right_callers_under_random_completion_orders() {
    // Each batch sleeps a pseudo-random time, so batches finish out of order.
    let rng = Arc::new(AtomicUsize::new(0x2545_f491));
    let b = AsyncBatcher::builder("shuffled")
        .max_batch_size(5)
        .max_wait(Duration::from_millis(1))
        .max_concurrent(8)
        .build(move |items: Vec<u64>| {
            let x = rng.fetch_add(0x9e37_79b9, Ordering::Relaxed);
            let delay = (x.wrapping_mul(6_364_136_223) >> 7) % 97;
            async move {
                sleep(Duration::from_millis(delay as u64)).await;
                Ok::<_, Boom>(items.iter().map(|i| i * 10 + 7).collect())
            }
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let calls: Vec<_> = (0..200u64)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                sleep(Duration::from_millis(i % 13)).await;
                (i, b.submit(i).await)
            })
        })
        .collect();
    for c in calls {
        let (i, r) = match c.await {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.ok(), Some(i * 10 + 7));
    }
    let s = b.stats();
    assert_eq!(s.succeeded, 200);
    assert!(s.batches >= 40);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_length_fails_the_batch_naming_both_lengths() {
    let b = AsyncBatcher::builder("short")
        .max_batch_size(3)
        .build(|items: Vec<u32>| async move { Ok::<_, Boom>(vec![0u32; items.len() - 1]) });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let (x, y, z) = tokio::join!(b.submit(1), b.submit(2), b.submit(3));
    for r in [x, y, z] {
        match r {
            Err(
                e @ BatchError::WrongLength {
                    expected: 3, got: 2, ..
                },
            ) => {
                let msg = e.to_string();
                assert!(msg.contains("returned 2 results for 3 items"), "{msg}");
                assert!(msg.contains("`short`"), "{msg}");
            }
            other => panic!("expected WrongLength, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_error_reaches_every_caller_of_that_batch() {
    let b = AsyncBatcher::builder("failing")
        .max_batch_size(2)
        .build(|items: Vec<u32>| async move {
            if items.contains(&13) {
                Err(Boom("unlucky".into()))
            } else {
                Ok(items)
            }
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let (x, y) = tokio::join!(b.submit(13), b.submit(1));
    let (ex, ey) = match (x, y) {
        (Err(BatchError::Batch { source: a, .. }), Err(BatchError::Batch { source: b, .. })) => (a, b),
        other => panic!("expected batch errors, got {other:?}"),
    };
    assert!(Arc::ptr_eq(&ex, &ey), "one error shared, not cloned");
    assert_eq!(*ex, Boom("unlucky".into()));
    // The next batch is unaffected.
    let (x, y) = tokio::join!(b.submit(2), b.submit(3));
    assert_eq!((x.ok(), y.ok()), (Some(2), Some(3)));
    assert_eq!(b.stats().batch_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_function_gives_its_callers_an_error_and_later_items_are_served() {
    let b = AsyncBatcher::builder("panicky")
        .max_batch_size(2)
        .build(|items: Vec<u32>| async move {
            if items.contains(&0) {
                panic!("batch function exploded");
            }
            Ok::<_, Boom>(items)
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    // Two batches queued together: the first panics, the second is still served.
    let (x, y, z, w) = tokio::join!(b.submit(0), b.submit(1), b.submit(2), b.submit(3));
    for r in [x, y] {
        match r {
            Err(BatchError::Panicked { message, batcher }) => {
                assert!(message.contains("exploded"));
                assert_eq!(batcher, "panicky");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    assert_eq!((z.ok(), w.ok()), (Some(2), Some(3)));
    assert_eq!(b.stats().panics, 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrent_batches_run() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let b = AsyncBatcher::builder("limited")
        .max_batch_size(1)
        .max_concurrent(2)
        .build(move |items: Vec<u32>| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(10)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Boom>(items)
            }
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let start = Instant::now();
    let all = futures::future::join_all((0..6).map(|i| b.submit(i))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(30));
}

/// A batcher whose batches block until released.
fn gated(capacity: usize, timeout: Option<Duration>) -> (AsyncBatcher<u32, u32, Boom>, Arc<tokio::sync::Semaphore>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let mut builder = AsyncBatcher::builder("gated")
        .max_batch_size(1)
        .max_wait(Duration::ZERO)
        .queue_capacity(capacity);
    if let Some(t) = timeout {
        builder = builder.overload_timeout(t);
    }
    let b = builder.build(move |items: Vec<u32>| {
        let g = g.clone();
        async move {
            let _ = g.acquire().await.map(|p| p.forget());
            Ok::<_, Boom>(items)
        }
    });
    match b {
        Ok(b) => (b, gate),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_applies_backpressure_then_overloaded() {
    let (b, gate) = gated(2, Some(Duration::from_millis(100)));
    let mut held = Vec::new();
    // One item runs (blocked on the gate), two fill the queue.
    for i in 0..3 {
        let b = b.clone();
        held.push(tokio::spawn(async move { b.submit(i).await }));
        settle().await;
    }
    assert_eq!(b.stats().queued, 2);
    let start = Instant::now();
    let r = b.submit(9).await;
    match r {
        Err(e @ BatchError::Overloaded { capacity: 2, .. }) => {
            assert!(e.to_string().contains("queue of 2 items stayed full for 100ms"), "{e}");
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // A waiting submit gets in as soon as room frees up.
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.submit(4).await });
    settle().await;
    gate.add_permits(10);
    assert_eq!(waiting.await.ok().and_then(|r| r.ok()), Some(4));
    for h in held {
        assert!(h.await.ok().is_some_and(|r| r.is_ok()));
    }
    assert_eq!(b.stats().overloaded, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_removes_its_item() {
    let (b, seen) = doubler(10, 100);
    let b1 = b.clone();
    let keep = tokio::spawn(async move { b1.submit(1).await });
    settle().await;
    // This caller gives up before the flush.
    let gone = tokio::time::timeout(Duration::from_millis(10), b.submit(2)).await;
    assert!(gone.is_err());
    assert_eq!(b.stats().queued, 1);
    assert_eq!(keep.await.ok().and_then(|r| r.ok()), Some(2));
    assert_eq!(sizes(&seen), vec![1], "the dropped item never reached a batch");
    assert_eq!(b.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_the_queue_and_waits_for_running_batches() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let b = AsyncBatcher::builder("flushing")
        .max_batch_size(4)
        .max_wait(Duration::from_secs(3600))
        .build(move |items: Vec<u32>| {
            let d = d.clone();
            async move {
                sleep(Duration::from_millis(10)).await;
                d.fetch_add(items.len(), Ordering::SeqCst);
                Ok::<_, Boom>(items)
            }
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let calls: Vec<_> = (0..10u32)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { (i, b.submit(i).await) })
        })
        .collect();
    settle().await;
    let start = Instant::now();
    b.shutdown().await;
    // 10 items in batches of 4, 4, 2, one at a time: nothing waited for max_wait.
    assert_eq!(done.load(Ordering::SeqCst), 10);
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    for c in calls {
        let (i, r) = match c.await {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.ok(), Some(i));
    }
    assert!(matches!(b.submit(1).await, Err(BatchError::Closed { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_clone_keeps_the_batcher_serving_after_the_original_is_dropped() {
    let (b, seen) = doubler(10, 1000);
    let b1 = b.clone();
    let call = tokio::spawn(async move { b1.submit(21).await });
    settle().await;
    drop(b);
    // The caller's clone keeps the batcher alive until its own result arrives.
    assert_eq!(call.await.ok().and_then(|r| r.ok()), Some(42));
    assert_eq!(sizes(&seen), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn dedup_loads_identical_keys_once() {
    let seen: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
    let s = seen.clone();
    let b = AsyncBatcher::builder("loader")
        .max_batch_size(6)
        .build_dedup(move |keys: Vec<u32>| {
            if let Ok(mut v) = s.lock() {
                v.push(keys.clone());
            }
            async move { Ok::<_, Boom>(keys.iter().map(|k| format!("user{k}")).collect()) }
        });
    let b = match b {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let rs = futures::future::join_all([3, 1, 3, 2, 1, 3].map(|k| b.submit(k))).await;
    let rs: Vec<_> = rs.into_iter().map(|r| r.ok()).collect();
    assert_eq!(
        rs,
        ["user3", "user1", "user3", "user2", "user1", "user3"].map(|s| Some(s.to_string()))
    );
    assert_eq!(seen.lock().map(|v| v.clone()).unwrap_or_default(), vec![vec![3, 1, 2]]);
    assert_eq!(b.stats().deduplicated, 3);
}
