//! Property tests: admission bounds of RateLimiter and Limiter, on paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use uno_runtime::sync::{Limiter, RateLimiter};

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// In every window [t_i, t_j] of admissions, the tokens admitted never exceed
    /// burst + rate × (t_j − t_i).
    #[test]
    fn rate_limiter_never_admits_more_than_burst_plus_rate_times_t(
        rate in prop::sample::select(vec![1.0f64, 3.0, 10.0, 50.0, 250.0]),
        burst in 1u32..6,
        ops in prop::collection::vec((0u64..400, 1u32..4, any::<bool>()), 1..120),
    ) {
        let rt = paused_runtime();
        rt.block_on(async {
            let rl = RateLimiter::new("prop", rate, burst).unwrap();
            let start = Instant::now();
            let mut admitted: Vec<(Duration, u32)> = Vec::new();
            for (advance_ms, n, wait) in ops {
                tokio::time::advance(Duration::from_millis(advance_ms)).await;
                let n = n.min(burst);
                let ok = if wait {
                    rl.acquire(n).await.is_ok()
                } else {
                    rl.try_acquire(n).is_ok()
                };
                if ok {
                    admitted.push((start.elapsed(), n));
                }
            }
            for i in 0..admitted.len() {
                let mut sum = 0u64;
                for j in i..admitted.len() {
                    sum += u64::from(admitted[j].1);
                    let t = (admitted[j].0 - admitted[i].0).as_secs_f64();
                    let bound = f64::from(burst) + rate * t;
                    // 1e-6: governor works in whole nanoseconds.
                    prop_assert!(sum as f64 <= bound + 1e-6,
                        "{sum} tokens in {t}s > {bound} (rate {rate}, burst {burst})");
                }
            }
            Ok(())
        })?;
    }

    /// Under random interleavings of tasks that hold a slot for random (virtual) times and
    /// random yields, the number inside never exceeds the limit, and it is all given back.
    #[test]
    fn limiter_never_exceeds_its_limit(
        limit in 1usize..5,
        tasks in prop::collection::vec((0u64..20, 0u64..20, 0u8..4, any::<bool>()), 1..40),
    ) {
        let rt = paused_runtime();
        rt.block_on(async {
            let limiter = Limiter::new("prop", limit).unwrap();
            let inside = Arc::new(AtomicUsize::new(0));
            let max = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            for (delay, hold, yields, with_timeout) in tasks {
                let (limiter, inside, max) = (limiter.clone(), Arc::clone(&inside), Arc::clone(&max));
                handles.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let permit = if with_timeout {
                        match limiter.acquire_timeout(Duration::from_millis(15)).await {
                            Ok(p) => p,
                            Err(_) => return,
                        }
                    } else {
                        limiter.acquire().await.unwrap()
                    };
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            prop_assert!(max.load(Ordering::SeqCst) <= limit);
            prop_assert_eq!(limiter.stats().peak.min(limit), limiter.stats().peak);
            prop_assert_eq!(limiter.stats().active, 0);
            prop_assert_eq!(limiter.stats().waiting, 0);
            Ok(())
        })?;
    }
}
