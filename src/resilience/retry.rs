//! [`retry`]: run an async operation again, with backoff, until it succeeds or the policy
//! says stop.
//!
//! The policy is an immutable, validated description; each call of [`retry`] owns its own
//! backoff state, so one policy serves any number of concurrent loops. Delays come from
//! [`Backoff`], the same implementation the supervisors use for restarts.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use uno_runtime::actors::backoff::Backoff;
//! use uno_runtime::resilience::{retry, RetryError, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))?)
//!     .retry_if(|e: &std::io::Error| e.kind() != std::io::ErrorKind::NotFound)
//!     .build()?;
//! let calls = AtomicU32::new(0);
//! let value = retry(&policy, || async {
//!     match calls.fetch_add(1, Ordering::Relaxed) {
//!         0 | 1 => Err(std::io::Error::other("flaky")),
//!         _ => Ok(42),
//!     }
//! })
//! .await?;
//! assert_eq!(value, 42);
//!
//! let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
//! let err = retry(&policy, || async { Err::<(), _>(missing()) })
//!     .await
//!     .unwrap_err();
//! assert!(matches!(err, RetryError::NotRetryable { attempts: 1, .. }));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uno_actors::backoff::{Backoff, BackoffError, BackoffState};

use super::error::{ConfigError, RetryError};

type Predicate<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;
type Hook<E> = Arc<dyn Fn(&E, u32, Duration) + Send + Sync>;

/// How to retry: attempts, backoff, limits, which errors, a hook and a cancellation token.
/// Built and validated by [`RetryPolicy::builder`]. Cheap to clone.
pub struct RetryPolicy<E> {
    max_attempts: u32,
    backoff: Backoff,
    max_delay: Option<Duration>,
    max_elapsed: Option<Duration>,
    retry_if: Option<Predicate<E>>,
    on_retry: Option<Hook<E>>,
    cancel: Option<CancellationToken>,
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        Self {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_delay: self.max_delay,
            max_elapsed: self.max_elapsed,
            retry_if: self.retry_if.clone(),
            on_retry: self.on_retry.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

impl<E> fmt::Debug for RetryPolicy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_delay", &self.max_delay)
            .field("max_elapsed", &self.max_elapsed)
            .field("retry_if", &self.retry_if.is_some())
            .field("on_retry", &self.on_retry.is_some())
            .field("cancellable", &self.cancel.is_some())
            .finish()
    }
}

impl<E> RetryPolicy<E> {
    /// A builder: 3 attempts, the default backoff (exponential from 100 ms, capped at 10 s,
    /// 20 % jitter), no elapsed limit, every error retried.
    pub fn builder() -> RetryPolicyBuilder<E> {
        RetryPolicyBuilder {
            max_attempts: 3,
            backoff: Ok(Backoff::default()),
            max_delay: None,
            max_elapsed: None,
            retry_if: None,
            on_retry: None,
            cancel: None,
        }
    }

    /// Maximum attempts, the first call included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The delay before attempt `failures + 1`, after `failures` failures.
    fn delay(&self, failures: u32, state: &mut BackoffState) -> Duration {
        let d = self.backoff.delay(failures, state);
        self.max_delay.map_or(d, |cap| d.min(cap))
    }
}

/// Builds a [`RetryPolicy`]; [`build`](Self::build) validates it.
pub struct RetryPolicyBuilder<E> {
    max_attempts: u32,
    backoff: Result<Backoff, BackoffError>,
    max_delay: Option<Duration>,
    max_elapsed: Option<Duration>,
    retry_if: Option<Predicate<E>>,
    on_retry: Option<Hook<E>>,
    cancel: Option<CancellationToken>,
}

impl<E> fmt::Debug for RetryPolicyBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl<E> RetryPolicyBuilder<E> {
    /// Maximum attempts, the first call included (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff between attempts (see [`Backoff`]'s constructors).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Ok(backoff);
        self
    }

    /// Constant delay.
    pub fn constant(mut self, delay: Duration) -> Self {
        self.backoff = Backoff::constant(delay);
        self
    }

    /// `base × attempt`, capped at `max`.
    pub fn linear(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::linear(base, max);
        self
    }

    /// Doubling from `min`, capped at `max`.
    pub fn exponential(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = Backoff::exponential(min, max);
        self
    }

    /// AWS full jitter.
    pub fn full_jitter(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::full_jitter(base, max);
        self
    }

    /// AWS equal jitter.
    pub fn equal_jitter(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::equal_jitter(base, max);
        self
    }

    /// AWS decorrelated jitter.
    pub fn decorrelated_jitter(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::decorrelated_jitter(base, max);
        self
    }

    /// No single delay longer than this, whatever the backoff says.
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = Some(cap);
        self
    }

    /// Stop once the next wait would end past this much time since the first call.
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// Retry only errors for which `pred` returns true; others end the loop at once.
    pub fn retry_if(mut self, pred: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(pred));
        self
    }

    /// Called before each wait with the error, the attempt that failed (1-based) and the delay.
    pub fn on_retry(mut self, hook: impl Fn(&E, u32, Duration) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// Every loop run with this policy stops at once when `token` is cancelled.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Validates and builds the policy.
    ///
    /// # Errors
    /// [`ConfigError::ZeroAttempts`], [`ConfigError::ZeroMaxElapsed`], or
    /// [`ConfigError::Backoff`] for invalid backoff parameters.
    pub fn build(self) -> Result<RetryPolicy<E>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if self.max_elapsed.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroMaxElapsed);
        }
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            backoff: self.backoff?,
            max_delay: self.max_delay,
            max_elapsed: self.max_elapsed,
            retry_if: self.retry_if,
            on_retry: self.on_retry,
            cancel: self.cancel,
        })
    }
}

/// Runs `op` until it succeeds or `policy` says stop.
///
/// # Cancel safety
/// Dropping the future drops the attempt in flight (as cancel safe as `op`'s futures are);
/// no state outlives it.
///
/// # Errors
/// [`RetryError`] holding `op`'s original last error and the attempt count: `Exhausted`,
/// `NotRetryable` (vetoed by `retry_if`), `ElapsedLimit`, or `Cancelled` when the policy's
/// token fires (the attempt in flight or the wait is abandoned at once).
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy<E>, mut op: F) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let tokens = Tokens(policy.cancel.as_ref(), None);
    if policy.cancel.is_some() || policy.max_elapsed.is_some() {
        return retry_inner(policy, tokens, op, None, None).await;
    }
    // Hot path: the first attempt, with no clock read and no backoff state; the rest of the
    // loop is boxed so this future stays small.
    match op().await {
        Ok(value) => Ok(value),
        Err(error) => Box::pin(retry_inner(policy, tokens, op, None, Some(error))).await,
    }
}

/// [`retry`] with a per-call cancellation token (in addition to the policy's, if any).
///
/// # Cancel safety
/// As [`retry`].
///
/// # Errors
/// As [`retry`]; `Cancelled` when either token fires.
pub async fn retry_cancellable<T, E, F, Fut>(
    policy: &RetryPolicy<E>,
    token: &CancellationToken,
    op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_inner(policy, Tokens(Some(token), policy.cancel.as_ref()), op, None, None).await
}

/// Up to two cancellation tokens (per call and per policy); either one ends the loop.
#[derive(Clone, Copy)]
struct Tokens<'a>(Option<&'a CancellationToken>, Option<&'a CancellationToken>);

impl Tokens<'_> {
    fn none(&self) -> bool {
        self.0.is_none() && self.1.is_none()
    }

    fn is_cancelled(&self) -> bool {
        self.0.is_some_and(CancellationToken::is_cancelled) || self.1.is_some_and(CancellationToken::is_cancelled)
    }

    async fn cancelled(self) {
        let one = async {
            match self.0 {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let two = async {
            match self.1 {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = one => {}
            () = two => {}
        }
    }
}

async fn retry_inner<T, E, F, Fut>(
    policy: &RetryPolicy<E>,
    cancel: Tokens<'_>,
    mut op: F,
    start: Option<Instant>,
    first_error: Option<E>,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    // `first_error`: the caller already made the first attempt, which failed.
    let start = start.or_else(|| policy.max_elapsed.map(|_| Instant::now()));
    let mut attempts = u32::from(first_error.is_some());
    let mut pending = first_error;
    let mut last_error: Option<E> = None;
    let mut state: Option<BackoffState> = None;
    loop {
        let outcome = if let Some(error) = pending.take() {
            Err(error)
        } else if cancel.none() {
            attempts += 1;
            op().await
        } else {
            attempts += 1;
            {
                if cancel.is_cancelled() {
                    return Err(RetryError::Cancelled {
                        attempts: attempts - 1,
                        last_error,
                    });
                }
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        return Err(RetryError::Cancelled { attempts, last_error });
                    }
                    out = op() => out,
                }
            }
        };
        let error = match outcome {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if policy.retry_if.as_ref().is_some_and(|p| !p(&error)) {
            return Err(RetryError::NotRetryable { error, attempts });
        }
        if attempts >= policy.max_attempts {
            return Err(RetryError::Exhausted { error, attempts });
        }
        let delay = policy.delay(attempts, state.get_or_insert_with(BackoffState::new));
        if let (Some(start), Some(limit)) = (start, policy.max_elapsed) {
            let elapsed = start.elapsed();
            if elapsed + delay > limit {
                return Err(RetryError::ElapsedLimit {
                    error,
                    attempts,
                    elapsed,
                });
            }
        }
        if let Some(hook) = &policy.on_retry {
            hook(&error, attempts, delay);
        }
        tracing::debug!(attempt = attempts, ?delay, "retrying after failure");
        if cancel.none() {
            tokio::time::sleep(delay).await;
        } else {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    return Err(RetryError::Cancelled { attempts, last_error: Some(error) });
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
        last_error = Some(error);
    }
}
