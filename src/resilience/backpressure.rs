//! [`AdmissionGate`]: bounded admission in front of an actor or a resource.
//!
//! At most `capacity` requests are in flight; up to `max_waiting` more may wait, each for at
//! most `wait_timeout`; everything beyond is shed at once with [`Overloaded`], which names
//! the gate. Queue depth, in-flight count and rejections are in [`stats`](AdmissionGate::stats).
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::resilience::AdmissionGate;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gate = AdmissionGate::builder("mailer", 1)
//!     .max_waiting(0) // shed at once when full
//!     .build()?;
//! let first = gate.admit().await?;
//! let shed = gate.admit().await.unwrap_err();
//! assert!(shed.to_string().contains("mailer"));
//! drop(first);
//! gate.admit().await?;
//! assert_eq!(gate.stats().rejected, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::{ConfigError, Overloaded};

/// Counters of an [`AdmissionGate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct GateStats {
    /// In-flight capacity.
    pub capacity: usize,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests waiting now (queue depth).
    pub waiting: usize,
    /// Highest queue depth seen.
    pub peak_waiting: usize,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests shed.
    pub rejected: u64,
}

/// Builds an [`AdmissionGate`].
#[derive(Debug, Clone)]
pub struct AdmissionGateBuilder {
    name: Arc<str>,
    capacity: usize,
    max_waiting: usize,
    wait_timeout: Duration,
}

impl AdmissionGateBuilder {
    /// How many may wait for admission (default: `capacity`); `0` sheds at once when full.
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.max_waiting = n;
        self
    }

    /// How long one may wait before it is shed (default 1 s).
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = d;
        self
    }

    /// Validates and builds the gate.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for a capacity of 0 or above tokio's semaphore maximum.
    pub fn build(self) -> Result<AdmissionGate, ConfigError> {
        if self.capacity == 0 || self.capacity > Semaphore::MAX_PERMITS {
            return Err(ConfigError::OutOfRange {
                name: self.name,
                parameter: "capacity",
                value: self.capacity as f64,
                expected: "1..=Semaphore::MAX_PERMITS",
            });
        }
        Ok(AdmissionGate {
            inner: Arc::new(Inner {
                sem: Arc::new(Semaphore::new(self.capacity)),
                name: self.name,
                capacity: self.capacity,
                max_waiting: self.max_waiting,
                wait_timeout: self.wait_timeout,
                waiting: AtomicUsize::new(0),
                peak_waiting: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        })
    }
}

struct Inner {
    name: Arc<str>,
    sem: Arc<Semaphore>,
    capacity: usize,
    max_waiting: usize,
    wait_timeout: Duration,
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

/// A bounded admission gate. Cheap to clone (shared). See the [module docs](self).
#[derive(Clone)]
pub struct AdmissionGate {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdmissionGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionGate")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AdmissionGate {
    /// A builder for a gate named `name` letting `capacity` requests in flight.
    pub fn builder(name: impl Into<Arc<str>>, capacity: usize) -> AdmissionGateBuilder {
        AdmissionGateBuilder {
            name: name.into(),
            capacity,
            max_waiting: capacity,
            wait_timeout: Duration::from_secs(1),
        }
    }

    /// The gate's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GateStats {
        let i = &self.inner;
        GateStats {
            capacity: i.capacity,
            in_flight: i.capacity - i.sem.available_permits(),
            waiting: i.waiting.load(Ordering::Relaxed),
            peak_waiting: i.peak_waiting.load(Ordering::Relaxed),
            admitted: i.admitted.load(Ordering::Relaxed),
            rejected: i.rejected.load(Ordering::Relaxed),
        }
    }

    /// Admits one request: at once if there is room, else waits in FIFO order for up to the
    /// gate's timeout if the queue has room, else sheds it.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped pending admission leaves the queue and takes no slot.
    ///
    /// # Errors
    /// [`Overloaded`] naming the gate, with the in-flight and waiting counts, when the queue
    /// is full or the wait timed out.
    pub async fn admit(&self) -> Result<AdmissionPermit, Overloaded> {
        let i = &self.inner;
        if let Ok(permit) = Arc::clone(&i.sem).try_acquire_owned() {
            i.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(AdmissionPermit { _permit: permit });
        }
        let depth = i.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let _queued = Queued(&i.waiting);
        if depth > i.max_waiting {
            return Err(self.shed(None));
        }
        i.peak_waiting.fetch_max(depth, Ordering::Relaxed);
        let start = Instant::now();
        match tokio::time::timeout(i.wait_timeout, Arc::clone(&i.sem).acquire_owned()).await {
            Ok(Ok(permit)) => {
                i.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(AdmissionPermit { _permit: permit })
            }
            // The semaphore is never closed; treat it like a timeout rather than panic.
            Ok(Err(_)) | Err(_) => Err(self.shed(Some(start.elapsed()))),
        }
    }

    /// Admits one request only if there is room now.
    ///
    /// # Errors
    /// [`Overloaded`] when there is not.
    pub fn try_admit(&self) -> Result<AdmissionPermit, Overloaded> {
        let i = &self.inner;
        match Arc::clone(&i.sem).try_acquire_owned() {
            Ok(permit) => {
                i.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(AdmissionPermit { _permit: permit })
            }
            Err(_) => Err(self.shed(None)),
        }
    }

    fn shed(&self, waited: Option<Duration>) -> Overloaded {
        let i = &self.inner;
        i.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(gate = %i.name, "admission gate shed a request");
        Overloaded {
            gate: Arc::clone(&i.name),
            capacity: i.capacity,
            in_flight: i.capacity - i.sem.available_permits(),
            // This request is leaving the queue: do not count it.
            waiting: i.waiting.load(Ordering::Relaxed).saturating_sub(1),
            waited,
        }
    }
}

/// A request admitted through an [`AdmissionGate`]; its slot is freed when this is dropped.
/// Owned (`'static`), so it can move into a spawned task or a message.
#[must_use = "the slot is freed as soon as this is dropped"]
#[derive(Debug)]
pub struct AdmissionPermit {
    _permit: OwnedSemaphorePermit,
}

crate::sync::stats::node_stats!(AdmissionGate);
