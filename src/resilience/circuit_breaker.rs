//! [`CircuitBreaker`]: stop calling a dependency that keeps failing, then probe it.
//!
//! Closed: calls go through; it opens after `consecutive_failures` failures in a row, or when
//! the failure rate over the last `window` calls reaches `threshold` (once at least
//! `min_calls` were seen). Open: calls are refused at once for the cool-down. Half-open: at
//! most `half_open_probes` probe calls go through at a time; that many successes close it,
//! any failure opens it again. A probe that is dropped before it reports counts as a
//! failure, so the breaker can never be wedged half-open. Outcomes of calls admitted before a
//! transition are ignored after it. Transitions are `tracing` events (target
//! `uno_runtime::resilience::circuit_breaker`).
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::resilience::{BreakerError, BreakerState, CircuitBreaker};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder("payments")
//!     .consecutive_failures(2)
//!     .cool_down(Duration::from_secs(5))
//!     .build()?;
//! let unavailable = || std::io::Error::other("503");
//! for _ in 0..2 {
//!     let _ = breaker.call(async { Err::<(), _>(unavailable()) }).await;
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let refused = breaker.call(async { Ok::<_, std::io::Error>(()) }).await;
//! assert!(matches!(refused, Err(BreakerError::Open { .. })));
//! tokio::time::sleep(Duration::from_secs(5)).await;
//! breaker.call(async { Ok::<_, std::io::Error>(()) }).await?; // the probe succeeds
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::{BreakerError, ConfigError};

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// A bounded number of probe calls go through.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        })
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

fn decode(s: u8) -> BreakerState {
    match s {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        _ => BreakerState::HalfOpen,
    }
}

/// Counters of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Calls admitted.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (dropped probes included).
    pub failures: u64,
    /// Calls refused.
    pub rejected: u64,
    /// Times it opened.
    pub opened: u64,
    /// Failures in a row now.
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy)]
struct FailureRate {
    threshold: f64,
    window: usize,
    min_calls: usize,
}

/// Builds a [`CircuitBreaker`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder {
    name: Arc<str>,
    consecutive: Option<u32>,
    rate: Option<FailureRate>,
    cool_down: Duration,
    probes: u32,
}

impl CircuitBreakerBuilder {
    /// Open after `n` failures in a row (default 5; `0` turns this condition off).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = (n > 0).then_some(n);
        self
    }

    /// Open when at least `threshold` (0 < threshold ≤ 1) of the last `window` calls
    /// failed, once at least `min_calls` calls were seen (off by default).
    pub fn failure_rate(mut self, threshold: f64, window: usize, min_calls: usize) -> Self {
        self.rate = Some(FailureRate {
            threshold,
            window,
            min_calls,
        });
        self
    }

    /// How long it stays open before probing (default 30 s).
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }

    /// Probe calls allowed at once when half-open, and successes needed to close
    /// (default 1; at least 1).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.probes = n;
        self
    }

    /// Validates and builds the breaker.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for a threshold outside `(0, 1]`, a zero window, a
    /// `min_calls` of zero or above the window, or zero probes;
    /// [`ConfigError::NoTripCondition`] when neither condition is set.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let out = |parameter, value: f64, expected| ConfigError::OutOfRange {
            name: Arc::clone(&self.name),
            parameter,
            value,
            expected,
        };
        if let Some(r) = self.rate {
            if !(r.threshold > 0.0 && r.threshold <= 1.0) {
                return Err(out("failure rate threshold", r.threshold, "0 < x <= 1"));
            }
            if r.window == 0 {
                return Err(out("window", 0.0, "at least 1 call"));
            }
            if r.min_calls == 0 || r.min_calls > r.window {
                return Err(out("min_calls", r.min_calls as f64, "1..=window"));
            }
        }
        if self.probes == 0 {
            return Err(out("half_open_probes", 0.0, "at least 1"));
        }
        if self.consecutive.is_none() && self.rate.is_none() {
            return Err(ConfigError::NoTripCondition { name: self.name });
        }
        let window = VecDeque::with_capacity(self.rate.map_or(0, |r| r.window));
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                name: self.name,
                consecutive_limit: self.consecutive,
                rate: self.rate,
                cool_down: self.cool_down,
                probes: self.probes,
                state: AtomicU8::new(CLOSED),
                epoch: AtomicU64::new(0),
                consecutive: AtomicU32::new(0),
                probes_in_flight: AtomicU32::new(0),
                probe_successes: AtomicU32::new(0),
                slow: Mutex::new(Slow {
                    opened_at: None,
                    window,
                    window_failures: 0,
                }),
                calls: AtomicU64::new(0),
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                opened: AtomicU64::new(0),
            }),
        })
    }
}

struct Slow {
    opened_at: Option<Instant>,
    window: VecDeque<bool>,
    window_failures: usize,
}

struct Inner {
    name: Arc<str>,
    consecutive_limit: Option<u32>,
    rate: Option<FailureRate>,
    cool_down: Duration,
    probes: u32,
    state: AtomicU8,
    epoch: AtomicU64,
    consecutive: AtomicU32,
    probes_in_flight: AtomicU32,
    probe_successes: AtomicU32,
    slow: Mutex<Slow>,
    calls: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    opened: AtomicU64,
}

impl Inner {
    fn slow(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` if the state is still that of `epoch`. Caller holds `slow`.
    fn transition(&self, slow: &mut Slow, epoch: u64, to: u8, why: &'static str) -> bool {
        if self.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        let from = self.state.load(Ordering::Acquire);
        self.epoch.store(epoch + 1, Ordering::Release);
        self.consecutive.store(0, Ordering::Relaxed);
        self.probes_in_flight.store(0, Ordering::Relaxed);
        self.probe_successes.store(0, Ordering::Relaxed);
        slow.window.clear();
        slow.window_failures = 0;
        slow.opened_at = (to == OPEN).then(Instant::now);
        if to == OPEN {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        self.state.store(to, Ordering::Release);
        let (from, to) = (decode(from), decode(to));
        if to == BreakerState::Open {
            tracing::warn!(breaker = %self.name, %from, %to, reason = why, "circuit breaker transition");
        } else {
            tracing::info!(breaker = %self.name, %from, %to, reason = why, "circuit breaker transition");
        }
        true
    }

    fn record(&self, epoch: u64, probe: bool, failed: bool) {
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.successes.fetch_add(1, Ordering::Relaxed);
        }
        if self.epoch.load(Ordering::Acquire) != epoch {
            return; // admitted under an earlier state: no say in this one
        }
        if probe {
            if failed {
                let mut slow = self.slow();
                self.transition(&mut slow, epoch, OPEN, "a probe call failed");
            } else if self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1 >= self.probes {
                let mut slow = self.slow();
                self.transition(&mut slow, epoch, CLOSED, "probe calls succeeded");
            } else {
                self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            return;
        }
        // Closed state.
        let mut trip = None;
        if failed {
            let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
            if self.consecutive_limit.is_some_and(|limit| n >= limit) {
                trip = Some("consecutive failures");
            }
        } else if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        if let Some(rate) = self.rate {
            let mut slow = self.slow();
            if slow.window.len() == rate.window && slow.window.pop_front() == Some(true) {
                slow.window_failures -= 1;
            }
            slow.window.push_back(failed);
            slow.window_failures += usize::from(failed);
            if trip.is_none()
                && slow.window.len() >= rate.min_calls
                && slow.window_failures as f64 >= rate.threshold * slow.window.len() as f64
            {
                trip = Some("failure rate over the window");
            }
            if let Some(why) = trip {
                self.transition(&mut slow, epoch, OPEN, why);
            }
            return;
        }
        if let Some(why) = trip {
            let mut slow = self.slow();
            self.transition(&mut slow, epoch, OPEN, why);
        }
    }
}

/// A circuit breaker. Cheap to clone (shared). See the [module docs](self).
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CircuitBreaker {
    /// A builder: opens after 5 consecutive failures, 30 s cool-down, 1 probe.
    pub fn builder(name: impl Into<Arc<str>>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: name.into(),
            consecutive: Some(5),
            rate: None,
            cool_down: Duration::from_secs(30),
            probes: 1,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state now (an open breaker whose cool-down is over still reads `Open` until the
    /// next call moves it to half-open).
    pub fn state(&self) -> BreakerState {
        decode(self.inner.state.load(Ordering::Acquire))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BreakerStats {
        let i = &self.inner;
        BreakerStats {
            state: self.state(),
            calls: i.calls.load(Ordering::Relaxed),
            successes: i.successes.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            rejected: i.rejected.load(Ordering::Relaxed),
            opened: i.opened.load(Ordering::Relaxed),
            consecutive_failures: i.consecutive.load(Ordering::Relaxed),
        }
    }

    /// Asks to make one call. The permit reports the outcome with
    /// [`success`](BreakerPermit::success) or [`failure`](BreakerPermit::failure); a probe
    /// permit dropped without either counts as a failure.
    ///
    /// # Errors
    /// [`BreakerError::Open`] when the breaker refuses the call.
    pub fn try_acquire(&self) -> Result<BreakerPermit, BreakerError<std::convert::Infallible>> {
        let (epoch, probe) = self.admit()?;
        Ok(BreakerPermit {
            inner: Arc::clone(&self.inner),
            epoch,
            probe,
            done: false,
        })
    }

    /// Admits one call: its state epoch and whether it is a probe.
    #[inline]
    fn admit<E>(&self) -> Result<(u64, bool), BreakerError<E>> {
        let i = &self.inner;
        loop {
            let epoch = i.epoch.load(Ordering::Acquire);
            match i.state.load(Ordering::Acquire) {
                CLOSED => {
                    i.calls.fetch_add(1, Ordering::Relaxed);
                    return Ok((epoch, false));
                }
                OPEN => {
                    let mut slow = i.slow();
                    if i.epoch.load(Ordering::Acquire) != epoch {
                        continue;
                    }
                    let since = slow.opened_at.map_or(Duration::MAX, |t| t.elapsed());
                    if since < i.cool_down {
                        drop(slow);
                        return Err(self.refuse(BreakerState::Open, Some(i.cool_down - since)));
                    }
                    i.transition(&mut slow, epoch, HALF_OPEN, "cool-down over");
                }
                _ => {
                    let taken = i
                        .probes_in_flight
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < i.probes).then_some(n + 1));
                    if i.epoch.load(Ordering::Acquire) != epoch {
                        continue;
                    }
                    return match taken {
                        Ok(_) => {
                            i.calls.fetch_add(1, Ordering::Relaxed);
                            Ok((epoch, true))
                        }
                        Err(_) => Err(self.refuse(BreakerState::HalfOpen, None)),
                    };
                }
            }
        }
    }

    fn refuse<E>(&self, state: BreakerState, retry_in: Option<Duration>) -> BreakerError<E> {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        BreakerError::Open {
            breaker: Arc::clone(&self.inner.name),
            state,
            retry_in,
        }
    }

    /// Runs `fut` through the breaker; every `Err` counts as a failure.
    ///
    /// # Cancel safety
    /// Dropping the future drops `fut`; a dropped probe counts as a failure, a dropped
    /// closed-state call counts as nothing.
    ///
    /// # Errors
    /// [`BreakerError::Open`] without running `fut` when the breaker refuses;
    /// [`BreakerError::Inner`] with `fut`'s own error.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |_| true).await
    }

    /// Runs `fut` through the breaker; an `Err` counts as a failure only if `is_failure`
    /// says so (a "not found" may be a success for the dependency's health).
    ///
    /// # Cancel safety
    /// As [`call`](Self::call).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_classified<T, E, F, C>(&self, fut: F, is_failure: C) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&E) -> bool,
    {
        let (epoch, probe) = self.admit()?;
        let mut guard = CallGuard {
            inner: &self.inner,
            epoch,
            probe,
            done: false,
        };
        let out = fut.await;
        guard.done = true;
        let failed = match &out {
            Ok(_) => false,
            Err(e) => is_failure(e),
        };
        self.inner.record(epoch, probe, failed);
        out.map_err(BreakerError::Inner)
    }
}

/// Counts a probe dropped before it finished as a failure; borrows the breaker, so the call
/// path clones no `Arc`.
struct CallGuard<'a> {
    inner: &'a Inner,
    epoch: u64,
    probe: bool,
    done: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.inner.record(self.epoch, true, true);
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; report how it went.
#[must_use = "report the outcome with success() or failure()"]
pub struct BreakerPermit {
    inner: Arc<Inner>,
    epoch: u64,
    probe: bool,
    done: bool,
}

impl fmt::Debug for BreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.inner.name)
            .field("probe", &self.probe)
            .finish()
    }
}

impl BreakerPermit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.done = true;
        self.inner.record(self.epoch, self.probe, false);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.done = true;
        self.inner.record(self.epoch, self.probe, true);
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.inner.record(self.epoch, true, true);
        }
    }
}

crate::sync::stats::node_stats!(CircuitBreaker);
