//! [`RateLimiter`] and [`KeyedRateLimiter`]: token buckets on governor's GCRA.
//!
//! A bucket holds `burst` tokens, starts full and refills continuously at `rate` tokens per
//! second. The state is one atomic word (GCRA), so there is no lock, and callers' work never
//! runs under anything of the limiter's. Time is tokio's clock ([`TokioClock`]), so paused
//! time in tests drives it.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::{RateLimiter, SyncError};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::new("api", 10.0, 2)?; // 10 per second, bursts of 2
//! limiter.try_acquire(2)?;
//! assert!(matches!(limiter.try_acquire(1), Err(SyncError::RateLimited { .. })));
//! let start = tokio::time::Instant::now();
//! limiter.acquire(1).await?; // waits ~100 ms for a token
//! assert!(start.elapsed() >= Duration::from_millis(99));
//! assert!(matches!(limiter.try_acquire(3), Err(SyncError::ExceedsBurst { .. })));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{InsufficientCapacity, NotUntil, Quota};
use tokio::time::Instant;

use super::error::{ConfigError, SyncError};
use super::stats::ShardedCounter;

/// A governor clock reading tokio's [`Instant`], so that `tokio::time::pause` and
/// `advance` drive rate limits in tests. Readings are the time since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    #[inline]
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Counters of a rate limiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RateLimiterStats {
    /// Tokens granted.
    pub admitted: u64,
    /// Requests refused (`try_acquire`, timeouts, over-burst).
    pub rejected: u64,
    /// Times a caller had to sleep for tokens.
    pub waits: u64,
    /// Keys tracked now (keyed limiter only).
    pub keys: usize,
    /// Idle keys removed so far (keyed limiter only).
    pub keys_removed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: ShardedCounter,
    rejected: AtomicU64,
    waits: AtomicU64,
}

#[derive(Debug, Clone)]
struct Params {
    name: Arc<str>,
    rate: f64,
    burst: u32,
}

fn quota(name: &Arc<str>, rate: f64, burst: u32) -> Result<Quota, ConfigError> {
    let burst = NonZeroU32::new(burst).ok_or_else(|| ConfigError::Zero {
        name: Arc::clone(name),
        what: "burst",
    })?;
    let invalid = || ConfigError::InvalidRate {
        name: Arc::clone(name),
        rate,
    };
    if rate.is_nan() || rate <= 0.0 || !rate.is_finite() {
        return Err(invalid());
    }
    let period = Duration::try_from_secs_f64(1.0 / rate).map_err(|_| invalid())?;
    Ok(Quota::with_period(period).ok_or_else(invalid)?.allow_burst(burst))
}

impl Params {
    fn check_burst(&self, n: u32, counters: &Counters) -> Result<(), SyncError> {
        if n > self.burst {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SyncError::ExceedsBurst {
                limiter: Arc::clone(&self.name),
                asked: n,
                burst: self.burst,
            });
        }
        Ok(())
    }

    fn limited(&self, n: u32, retry_after: Duration, counters: &Counters) -> SyncError {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        SyncError::RateLimited {
            limiter: Arc::clone(&self.name),
            asked: n,
            rate: self.rate,
            burst: self.burst,
            retry_after,
        }
    }

    /// The shared waiting loop of both limiters: `check` tries to take `n` tokens and says
    /// how long to wait otherwise. Nothing is taken until the check succeeds, so dropping this
    /// future mid-wait takes no token.
    async fn acquire_with(
        &self,
        n: u32,
        timeout: Option<Duration>,
        counters: &Counters,
        mut check: impl FnMut(NonZeroU32) -> Result<Result<(), Duration>, InsufficientCapacity>,
    ) -> Result<(), SyncError> {
        let Some(nz) = NonZeroU32::new(n) else {
            return Ok(());
        };
        self.check_burst(n, counters)?;
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        loop {
            match check(nz) {
                Ok(Ok(())) => {
                    counters.admitted.add(u64::from(n));
                    return Ok(());
                }
                Ok(Err(wait)) => {
                    if let Some((deadline, timeout)) = deadline {
                        if Instant::now() + wait > deadline {
                            counters.rejected.fetch_add(1, Ordering::Relaxed);
                            return Err(SyncError::RateWaitTooLong {
                                limiter: Arc::clone(&self.name),
                                asked: n,
                                rate: self.rate,
                                burst: self.burst,
                                needed: wait,
                                timeout,
                            });
                        }
                    }
                    counters.waits.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
                Err(InsufficientCapacity(_)) => {
                    // Unreachable after `check_burst`, but never trust it with a hang.
                    return Err(SyncError::ExceedsBurst {
                        limiter: Arc::clone(&self.name),
                        asked: n,
                        burst: self.burst,
                    });
                }
            }
        }
    }
}

type Direct = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

struct Inner {
    params: Params,
    clock: TokioClock,
    gcra: Direct,
    counters: Counters,
}

/// A token bucket: `rate` tokens per second, `burst` capacity, starting full. Cheap to clone
/// (shared). See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.params.name)
            .field("rate", &self.inner.params.rate)
            .field("burst", &self.inner.params.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter named `name` granting `rate` tokens per second with a bucket of `burst`.
    ///
    /// # Errors
    /// [`ConfigError::Zero`] for a zero burst, [`ConfigError::InvalidRate`] for a rate that is
    /// not a positive finite number (or too large or small to express in nanoseconds).
    pub fn new(name: impl Into<Arc<str>>, rate: f64, burst: u32) -> Result<Self, ConfigError> {
        let name = name.into();
        let quota = quota(&name, rate, burst)?;
        let clock = TokioClock::new();
        Ok(Self {
            inner: Arc::new(Inner {
                params: Params { name, rate, burst },
                clock,
                gcra: governor::RateLimiter::direct_with_clock(quota, clock),
                counters: Counters::default(),
            }),
        })
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.params.name
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.inner.params.rate
    }

    /// Bucket capacity.
    pub fn burst(&self) -> u32 {
        self.inner.params.burst
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RateLimiterStats {
        let c = &self.inner.counters;
        RateLimiterStats {
            admitted: c.admitted.get(),
            rejected: c.rejected.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            keys: 0,
            keys_removed: 0,
        }
    }

    fn check(&self, n: NonZeroU32) -> Result<Result<(), Duration>, InsufficientCapacity> {
        let inner = &self.inner;
        Ok(inner
            .gcra
            .check_n(n)?
            .map_err(|not_until: NotUntil<Duration>| not_until.wait_time_from(inner.clock.now())))
    }

    /// Takes `n` tokens if the bucket has them now (`n = 0` always succeeds).
    ///
    /// # Errors
    /// [`SyncError::RateLimited`] with the time until they would be there;
    /// [`SyncError::ExceedsBurst`] when `n` is above the burst.
    #[inline]
    pub fn try_acquire(&self, n: u32) -> Result<(), SyncError> {
        let inner = &self.inner;
        let Some(nz) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let outcome = if n == 1 {
            inner.gcra.check().map_err(|nu| nu.wait_time_from(inner.clock.now()))
        } else {
            inner.params.check_burst(n, &inner.counters)?;
            match self.check(nz) {
                Ok(outcome) => outcome,
                Err(_) => return inner.params.check_burst(u32::MAX, &inner.counters),
            }
        };
        match outcome {
            Ok(()) => {
                inner.counters.admitted.add(u64::from(n));
                Ok(())
            }
            Err(wait) => Err(inner.params.limited(n, wait, &inner.counters)),
        }
    }

    /// Waits until `n` tokens are there and takes them.
    ///
    /// # Cancel safety
    /// Cancel safe: tokens are taken only at the instant the acquire completes, so a dropped
    /// pending acquire takes none.
    ///
    /// # Errors
    /// [`SyncError::ExceedsBurst`] at once when `n` is above the burst.
    pub async fn acquire(&self, n: u32) -> Result<(), SyncError> {
        let inner = &self.inner;
        inner
            .params
            .acquire_with(n, None, &inner.counters, |n| self.check(n))
            .await
    }

    /// Waits for `n` tokens for at most `timeout`; fails at once if the wait needed is longer.
    ///
    /// # Cancel safety
    /// Cancel safe, like [`acquire`](Self::acquire).
    ///
    /// # Errors
    /// [`SyncError::RateWaitTooLong`] as soon as the wait needed exceeds what is left of
    /// `timeout`; [`SyncError::ExceedsBurst`] when `n` is above the burst.
    pub async fn acquire_timeout(&self, n: u32, timeout: Duration) -> Result<(), SyncError> {
        let inner = &self.inner;
        inner
            .params
            .acquire_with(n, Some(timeout), &inner.counters, |n| self.check(n))
            .await
    }

    /// Waits for one token; infallible since the burst is at least 1.
    pub(crate) async fn acquire_one(&self) {
        // `1 <= burst` always holds, so this cannot fail.
        let _ = self.acquire(1).await;
    }
}

type Keyed<K> = governor::RateLimiter<K, DashMapStateStore<K>, TokioClock, NoOpMiddleware<Duration>>;

struct KeyedInner<K: Hash + Eq + Clone> {
    params: Params,
    clock: TokioClock,
    gcra: Keyed<K>,
    counters: Counters,
    sweep_every_nanos: AtomicU64,
    last_sweep_nanos: AtomicU64,
    keys_removed: AtomicU64,
}

/// One token bucket per key (per client, per tenant…), all with the same rate and burst.
/// Keys whose bucket is full again (idle) are removed on their own: at most once per sweep
/// interval (default 60 s), the next call sweeps them. Cheap to clone (shared).
///
/// ```
/// use uno_runtime::sync::KeyedRateLimiter;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let per_client = KeyedRateLimiter::new("per-client", 5.0, 1)?;
/// per_client.try_acquire(&"alice", 1)?;
/// per_client.try_acquire(&"bob", 1)?; // separate bucket
/// assert!(per_client.try_acquire(&"alice", 1).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Arc<KeyedInner<K>>,
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.inner.params.name)
            .field("rate", &self.inner.params.rate)
            .field("burst", &self.inner.params.burst)
            .field("keys", &self.inner.gcra.len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A keyed limiter: each key gets `rate` tokens per second and a bucket of `burst`.
    ///
    /// # Errors
    /// As [`RateLimiter::new`].
    pub fn new(name: impl Into<Arc<str>>, rate: f64, burst: u32) -> Result<Self, ConfigError> {
        let name = name.into();
        let quota = quota(&name, rate, burst)?;
        let clock = TokioClock::new();
        Ok(Self {
            inner: Arc::new(KeyedInner {
                params: Params { name, rate, burst },
                clock,
                gcra: governor::RateLimiter::dashmap_with_clock(quota, clock),
                counters: Counters::default(),
                sweep_every_nanos: AtomicU64::new(60_000_000_000),
                last_sweep_nanos: AtomicU64::new(0),
                keys_removed: AtomicU64::new(0),
            }),
        })
    }

    /// Sets how often idle keys are swept (default 60 s; zero sweeps on every call).
    pub fn with_sweep_interval(self, every: Duration) -> Self {
        let nanos = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sweep_every_nanos.store(nanos, Ordering::Relaxed);
        self
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.inner.params.name
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.inner.gcra.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.inner.gcra.is_empty()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RateLimiterStats {
        let c = &self.inner.counters;
        RateLimiterStats {
            admitted: c.admitted.get(),
            rejected: c.rejected.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            keys: self.inner.gcra.len(),
            keys_removed: self.inner.keys_removed.load(Ordering::Relaxed),
        }
    }

    /// Removes every key whose bucket is full again now; returns how many went.
    pub fn remove_idle_keys(&self) -> usize {
        let inner = &self.inner;
        let before = inner.gcra.len();
        inner.gcra.retain_recent();
        inner.gcra.shrink_to_fit();
        let removed = before.saturating_sub(inner.gcra.len());
        inner.keys_removed.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    fn maybe_sweep(&self) {
        let inner = &self.inner;
        let now = u64::try_from(inner.clock.now().as_nanos()).unwrap_or(u64::MAX);
        let last = inner.last_sweep_nanos.load(Ordering::Relaxed);
        let every = inner.sweep_every_nanos.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every
            && inner
                .last_sweep_nanos
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.remove_idle_keys();
        }
    }

    fn check(&self, key: &K, n: NonZeroU32) -> Result<Result<(), Duration>, InsufficientCapacity> {
        let inner = &self.inner;
        Ok(inner
            .gcra
            .check_key_n(key, n)?
            .map_err(|nu: NotUntil<Duration>| nu.wait_time_from(inner.clock.now())))
    }

    /// Takes `n` tokens from `key`'s bucket if it has them now.
    ///
    /// # Errors
    /// As [`RateLimiter::try_acquire`].
    pub fn try_acquire(&self, key: &K, n: u32) -> Result<(), SyncError> {
        self.maybe_sweep();
        let inner = &self.inner;
        let Some(nz) = NonZeroU32::new(n) else {
            return Ok(());
        };
        inner.params.check_burst(n, &inner.counters)?;
        match self.check(key, nz) {
            Ok(Ok(())) => {
                inner.counters.admitted.add(u64::from(n));
                Ok(())
            }
            Ok(Err(wait)) => Err(inner.params.limited(n, wait, &inner.counters)),
            Err(_) => inner.params.check_burst(u32::MAX, &inner.counters),
        }
    }

    /// Waits until `key`'s bucket has `n` tokens and takes them.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire takes no token.
    ///
    /// # Errors
    /// [`SyncError::ExceedsBurst`] at once when `n` is above the burst.
    pub async fn acquire(&self, key: &K, n: u32) -> Result<(), SyncError> {
        self.maybe_sweep();
        let inner = &self.inner;
        inner
            .params
            .acquire_with(n, None, &inner.counters, |n| self.check(key, n))
            .await
    }

    /// Waits at most `timeout` for `n` tokens of `key`; fails at once if the wait needed is
    /// longer.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire takes no token.
    ///
    /// # Errors
    /// As [`RateLimiter::acquire_timeout`].
    pub async fn acquire_timeout(&self, key: &K, n: u32, timeout: Duration) -> Result<(), SyncError> {
        self.maybe_sweep();
        let inner = &self.inner;
        inner
            .params
            .acquire_with(n, Some(timeout), &inner.counters, |n| self.check(key, n))
            .await
    }
}

crate::sync::stats::node_stats!(RateLimiter);

impl<K> uno_actors::tree::StatsSource for KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn collect(&self, out: &mut std::collections::BTreeMap<String, uno_actors::tree::StatValue>) {
        crate::sync::stats::collect_prefixed(self.name(), &self.stats(), out);
    }
}

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Attaches this limiter's counters (summed over its keys) to a node's stats, as
    /// `<name>.<counter>` keys read only when a snapshot is taken. The node holds the
    /// source weakly: keep the returned handle as long as the stats should show.
    pub fn attach_stats(&self, stats: &uno_actors::tree::NodeStats) -> Arc<dyn uno_actors::tree::StatsSource> {
        stats.attach_shared(Arc::new(self.clone()))
    }
}
