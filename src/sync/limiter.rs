//! [`Limiter`]: a concurrency limit with active, peak and waiting counts.
//!
//! ```
//! use uno_runtime::sync::Limiter;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::new("db-writes", 4)?;
//! let n = limiter.run(async { 21 * 2 }).await;
//! assert_eq!(n, 42);
//! assert_eq!(limiter.stats().active, 0);
//! assert_eq!(limiter.stats().peak, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::error::{ConfigError, SyncError};
use super::semaphore::SemShared;

/// Counters of a [`Limiter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LimiterStats {
    /// The limit.
    pub limit: usize,
    /// Callers inside now.
    pub active: usize,
    /// Highest number inside at once.
    pub peak: usize,
    /// Callers waiting now.
    pub waiting: usize,
    /// Admissions so far.
    pub admitted: u64,
    /// Refusals and timeouts so far.
    pub rejected: u64,
}

/// At most `limit` callers at once; the rest wait in FIFO order. Cheap to clone (shared).
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<SemShared>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Limiter {
    /// A limiter named `name` letting `limit` callers in at once.
    ///
    /// # Errors
    /// [`ConfigError::Zero`] when `limit` is 0, [`ConfigError::TooLarge`] above tokio's
    /// `Semaphore::MAX_PERMITS`.
    pub fn new(name: impl Into<Arc<str>>, limit: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Arc::new(SemShared::new(name.into(), limit, "limit")?),
        })
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LimiterStats {
        let s = self.shared.stats();
        LimiterStats {
            limit: s.capacity,
            active: s.capacity - s.available,
            peak: s.peak_in_use,
            waiting: s.waiting,
            admitted: s.acquired,
            rejected: s.rejected,
        }
    }

    /// Waits for a slot (FIFO); the slot is freed when the permit is dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire takes no slot.
    ///
    /// # Errors
    /// None today; the `Result` keeps the signature uniform with
    /// [`acquire_timeout`](Self::acquire_timeout).
    pub async fn acquire(&self) -> Result<LimiterPermit<'_>, SyncError> {
        Ok(self.acquire_slot().await)
    }

    pub(crate) async fn acquire_slot(&self) -> LimiterPermit<'_> {
        loop {
            // The semaphore is never closed, so `None` cannot happen without a timeout.
            if let Some(permit) = self.shared.acquire_wait(1, None).await {
                return LimiterPermit { _permit: permit };
            }
        }
    }

    /// Waits at most `timeout` for a slot.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire takes no slot.
    ///
    /// # Errors
    /// [`SyncError::LimiterFull`] when the timeout passes.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<LimiterPermit<'_>, SyncError> {
        let start = Instant::now();
        match self.shared.acquire_wait(1, Some(timeout)).await {
            Some(permit) => Ok(LimiterPermit { _permit: permit }),
            None => Err(self.full(Some(start.elapsed()))),
        }
    }

    /// Takes a slot if one is free now.
    ///
    /// # Errors
    /// [`SyncError::LimiterFull`] when none is.
    pub fn try_acquire(&self) -> Result<LimiterPermit<'_>, SyncError> {
        match self.shared.sem.try_acquire() {
            Ok(permit) => {
                self.shared.on_acquired();
                Ok(LimiterPermit { _permit: permit })
            }
            Err(_) => Err(self.full(None)),
        }
    }

    /// Runs `fut` inside a slot: waits for one, then polls `fut` to completion and frees it.
    ///
    /// # Cancel safety
    /// Cancel safe as far as the limiter goes: dropping the returned future frees the slot (or
    /// the place in the queue). Whether `fut` itself may be dropped midway is up to `fut`.
    ///
    /// # Errors
    /// None of its own: it waits as long as it takes and returns `fut`'s output.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        let _permit = self.acquire_slot().await;
        fut.await
    }

    fn full(&self, waited: Option<Duration>) -> SyncError {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        SyncError::LimiterFull {
            limiter: Arc::clone(&self.shared.name),
            limit: self.shared.capacity,
            waiting: self.shared.waiting.load(Ordering::Relaxed),
            waited,
        }
    }
}

/// A slot in a [`Limiter`]; freed when dropped.
#[must_use = "the slot is freed as soon as this is dropped"]
#[derive(Debug)]
pub struct LimiterPermit<'a> {
    _permit: SemaphorePermit<'a>,
}

crate::sync::stats::node_stats!(Limiter);
