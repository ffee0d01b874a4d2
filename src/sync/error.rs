//! Errors of the `sync` primitives: one enum, [`SyncError`], plus the standalone [`Timeout`].
//!
//! Every message names the primitive (by the name it was built with), the limit that was hit
//! and, for locks, who holds it.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::Timeout;
//!
//! let err = Timeout::new("load config", Duration::from_secs(1), Duration::from_millis(1002));
//! assert_eq!(err.to_string(), "`load config` timed out after 1.002s (limit 1s)");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::lock::{DeadlockEdge, HolderInfo};

/// An operation did not finish within its time limit. Returned by [`timeout`](super::timeout())
/// and by the `timeout_handler` combinator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{operation}` timed out after {elapsed:?} (limit {limit:?})")]
pub struct Timeout {
    /// What was being done.
    pub operation: Cow<'static, str>,
    /// The limit it was given.
    pub limit: Duration,
    /// How long it actually ran before it was abandoned.
    pub elapsed: Duration,
}

impl Timeout {
    /// A timeout error for `operation`, which ran `elapsed` against a limit of `limit`.
    pub fn new(operation: impl Into<Cow<'static, str>>, limit: Duration, elapsed: Duration) -> Self {
        Self {
            operation: operation.into(),
            limit,
            elapsed,
        }
    }
}

/// Why a `sync` primitive refused or gave up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// [`AsyncLock::lock_timeout`](super::AsyncLock::lock_timeout) gave up.
    #[error("lock `{lock}`: not acquired within {waited:?}; {}", HolderDesc(holder.as_ref()))]
    LockTimeout {
        /// The lock's name.
        lock: Arc<str>,
        /// How long the caller waited.
        waited: Duration,
        /// Who held it when the caller gave up (`None` if it was released meanwhile).
        holder: Option<HolderInfo>,
    },
    /// The calling task already holds this lock: waiting would never end.
    #[error("lock `{lock}`: the calling task already holds it ({holder}); re-acquiring would deadlock")]
    WouldDeadlock {
        /// The lock's name.
        lock: Arc<str>,
        /// The current holder, which is the caller itself.
        holder: HolderInfo,
    },
    /// A cycle in the wait-for graph of [`AsyncLock`](super::AsyncLock)s: the caller was failed
    /// to break it.
    #[error("deadlock: {}", CycleDesc(cycle))]
    Deadlock {
        /// Each lock in the cycle and who holds it, starting with the lock the caller waited on.
        cycle: Vec<DeadlockEdge>,
    },
    /// [`try_lock`](super::AsyncLock::try_lock) found the lock held.
    #[error("lock `{lock}` is held; {}", HolderDesc(holder.as_ref()))]
    LockHeld {
        /// The lock's name.
        lock: Arc<str>,
        /// Its holder.
        holder: Option<HolderInfo>,
    },
    /// A semaphore could not give the permits asked for (now, or within a timeout).
    #[error("semaphore `{semaphore}`: {asked} permit(s) not available{} ({available} of {capacity} available, {waiters} waiting)", Within(*waited))]
    NoPermits {
        /// The semaphore's name.
        semaphore: Arc<str>,
        /// Permits asked for.
        asked: u32,
        /// Permits available when the caller gave up.
        available: usize,
        /// Total permits of the semaphore.
        capacity: usize,
        /// Other callers waiting at that time.
        waiters: usize,
        /// How long the caller waited (`None` for `try_acquire`).
        waited: Option<Duration>,
    },
    /// More permits asked for than the semaphore will ever have: waiting would never end.
    #[error("semaphore `{semaphore}`: asked for {asked} permits, more than its capacity {capacity}")]
    TooManyPermits {
        /// The semaphore's name.
        semaphore: Arc<str>,
        /// Permits asked for.
        asked: u32,
        /// Total permits of the semaphore.
        capacity: usize,
    },
    /// A [`Limiter`](super::Limiter) was at its limit (now, or for the whole timeout).
    #[error("limiter `{limiter}`: at its limit of {limit} concurrent{} ({waiting} waiting)", Within(*waited))]
    LimiterFull {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Its concurrency limit.
        limit: usize,
        /// Callers waiting at that time.
        waiting: usize,
        /// How long the caller waited (`None` for `try_acquire`).
        waited: Option<Duration>,
    },
    /// A [`RateLimiter`](super::RateLimiter) had not enough tokens now.
    #[error(
        "rate limiter `{limiter}`: {asked} token(s) not available at {rate}/s burst {burst}; next in {retry_after:?}"
    )]
    RateLimited {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Tokens asked for.
        asked: u32,
        /// Refill rate per second.
        rate: f64,
        /// Bucket capacity.
        burst: u32,
        /// When the tokens would be available.
        retry_after: Duration,
    },
    /// A [`RateLimiter`](super::RateLimiter) would need longer than the caller's timeout.
    #[error("rate limiter `{limiter}`: {asked} token(s) need a wait of {needed:?}, over the timeout {timeout:?} ({rate}/s burst {burst})")]
    RateWaitTooLong {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Tokens asked for.
        asked: u32,
        /// Refill rate per second.
        rate: f64,
        /// Bucket capacity.
        burst: u32,
        /// The wait that would have been needed.
        needed: Duration,
        /// The caller's timeout.
        timeout: Duration,
    },
    /// More tokens asked for than the bucket holds: they could never be granted at once.
    #[error("rate limiter `{limiter}`: asked for {asked} tokens, more than its burst {burst}")]
    ExceedsBurst {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Tokens asked for.
        asked: u32,
        /// Bucket capacity.
        burst: u32,
    },
    /// An operation timed out.
    #[error(transparent)]
    Timeout(#[from] Timeout),
}

/// Invalid configuration of a `sync` primitive, reported when it is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A capacity or limit of zero would block every caller forever.
    #[error("`{name}`: {what} must be at least 1")]
    Zero {
        /// The primitive's name.
        name: Arc<str>,
        /// Which parameter.
        what: &'static str,
    },
    /// A capacity above what tokio's semaphore supports.
    #[error("`{name}`: {what} {value} is above the maximum {max}")]
    TooLarge {
        /// The primitive's name.
        name: Arc<str>,
        /// Which parameter.
        what: &'static str,
        /// The value asked for.
        value: usize,
        /// The maximum.
        max: usize,
    },
    /// A rate that is not a positive finite number of tokens per second, or too small to
    /// express (one token per more than ~584 years).
    #[error("rate limiter `{name}`: rate {rate}/s must be a positive finite number")]
    InvalidRate {
        /// The limiter's name.
        name: Arc<str>,
        /// The rate asked for.
        rate: f64,
    },
}

struct HolderDesc<'a>(Option<&'a HolderInfo>);

impl fmt::Display for HolderDesc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(h) => write!(f, "held by {h}"),
            None => f.write_str("holder unknown (released meanwhile)"),
        }
    }
}

struct CycleDesc<'a>(&'a [DeadlockEdge]);

impl fmt::Display for CycleDesc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, edge) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "`{}` held by {}", edge.lock, edge.holder)?;
        }
        f.write_str(" -> back to the first")
    }
}

struct Within(Option<Duration>);

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " within {d:?}"),
            None => Ok(()),
        }
    }
}
