//! uno's sync and resilience primitives beside the raw thing each wraps, in the same run.
//!
//! Run: `cargo bench --bench sync -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::Quota;
use uno_runtime::resilience::{retry, CircuitBreaker, RetryPolicy};
use uno_runtime::sync::{AsyncLock, AsyncSemaphore, Limiter, RateLimiter, TokioClock};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn lock(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("lock_uncontended");
    let uno = AsyncLock::new(0u64);
    g.bench_function("uno_AsyncLock", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guard = uno.lock().await.expect("free");
            *guard += 1;
        })
    });
    let no_warn = AsyncLock::builder(0u64).warn_held_after(None).build();
    g.bench_function("uno_AsyncLock_without_held_too_long_check", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guard = no_warn.lock().await.expect("free");
            *guard += 1;
        })
    });
    let raw = tokio::sync::Mutex::new(0u64);
    g.bench_function("raw_tokio_Mutex", |b| {
        b.to_async(&rt).iter(|| async {
            let mut guard = raw.lock().await;
            *guard += 1;
        })
    });
    g.bench_function("context_one_tokio_Instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    g.finish();
}

fn semaphores(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("semaphore_acquire_release");
    let uno = AsyncSemaphore::new("bench", 8).expect("valid");
    g.bench_function("uno_AsyncSemaphore", |b| {
        b.to_async(&rt).iter(|| async {
            drop(black_box(uno.acquire().await.expect("permit")));
        })
    });
    let limiter = Limiter::new("bench", 8).expect("valid");
    g.bench_function("uno_Limiter", |b| {
        b.to_async(&rt).iter(|| async {
            drop(black_box(limiter.acquire().await.expect("slot")));
        })
    });
    let raw = tokio::sync::Semaphore::new(8);
    g.bench_function("raw_tokio_Semaphore", |b| {
        b.to_async(&rt).iter(|| async {
            drop(black_box(raw.acquire().await.expect("permit")));
        })
    });
    g.finish();
}

const FAST: f64 = 1e9; // tokens per second: every check is admitted
const BURST: u32 = 1_000_000;

fn on_threads(threads: usize, iters: u64, f: impl Fn() + Send + Sync + 'static) -> Duration {
    let f = Arc::new(f);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                for _ in 0..iters {
                    f();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread");
    }
    // Per call of one thread: the wall time of `iters` calls made on every thread at once.
    start.elapsed()
}

fn rate_limiter(c: &mut Criterion) {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).expect("nonzero"))
        .allow_burst(NonZeroU32::new(BURST).expect("nonzero"));
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("rate_limiter_try_acquire_{threads}_thread"));
        // RateLimiter reads tokio's clock, so build it inside a runtime context.
        let uno = {
            let rt = rt();
            let _ctx = rt.enter();
            RateLimiter::new("bench", FAST, BURST).expect("valid")
        };
        g.bench_function("uno_RateLimiter", |b| {
            let uno = uno.clone();
            b.iter_custom(move |iters| {
                let uno = uno.clone();
                on_threads(threads, iters, move || {
                    black_box(uno.try_acquire(1)).ok();
                })
            })
        });
        let same_clock = Arc::new(governor::RateLimiter::direct_with_clock(quota, TokioClock::new()));
        g.bench_function("raw_governor_tokio_clock", |b| {
            b.iter_custom(|iters| {
                let raw = Arc::clone(&same_clock);
                on_threads(threads, iters, move || {
                    black_box(raw.check()).ok();
                })
            })
        });
        let quanta = Arc::new(governor::RateLimiter::direct(quota));
        g.bench_function("raw_governor_default_clock", |b| {
            b.iter_custom(|iters| {
                let raw = Arc::clone(&quanta);
                on_threads(threads, iters, move || {
                    black_box(raw.check()).ok();
                })
            })
        });
        g.finish();
    }
}

fn retry_no_failure(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("retry_no_failure");
    let policy = RetryPolicy::<std::io::Error>::builder()
        .max_attempts(3)
        .build()
        .expect("valid");
    g.bench_function("uno_retry", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(retry(&policy, || async { Ok::<_, std::io::Error>(black_box(1u64)) }).await) })
    });
    g.bench_function("raw_direct_call", |b| {
        let op = || async { Ok::<_, std::io::Error>(black_box(1u64)) };
        b.to_async(&rt).iter(|| async { black_box(op().await) })
    });
    g.finish();
}

fn breaker_closed(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("circuit_breaker_closed");
    let breaker = CircuitBreaker::builder("bench").build().expect("valid");
    g.bench_function("uno_CircuitBreaker_call", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(breaker.call(async { Ok::<_, std::io::Error>(black_box(1u64)) }).await) })
    });
    let windowed = CircuitBreaker::builder("bench-window")
        .failure_rate(0.5, 100, 20)
        .build()
        .expect("valid");
    g.bench_function("uno_CircuitBreaker_call_with_rate_window", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(windowed.call(async { Ok::<_, std::io::Error>(black_box(1u64)) }).await) })
    });
    g.bench_function("raw_direct_call", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(async { Ok::<_, std::io::Error>(black_box(1u64)) }.await) })
    });
    g.finish();
}

criterion_group!(
    benches,
    lock,
    semaphores,
    rate_limiter,
    retry_no_failure,
    breaker_closed
);
criterion_main!(benches);
