//! Rules of the resilience layer, on paused tokio time.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uno_runtime::actors::backoff::Backoff;
use uno_runtime::resilience::{
    cancellable_fn, concurrent_limited_fn, rate_limited_fn, retry, retry_cancellable, timeout_fn, AdmissionGate,
    BreakerError, BreakerState, Cancelled, CircuitBreaker, ConfigError, ResilienceExt, RetryError, RetryPolicy,
};
use uno_runtime::sync::{Limiter, RateLimiter};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boom {0}")]
struct Boom(u32);

// ---------------------------------------------------------------- retry

#[tokio::test(start_paused = true)]
async fn retry_three_attempts_succeeds_after_two_failures() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .constant(MS * 100)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let v = retry(&policy, || async {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(Boom(n))
        } else {
            Ok(n)
        }
    })
    .await
    .unwrap();
    assert_eq!(v, 3);
    assert_eq!(start.elapsed(), MS * 200);
}

#[tokio::test(start_paused = true)]
async fn retry_returns_the_original_error_once_exhausted() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .constant(MS * 10)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = retry(&policy, || async {
        Err::<(), _>(Boom(calls.fetch_add(1, Ordering::SeqCst) + 1))
    })
    .await
    .unwrap_err();
    assert_eq!(
        err,
        RetryError::Exhausted {
            error: Boom(3),
            attempts: 3
        }
    );
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.into_error(), Some(Boom(3)));
}

#[tokio::test(start_paused = true)]
async fn retry_predicate_hook_and_backoff_delays() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(
            Backoff::exponential(MS * 10, MS * 1000)
                .unwrap()
                .with_jitter(0.0)
                .unwrap(),
        )
        .max_delay(MS * 25)
        .retry_if(|e: &Boom| e.0 != 99)
        .on_retry(move |e: &Boom, attempt, delay| s.lock().unwrap().push((e.0, attempt, delay)))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = retry(&policy, || async {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        Err::<(), _>(Boom(if n == 4 { 99 } else { n }))
    })
    .await
    .unwrap_err();
    assert_eq!(
        err,
        RetryError::NotRetryable {
            error: Boom(99),
            attempts: 4
        }
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [(1, 1, MS * 10), (2, 2, MS * 20), (3, 3, MS * 25)] // capped by max_delay
    );
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_the_max_total_elapsed_time() {
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .constant(MS * 100)
        .max_elapsed(MS * 250)
        .build()
        .unwrap();
    let start = Instant::now();
    let err = retry(&policy, || async { Err::<(), _>(Boom(0)) }).await.unwrap_err();
    assert!(matches!(err, RetryError::ElapsedLimit { attempts: 3, .. }), "{err:?}");
    assert_eq!(start.elapsed(), MS * 200);
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_the_retry_loop_at_once() {
    let token = CancellationToken::new();
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .constant(Duration::from_secs(60))
        .cancel_token(token.clone())
        .build()
        .unwrap();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(MS * 5).await;
        t.cancel();
    });
    let start = Instant::now();
    let err = retry(&policy, || async { Err::<(), _>(Boom(1)) }).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 5, "cancelled mid-wait, not after it");
    assert_eq!(
        err,
        RetryError::Cancelled {
            attempts: 1,
            last_error: Some(Boom(1))
        }
    );

    // A per-call token cancels an attempt in flight.
    let plain = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let call_token = CancellationToken::new();
    let t = call_token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(MS * 7).await;
        t.cancel();
    });
    let err = retry_cancellable(&plain, &call_token, || async {
        std::future::pending::<Result<(), Boom>>().await
    })
    .await
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_retries_share_no_state() {
    let policy = Arc::new(RetryPolicy::builder().max_attempts(3).constant(MS).build().unwrap());
    let mut handles = Vec::new();
    for _ in 0..4 {
        let policy = Arc::clone(&policy);
        handles.push(tokio::spawn(async move {
            let calls = AtomicU32::new(0);
            retry(&policy, || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    Err(Boom(n))
                } else {
                    Ok(n)
                }
            })
            .await
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), Ok(3));
    }
}

#[test]
fn retry_policy_is_validated_when_built() {
    assert_eq!(
        RetryPolicy::<Boom>::builder().max_attempts(0).build().unwrap_err(),
        ConfigError::ZeroAttempts
    );
    assert!(matches!(
        RetryPolicy::<Boom>::builder()
            .exponential(Duration::from_secs(2), Duration::from_secs(1))
            .build(),
        Err(ConfigError::Backoff(_))
    ));
    assert_eq!(
        RetryPolicy::<Boom>::builder()
            .max_elapsed(Duration::ZERO)
            .build()
            .unwrap_err(),
        ConfigError::ZeroMaxElapsed
    );
    for p in [
        RetryPolicy::<Boom>::builder().linear(MS, MS * 10),
        RetryPolicy::<Boom>::builder().full_jitter(MS, MS * 10),
        RetryPolicy::<Boom>::builder().equal_jitter(MS, MS * 10),
        RetryPolicy::<Boom>::builder().decorrelated_jitter(MS, MS * 10),
    ] {
        assert!(p.build().is_ok());
    }
}

// ---------------------------------------------------------------- combinators

#[tokio::test(start_paused = true)]
async fn fifteen_rate_limited_calls_at_10_per_second_burst_1_take_1_4_s() {
    let rl = RateLimiter::new("calls", 10.0, 1).unwrap();
    let start = Instant::now();
    for i in 0..15 {
        assert_eq!(async move { i }.rate_limited(rl.clone()).await, i);
    }
    assert!(start.elapsed() >= MS * 1400, "{:?}", start.elapsed());
    assert!(start.elapsed() < MS * 1500, "{:?}", start.elapsed());
    // Same through the closure wrapper, with 15 concurrent callers.
    let rl = RateLimiter::new("calls", 10.0, 1).unwrap();
    let f = Arc::new(rate_limited_fn(rl, || async { Instant::now() }));
    let start = Instant::now();
    let handles: Vec<_> = (0..15).map(|_| tokio::spawn(f())).collect();
    let mut last = start;
    for h in handles {
        last = last.max(h.await.unwrap());
    }
    assert!(last - start >= MS * 1400, "{:?}", last - start);
}

#[tokio::test(start_paused = true)]
async fn concurrent_limited_2_over_5_tasks_reaches_2_never_more() {
    let limiter = Limiter::new("pair", 2).unwrap();
    let current = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let work = {
        let (current, max) = (Arc::clone(&current), Arc::clone(&max));
        move || {
            let (current, max) = (Arc::clone(&current), Arc::clone(&max));
            async move {
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(MS * 10).await;
                current.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    let handles: Vec<_> = (0..5)
        .map(|_| tokio::spawn(work().concurrent_limited(limiter.clone())))
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(max.load(Ordering::SeqCst), 2);
    assert_eq!(limiter.stats().peak, 2);
    // And through the closure wrapper.
    max.store(0, Ordering::SeqCst);
    let f = Arc::new(concurrent_limited_fn(limiter.clone(), work));
    let handles: Vec<_> = (0..5).map(|_| tokio::spawn(f())).collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(max.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn timeout_handler_and_cancellable() {
    let err = std::future::pending::<()>()
        .timeout_handler("render", MS * 40)
        .await
        .unwrap_err();
    assert_eq!((err.limit, err.elapsed), (MS * 40, MS * 40));
    assert_eq!(&*err.operation, "render");
    let v = async {
        tokio::time::sleep(MS * 100).await;
        1
    }
    .timeout_handler_or("render", MS * 40, |t| {
        assert_eq!(t.elapsed, MS * 40);
        -1
    })
    .await;
    assert_eq!(v, -1);

    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(MS * 3).await;
        t.cancel();
    });
    let start = Instant::now();
    assert_eq!(
        std::future::pending::<()>().cancellable(token.clone()).await,
        Err(Cancelled)
    );
    assert_eq!(start.elapsed(), MS * 3);
    // Already cancelled: does not even start.
    assert_eq!(async { 1 }.cancellable(token).await, Err(Cancelled));
}

#[tokio::test(start_paused = true)]
async fn combinators_compose_in_any_order_and_spawn() {
    let rl = RateLimiter::new("r", 100.0, 1).unwrap();
    let lim = Limiter::new("l", 1).unwrap();
    let token = CancellationToken::new();
    let a = tokio::spawn(
        async { 1 }
            .timeout_handler("a", MS * 100)
            .cancellable(token.clone())
            .rate_limited(rl.clone())
            .concurrent_limited(lim.clone()),
    );
    let b = tokio::spawn(
        async { 2 }
            .concurrent_limited(lim.clone())
            .rate_limited(rl.clone())
            .cancellable(token.clone())
            .timeout_handler("b", MS * 100),
    );
    assert_eq!(a.await.unwrap(), Ok(Ok(1)));
    assert_eq!(b.await.unwrap(), Ok(Ok(2)));

    // Closure wrappers stack too.
    let f = timeout_fn(
        "stacked",
        MS * 50,
        cancellable_fn(
            token.clone(),
            rate_limited_fn(rl.clone(), concurrent_limited_fn(lim.clone(), || async { 3 })),
        ),
    );
    assert_eq!(tokio::spawn(f()).await.unwrap(), Ok(Ok(3)));
    token.cancel();
    assert_eq!(f().await, Ok(Err(Cancelled)));
}

// ---------------------------------------------------------------- circuit breaker

async fn fail(b: &CircuitBreaker) -> Result<(), BreakerError<Boom>> {
    b.call(async { Err::<(), _>(Boom(0)) }).await
}

async fn succeed(b: &CircuitBreaker) -> Result<(), BreakerError<Boom>> {
    b.call(async { Ok::<_, Boom>(()) }).await
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_consecutive_failures_and_cools_down_to_half_open() {
    let b = CircuitBreaker::builder("db")
        .consecutive_failures(3)
        .cool_down(Duration::from_secs(10))
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    succeed(&b).await.unwrap(); // resets the run
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(matches!(fail(&b).await, Err(BreakerError::Inner(Boom(0)))));
    assert_eq!(b.state(), BreakerState::Open);
    let ran = AtomicU32::new(0);
    let err = b
        .call(async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Boom>(())
        })
        .await
        .unwrap_err();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "an open breaker does not run the call");
    match &err {
        BreakerError::Open {
            breaker,
            state: BreakerState::Open,
            retry_in: Some(d),
        } => {
            assert_eq!(&**breaker, "db");
            assert_eq!(*d, Duration::from_secs(10));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("`db` is open"));
    tokio::time::advance(Duration::from_secs(10)).await;
    // Half-open: a failed probe opens it again.
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    let s = b.stats();
    assert_eq!((s.opened, s.rejected, s.failures, s.successes), (2, 1, 6, 2));
}

#[tokio::test(start_paused = true)]
async fn breaker_half_open_probes_are_bounded_and_a_dropped_probe_is_a_failure() {
    let b = CircuitBreaker::builder("svc")
        .consecutive_failures(1)
        .half_open_probes(2)
        .cool_down(MS * 100)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    tokio::time::advance(MS * 100).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let third = b.try_acquire().unwrap_err();
    assert!(matches!(
        third,
        BreakerError::Open {
            state: BreakerState::HalfOpen,
            ..
        }
    ));
    p1.success();
    assert_eq!(b.state(), BreakerState::HalfOpen, "needs 2 successes");
    drop(p2); // dropped without reporting: a failure
    assert_eq!(b.state(), BreakerState::Open);
    // A probe future dropped midway counts as a failure too.
    tokio::time::advance(MS * 100).await;
    let slow = b.call(async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Boom>(())
    });
    assert!(tokio::time::timeout(MS, slow).await.is_err());
    assert_eq!(b.state(), BreakerState::Open);
    tokio::time::advance(MS * 100).await;
    succeed(&b).await.unwrap();
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_failure_rate_over_window_with_min_calls() {
    let b = CircuitBreaker::builder("rate")
        .consecutive_failures(0)
        .failure_rate(0.5, 4, 4)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed, "below min_calls");
    succeed(&b).await.unwrap();
    succeed(&b).await.unwrap(); // window [F F S S]: 50 %
    assert_eq!(b.state(), BreakerState::Open);

    let b = CircuitBreaker::builder("rate2")
        .consecutive_failures(0)
        .failure_rate(0.5, 4, 2)
        .build()
        .unwrap();
    for _ in 0..10 {
        succeed(&b).await.unwrap();
        succeed(&b).await.unwrap();
        succeed(&b).await.unwrap();
        fail(&b).await.unwrap_err(); // any 4 consecutive calls: 25 %, never 50 %
    }
    assert_eq!(b.state(), BreakerState::Closed);
    fail(&b).await.unwrap_err(); // [S S F F]: 50 % over the sliding window
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn breaker_classifier_and_stale_outcomes() {
    let b = CircuitBreaker::builder("c").consecutive_failures(1).build().unwrap();
    let not_found = b
        .call_classified(async { Err::<(), _>(Boom(404)) }, |e| e.0 >= 500)
        .await;
    assert!(matches!(not_found, Err(BreakerError::Inner(Boom(404)))));
    assert_eq!(b.state(), BreakerState::Closed);
    // A call admitted while closed that succeeds after the breaker opened changes nothing.
    let late = b.try_acquire().unwrap();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), BreakerState::Open);
    late.success();
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn breaker_config_is_validated() {
    let e = CircuitBreaker::builder("x")
        .consecutive_failures(0)
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::NoTripCondition { .. }));
    assert!(CircuitBreaker::builder("x").failure_rate(1.5, 10, 5).build().is_err());
    assert!(CircuitBreaker::builder("x").failure_rate(0.5, 10, 11).build().is_err());
    assert!(CircuitBreaker::builder("x").failure_rate(0.5, 0, 0).build().is_err());
    assert!(CircuitBreaker::builder("x").half_open_probes(0).build().is_err());
}

// ---------------------------------------------------------------- backpressure

#[tokio::test(start_paused = true)]
async fn gate_waits_up_to_its_timeout_then_sheds_and_reports_depth() {
    let gate = AdmissionGate::builder("actor-mailbox", 1)
        .max_waiting(1)
        .wait_timeout(MS * 100)
        .build()
        .unwrap();
    let held = gate.admit().await.unwrap();
    let g2 = gate.clone();
    let queued = tokio::spawn(async move {
        let start = Instant::now();
        let r = g2.admit().await.map(drop);
        (r, start.elapsed())
    });
    tokio::time::sleep(MS).await;
    assert_eq!(gate.stats().waiting, 1);
    // Queue full: shed at once.
    let start = Instant::now();
    let err = gate.admit().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((err.in_flight, err.waiting, err.waited), (1, 1, None));
    assert!(err.to_string().contains("actor-mailbox"), "{err}");
    let (r, waited) = queued.await.unwrap();
    let err = r.unwrap_err();
    assert_eq!(waited, MS * 100);
    assert_eq!(err.waited, Some(MS * 100));
    drop(held);
    let _ok = gate.try_admit().unwrap();
    let s = gate.stats();
    assert_eq!(
        (s.admitted, s.rejected, s.waiting, s.peak_waiting, s.in_flight),
        (2, 2, 0, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pending_admission_leaks_nothing() {
    let gate = AdmissionGate::builder("g", 1).build().unwrap();
    let held = gate.admit().await.unwrap();
    assert!(tokio::time::timeout(MS * 10, gate.admit()).await.is_err());
    assert_eq!(gate.stats().waiting, 0);
    drop(held);
    assert_eq!(gate.stats().in_flight, 0);
    let _p = gate.try_admit().unwrap();
    assert!(AdmissionGate::builder("zero", 0).build().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_probes_stay_bounded_under_concurrency() {
    let b = CircuitBreaker::builder("probe-bound")
        .consecutive_failures(1)
        .half_open_probes(3)
        .cool_down(Duration::ZERO)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (b, inside, max, mut rx) = (b.clone(), Arc::clone(&inside), Arc::clone(&max), release_rx.clone());
        tasks.push(tokio::spawn(async move {
            b.call(async {
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                let _ = rx.wait_for(|go| *go).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Boom>(())
            })
            .await
        }));
    }
    // Wait (by condition, not by time) until every task is either inside or refused.
    while inside.load(Ordering::SeqCst) as u64 + b.stats().rejected < 32 {
        tokio::task::yield_now().await;
    }
    assert_eq!(inside.load(Ordering::SeqCst), 3, "exactly the 3 probes are out");
    assert_eq!(b.stats().rejected, 29);
    release_tx.send(true).unwrap();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(max.load(Ordering::SeqCst), 3, "never more probes than allowed at once");
    assert!(admitted >= 3);
    assert_eq!(b.state(), BreakerState::Closed);
}
