//! Backoff policies: how long to wait before the next attempt.
//!
//! One implementation serves both the kernel's restart backoff (a supervisor waiting before
//! it starts a failed child again) and the resilience layer's `retry`. A [`Backoff`] is an
//! immutable, validated description; every loop that uses it owns a [`BackoffState`], so no
//! state is ever shared between concurrent retry loops or between children.
//!
//! ```
//! use std::time::Duration;
//! use uno_actors::backoff::{Backoff, BackoffState};
//!
//! let policy = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2))
//!     .unwrap()
//!     .with_jitter(0.0)
//!     .unwrap();
//! let mut state = BackoffState::new();
//! let delays: Vec<_> = (1..=6).map(|attempt| policy.delay(attempt, &mut state)).collect();
//! assert_eq!(delays[0], Duration::from_millis(100));
//! assert_eq!(delays[1], Duration::from_millis(200));
//! assert_eq!(delays[5], Duration::from_secs(2)); // capped at max
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How successive delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BackoffStrategy {
    /// `base` every time.
    Constant,
    /// `base × attempt`.
    Linear,
    /// `base × factor^(attempt - 1)`.
    Exponential {
        /// Growth factor, at least 1.
        factor: f64,
    },
    /// AWS "full jitter": uniform in `0..=min(max, base × 2^(attempt - 1))`.
    FullJitter,
    /// AWS "equal jitter": half the exponential delay plus a uniform random half.
    EqualJitter,
    /// AWS "decorrelated jitter": uniform in `base..=previous × 3`, capped.
    DecorrelatedJitter,
}

/// Invalid backoff parameters, reported when the policy is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError {
    /// `min` (the base delay) is greater than `max`.
    #[error("backoff min {min:?} is above its max {max:?}")]
    MinAboveMax {
        /// The base delay asked for.
        min: Duration,
        /// The cap asked for.
        max: Duration,
    },
    /// The jitter factor is not within `0.0..=1.0`.
    #[error("backoff jitter factor {0} is outside 0..=1")]
    JitterOutOfRange(f64),
    /// The exponential growth factor is below 1 (or not a number).
    #[error("backoff growth factor {0} is below 1")]
    FactorBelowOne(f64),
}

/// A validated backoff policy.
///
/// Built with [`Backoff::constant`], [`Backoff::linear`], [`Backoff::exponential`],
/// [`Backoff::full_jitter`], [`Backoff::equal_jitter`] or [`Backoff::decorrelated_jitter`];
/// every constructor checks its parameters and returns a [`BackoffError`] naming what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    strategy: BackoffStrategy,
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Default for Backoff {
    /// Exponential from 100 ms, doubling, capped at 10 s, with a jitter factor of 0.2
    /// (Akka's `restartWithBackoff` shape).
    fn default() -> Self {
        Self {
            strategy: BackoffStrategy::Exponential { factor: 2.0 },
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    fn build(strategy: BackoffStrategy, base: Duration, max: Duration) -> Result<Self, BackoffError> {
        if base > max {
            return Err(BackoffError::MinAboveMax { min: base, max });
        }
        if let BackoffStrategy::Exponential { factor } = strategy {
            if factor.is_nan() || factor < 1.0 || !factor.is_finite() {
                return Err(BackoffError::FactorBelowOne(factor));
            }
        }
        Ok(Self {
            strategy,
            base,
            max,
            jitter: 0.0,
        })
    }

    /// No delay at all: restart or retry at once.
    pub fn none() -> Self {
        Self {
            strategy: BackoffStrategy::Constant,
            base: Duration::ZERO,
            max: Duration::ZERO,
            jitter: 0.0,
        }
    }

    /// The same delay every time.
    ///
    /// # Errors
    /// Never fails today; returns a `Result` like every constructor so callers treat them alike.
    pub fn constant(delay: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::Constant, delay, delay)
    }

    /// `base × attempt`, capped at `max`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `base > max`.
    pub fn linear(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::Linear, base, max)
    }

    /// Doubling from `min`, capped at `max`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `min > max`.
    pub fn exponential(min: Duration, max: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::Exponential { factor: 2.0 }, min, max)
    }

    /// Growing by `factor` from `min`, capped at `max`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `min > max`, [`BackoffError::FactorBelowOne`] when
    /// `factor < 1`.
    pub fn exponential_with_factor(min: Duration, max: Duration, factor: f64) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::Exponential { factor }, min, max)
    }

    /// AWS full jitter: uniform in `0..=min(max, base × 2^(attempt - 1))`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `base > max`.
    pub fn full_jitter(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::FullJitter, base, max)
    }

    /// AWS equal jitter: `t / 2 + uniform(0..=t / 2)` with `t = min(max, base × 2^(attempt - 1))`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `base > max`.
    pub fn equal_jitter(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::EqualJitter, base, max)
    }

    /// AWS decorrelated jitter: `min(max, uniform(base..=previous × 3))`.
    ///
    /// # Errors
    /// [`BackoffError::MinAboveMax`] when `base > max`.
    pub fn decorrelated_jitter(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        Self::build(BackoffStrategy::DecorrelatedJitter, base, max)
    }

    /// Adds proportional random jitter: each delay `d` becomes uniform in
    /// `d × (1 - factor) ..= d × (1 + factor)`, still capped at `max`. Meant for the
    /// deterministic strategies (constant, linear, exponential); the AWS strategies are random
    /// already.
    ///
    /// # Errors
    /// [`BackoffError::JitterOutOfRange`] unless `0.0 <= factor <= 1.0`.
    pub fn with_jitter(mut self, factor: f64) -> Result<Self, BackoffError> {
        if !(0.0..=1.0).contains(&factor) {
            return Err(BackoffError::JitterOutOfRange(factor));
        }
        self.jitter = factor;
        Ok(self)
    }

    /// The strategy.
    pub fn strategy(&self) -> BackoffStrategy {
        self.strategy
    }

    /// The base (minimum) delay.
    pub fn min(&self) -> Duration {
        self.base
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The proportional jitter factor.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before attempt number `attempt + 1`, where `attempt` counts the failures so
    /// far (1 for the delay after the first failure). `attempt = 0` is treated as 1.
    pub fn delay(&self, attempt: u32, state: &mut BackoffState) -> Duration {
        let attempt = attempt.max(1);
        let base = self.base.as_secs_f64();
        let max = self.max.as_secs_f64();
        let doubling = || (base * 2f64.powi((attempt - 1).min(1023) as i32)).min(max);
        let secs = match self.strategy {
            BackoffStrategy::Constant => base,
            BackoffStrategy::Linear => (base * f64::from(attempt)).min(max),
            BackoffStrategy::Exponential { factor } => {
                (base * factor.powi((attempt - 1).min(i32::MAX as u32) as i32)).min(max)
            }
            BackoffStrategy::FullJitter => state.next_f64() * doubling(),
            BackoffStrategy::EqualJitter => {
                let t = doubling();
                t / 2.0 + state.next_f64() * t / 2.0
            }
            BackoffStrategy::DecorrelatedJitter => {
                let prev = state.previous.map_or(base, |p| p.as_secs_f64());
                let hi = (prev * 3.0).max(base);
                (base + state.next_f64() * (hi - base)).min(max)
            }
        };
        let secs = if self.jitter > 0.0 {
            let spread = (state.next_f64() * 2.0 - 1.0) * self.jitter;
            (secs * (1.0 + spread)).clamp(0.0, max)
        } else {
            secs
        };
        let delay = Duration::try_from_secs_f64(secs).unwrap_or(self.max);
        state.previous = Some(delay);
        delay
    }
}

/// The per-loop state of a backoff: the previous delay (for decorrelated jitter) and a
/// private random number generator. Create one per retry loop or per child.
#[derive(Debug, Clone)]
pub struct BackoffState {
    previous: Option<Duration>,
    rng: u64,
}

impl Default for BackoffState {
    fn default() -> Self {
        Self::new()
    }
}

impl BackoffState {
    /// A fresh state with a seed unique to this process and call.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::with_seed(nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A state with a fixed seed, for reproducible delays in tests.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            previous: None,
            rng: seed,
        }
    }

    /// Forgets the previous delay (the decorrelated strategy starts again from `base`).
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// splitmix64: tiny, fast and good enough for jitter; not for cryptography.
    fn next_f64(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn deterministic_strategies() {
        let mut s = BackoffState::with_seed(1);
        let c = Backoff::constant(MS * 50).unwrap();
        assert_eq!(c.delay(7, &mut s), MS * 50);
        let l = Backoff::linear(MS * 10, MS * 35).unwrap();
        assert_eq!(
            [1, 2, 3, 4].map(|a| l.delay(a, &mut s)),
            [MS * 10, MS * 20, MS * 30, MS * 35]
        );
        let e = Backoff::exponential_with_factor(MS * 10, MS * 100, 3.0).unwrap();
        assert_eq!([1, 2, 3].map(|a| e.delay(a, &mut s)), [MS * 10, MS * 30, MS * 90]);
        assert_eq!(e.delay(40, &mut s), MS * 100);
        assert_eq!(e.delay(u32::MAX, &mut s), MS * 100);
    }

    #[test]
    fn random_strategies_stay_in_bounds() {
        let mut s = BackoffState::with_seed(42);
        let full = Backoff::full_jitter(MS * 10, MS * 1000).unwrap();
        let equal = Backoff::equal_jitter(MS * 10, MS * 1000).unwrap();
        let dec = Backoff::decorrelated_jitter(MS * 10, MS * 1000).unwrap();
        for attempt in 1..50 {
            let cap = (MS * 10 * 2u32.saturating_pow(attempt - 1)).min(MS * 1000);
            assert!(full.delay(attempt, &mut s) <= cap);
            let e = equal.delay(attempt, &mut s);
            assert!(e >= cap / 2 && e <= cap, "{e:?} vs {cap:?}");
            let d = dec.delay(attempt, &mut s);
            assert!(d >= MS * 10 && d <= MS * 1000);
        }
    }

    #[test]
    fn proportional_jitter_stays_within_factor() {
        let b = Backoff::exponential(MS * 100, MS * 100_000)
            .unwrap()
            .with_jitter(0.25)
            .unwrap();
        let mut s = BackoffState::with_seed(7);
        for _ in 0..200 {
            let d = b.delay(3, &mut s);
            assert!(d >= MS * 300 && d <= MS * 500, "{d:?}");
        }
    }

    #[test]
    fn invalid_parameters_are_typed_errors() {
        assert_eq!(
            Backoff::exponential(MS * 2, MS),
            Err(BackoffError::MinAboveMax { min: MS * 2, max: MS })
        );
        assert_eq!(
            Backoff::default().with_jitter(1.5),
            Err(BackoffError::JitterOutOfRange(1.5))
        );
        assert_eq!(
            Backoff::default().with_jitter(-0.1),
            Err(BackoffError::JitterOutOfRange(-0.1))
        );
        assert!(matches!(
            Backoff::exponential_with_factor(MS, MS * 2, 0.5),
            Err(BackoffError::FactorBelowOne(_))
        ));
        assert!(matches!(
            Backoff::exponential_with_factor(MS, MS * 2, f64::NAN),
            Err(BackoffError::FactorBelowOne(_))
        ));
    }
}
