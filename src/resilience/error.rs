//! Errors of the resilience layer.
//!
//! [`RetryError`] keeps the operation's own error (never a wrapper of a wrapper) with the
//! number of attempts; [`BreakerError`] and [`Overloaded`] name the breaker or gate that
//! refused; [`Cancelled`] is what a cancelled operation returns.
//!
//! ```
//! use uno_runtime::resilience::RetryError;
//!
//! let err: RetryError<&str> = RetryError::Exhausted { error: "connection refused", attempts: 3 };
//! assert_eq!(err.attempts(), 3);
//! assert_eq!(err.error(), Some(&"connection refused"));
//! assert_eq!(err.to_string(), "gave up after 3 attempts (attempts exhausted): connection refused");
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uno_actors::backoff::BackoffError;

use super::circuit_breaker::BreakerState;

/// A retry loop gave up. The operation's last error is kept as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// Every attempt failed.
    Exhausted {
        /// The last attempt's error.
        error: E,
        /// Attempts made, the first call included.
        attempts: u32,
    },
    /// The retry-if predicate said this error is not worth retrying.
    NotRetryable {
        /// The error.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
    /// The next wait would have gone past the maximum total elapsed time.
    ElapsedLimit {
        /// The last attempt's error.
        error: E,
        /// Attempts made.
        attempts: u32,
        /// Time spent so far.
        elapsed: Duration,
    },
    /// The cancellation token fired; the loop stopped at once.
    Cancelled {
        /// Attempts started (a cancelled attempt counts).
        attempts: u32,
        /// The error of the last finished attempt, if any.
        last_error: Option<E>,
    },
}

impl<E> RetryError<E> {
    /// Attempts made, the first call included.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::NotRetryable { attempts, .. }
            | Self::ElapsedLimit { attempts, .. }
            | Self::Cancelled { attempts, .. } => *attempts,
        }
    }

    /// The operation's last error, if an attempt finished.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Exhausted { error, .. } | Self::NotRetryable { error, .. } | Self::ElapsedLimit { error, .. } => {
                Some(error)
            }
            Self::Cancelled { last_error, .. } => last_error.as_ref(),
        }
    }

    /// The operation's last error, if an attempt finished.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Exhausted { error, .. } | Self::NotRetryable { error, .. } | Self::ElapsedLimit { error, .. } => {
                Some(error)
            }
            Self::Cancelled { last_error, .. } => last_error,
        }
    }

    /// Whether the loop was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { error, attempts } => {
                write!(f, "gave up after {attempts} attempts (attempts exhausted): {error}")
            }
            Self::NotRetryable { error, attempts } => {
                write!(f, "not retried after attempt {attempts} (error not retryable): {error}")
            }
            Self::ElapsedLimit {
                error,
                attempts,
                elapsed,
            } => write!(
                f,
                "gave up after {attempts} attempts and {elapsed:?} (max total elapsed time): {error}"
            ),
            Self::Cancelled {
                attempts,
                last_error: Some(e),
            } => write!(f, "retry cancelled during attempt {attempts}; last error: {e}"),
            Self::Cancelled { attempts, .. } => write!(f, "retry cancelled during attempt {attempts}"),
        }
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error().map(|e| e as &(dyn Error + 'static))
    }
}

/// An operation was cancelled through its `CancellationToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("operation cancelled")]
pub struct Cancelled;

/// A circuit breaker refused the call, or the call itself failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker is open (or half-open with every probe slot taken).
    Open {
        /// The breaker's name.
        breaker: Arc<str>,
        /// Its state.
        state: BreakerState,
        /// Time left of the cool-down, when open.
        retry_in: Option<Duration>,
    },
    /// The call ran and failed with its own error.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Open { .. } => None,
        }
    }

    /// Whether the breaker refused the call.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open {
                breaker,
                state,
                retry_in: Some(d),
            } => write!(f, "circuit breaker `{breaker}` is {state}; retry in {d:?}"),
            Self::Open { breaker, state, .. } => {
                write!(
                    f,
                    "circuit breaker `{breaker}` is {state} and all its probe calls are taken"
                )
            }
            Self::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: Error + 'static> Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Open { .. } => None,
        }
    }
}

/// An admission gate shed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{gate}` overloaded: {in_flight} of {capacity} in flight, {waiting} waiting{}", match waited { Some(d) => format!(", gave up after {d:?}"), None => String::from(", shed at once") })]
pub struct Overloaded {
    /// The gate's name.
    pub gate: Arc<str>,
    /// Its in-flight capacity.
    pub capacity: usize,
    /// Requests in flight when this one was shed.
    pub in_flight: usize,
    /// Requests waiting when this one was shed.
    pub waiting: usize,
    /// How long this one waited before it was shed (`None`: shed without waiting).
    pub waited: Option<Duration>,
}

/// Invalid configuration of a resilience policy, reported when it is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_attempts` of zero: not even the first call would run.
    #[error("retry policy: max_attempts must be at least 1 (the first call counts)")]
    ZeroAttempts,
    /// A zero maximum total elapsed time.
    #[error("retry policy: max_elapsed must be above zero")]
    ZeroMaxElapsed,
    /// Invalid backoff parameters.
    #[error("retry policy: {0}")]
    Backoff(#[from] BackoffError),
    /// A parameter outside its range.
    #[error("`{name}`: {parameter} = {value} is out of range (expected {expected})")]
    OutOfRange {
        /// The breaker's or gate's name.
        name: Arc<str>,
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
    /// A circuit breaker with no way to open.
    #[error("circuit breaker `{name}`: neither consecutive failures nor a failure rate can open it")]
    NoTripCondition {
        /// The breaker's name.
        name: Arc<str>,
    },
}
