//! [`AsyncSemaphore`]: a named counting semaphore with RAII permits.
//!
//! Permits are guards: they go back when dropped, so a permit can never be released twice
//! and the semaphore can never end up with more permits than it was built with. Errors name
//! the semaphore, the permits asked for, how many were available and how many callers waited.
//!
//! ```
//! use uno_runtime::sync::{AsyncSemaphore, SyncError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sem = AsyncSemaphore::new("uploads", 2)?;
//! let a = sem.acquire().await?;
//! let b = sem.try_acquire()?;
//! assert!(matches!(sem.try_acquire(), Err(SyncError::NoPermits { available: 0, .. })));
//! drop((a, b));
//! assert_eq!(sem.available_permits(), 2);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use tokio::time::Instant;

use super::error::{ConfigError, SyncError};

/// Counters of an [`AsyncSemaphore`] (also used by [`Limiter`](super::Limiter)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SemaphoreStats {
    /// Total permits.
    pub capacity: usize,
    /// Permits available now.
    pub available: usize,
    /// Callers waiting now.
    pub waiting: usize,
    /// Successful acquisitions.
    pub acquired: u64,
    /// Acquisitions refused or timed out.
    pub rejected: u64,
    /// Highest number of permits out at once (sampled at acquisition).
    pub peak_in_use: usize,
}

pub(crate) struct SemShared {
    pub(crate) name: Arc<str>,
    pub(crate) capacity: usize,
    pub(crate) sem: Semaphore,
    pub(crate) waiting: AtomicUsize,
    pub(crate) acquired: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) peak: AtomicUsize,
}

impl SemShared {
    pub(crate) fn new(name: Arc<str>, capacity: usize, what: &'static str) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::Zero { name, what });
        }
        if capacity > Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooLarge {
                name,
                what,
                value: capacity,
                max: Semaphore::MAX_PERMITS,
            });
        }
        Ok(Self {
            name,
            capacity,
            sem: Semaphore::new(capacity),
            waiting: AtomicUsize::new(0),
            acquired: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    #[inline]
    pub(crate) fn on_acquired(&self) {
        self.acquired.fetch_add(1, Ordering::Relaxed);
        let in_use = self.capacity - self.sem.available_permits();
        if in_use > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_use, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> SemaphoreStats {
        SemaphoreStats {
            capacity: self.capacity,
            available: self.sem.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
            acquired: self.acquired.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            peak_in_use: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Waits for `n` permits, bounded by `timeout`. `Ok(None)` means the timeout passed.
    pub(crate) async fn acquire_wait(&self, n: u32, timeout: Option<Duration>) -> Option<SemaphorePermit<'_>> {
        // Fast path: no future, no waiter bookkeeping.
        if let Ok(p) = self.sem.try_acquire_many(n) {
            self.on_acquired();
            return Some(p);
        }
        let _waiting = Waiting::new(&self.waiting);
        let acquire = self.sem.acquire_many(n);
        let permit = match timeout {
            None => acquire.await.ok(),
            Some(t) => tokio::time::timeout(t, acquire).await.ok()?.ok(),
        };
        if permit.is_some() {
            self.on_acquired();
        }
        permit
    }
}

/// Counts a waiter for as long as it lives; dropping it (completion or cancellation) uncounts.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A counting semaphore with a name, RAII permits and counters. See the [module docs](self).
#[derive(Clone)]
pub struct AsyncSemaphore {
    shared: Arc<SemShared>,
}

impl fmt::Debug for AsyncSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSemaphore")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl AsyncSemaphore {
    /// A semaphore named `name` with `permits` permits.
    ///
    /// # Errors
    /// [`ConfigError::Zero`] when `permits` is 0, [`ConfigError::TooLarge`] above
    /// tokio's `Semaphore::MAX_PERMITS`.
    pub fn new(name: impl Into<Arc<str>>, permits: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Arc::new(SemShared::new(name.into(), permits, "permits")?),
        })
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Permits available now.
    pub fn available_permits(&self) -> usize {
        self.shared.sem.available_permits()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SemaphoreStats {
        self.shared.stats()
    }

    /// Waits for one permit (FIFO).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire gives up its place in the queue and takes no
    /// permit.
    ///
    /// # Errors
    /// None today (the semaphore is never closed); the `Result` keeps the signature uniform
    /// with the other acquires.
    pub async fn acquire(&self) -> Result<AsyncSemaphorePermit<'_>, SyncError> {
        self.acquire_many(1).await
    }

    /// Waits for `n` permits at once (FIFO).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending acquire takes no permit, not even part of `n`.
    ///
    /// # Errors
    /// [`SyncError::TooManyPermits`] at once when `n` exceeds the capacity.
    pub async fn acquire_many(&self, n: u32) -> Result<AsyncSemaphorePermit<'_>, SyncError> {
        self.check_n(n)?;
        match self.shared.acquire_wait(n, None).await {
            Some(permit) => Ok(AsyncSemaphorePermit { permit }),
            None => Err(self.no_permits(n, None)),
        }
    }

    /// Waits at most `timeout` for `n` permits.
    ///
    /// # Cancel safety
    /// Cancel safe, like [`acquire_many`](Self::acquire_many).
    ///
    /// # Errors
    /// [`SyncError::NoPermits`] when the timeout passes, [`SyncError::TooManyPermits`] at
    /// once when `n` exceeds the capacity.
    pub async fn acquire_timeout(&self, n: u32, timeout: Duration) -> Result<AsyncSemaphorePermit<'_>, SyncError> {
        self.check_n(n)?;
        let start = Instant::now();
        match self.shared.acquire_wait(n, Some(timeout)).await {
            Some(permit) => Ok(AsyncSemaphorePermit { permit }),
            None => Err(self.no_permits(n, Some(start.elapsed()))),
        }
    }

    /// Takes one permit if one is available now.
    ///
    /// # Errors
    /// [`SyncError::NoPermits`] when none is.
    pub fn try_acquire(&self) -> Result<AsyncSemaphorePermit<'_>, SyncError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are available now.
    ///
    /// # Errors
    /// [`SyncError::NoPermits`] when they are not, [`SyncError::TooManyPermits`] when `n`
    /// exceeds the capacity.
    pub fn try_acquire_many(&self, n: u32) -> Result<AsyncSemaphorePermit<'_>, SyncError> {
        self.check_n(n)?;
        match self.shared.sem.try_acquire_many(n) {
            Ok(permit) => {
                self.shared.on_acquired();
                Ok(AsyncSemaphorePermit { permit })
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(self.no_permits(n, None)),
        }
    }

    fn check_n(&self, n: u32) -> Result<(), SyncError> {
        if n as usize > self.shared.capacity {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SyncError::TooManyPermits {
                semaphore: Arc::clone(&self.shared.name),
                asked: n,
                capacity: self.shared.capacity,
            });
        }
        Ok(())
    }

    fn no_permits(&self, n: u32, waited: Option<Duration>) -> SyncError {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        SyncError::NoPermits {
            semaphore: Arc::clone(&self.shared.name),
            asked: n,
            available: self.shared.sem.available_permits(),
            capacity: self.shared.capacity,
            waiters: self.shared.waiting.load(Ordering::Relaxed),
            waited,
        }
    }
}

/// Permits of an [`AsyncSemaphore`]; they go back when this is dropped.
#[must_use = "the permits are released as soon as this is dropped"]
#[derive(Debug)]
pub struct AsyncSemaphorePermit<'a> {
    permit: SemaphorePermit<'a>,
}

impl AsyncSemaphorePermit<'_> {
    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permit.num_permits()
    }
}

crate::sync::stats::node_stats!(AsyncSemaphore);
