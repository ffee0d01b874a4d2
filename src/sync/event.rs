//! [`AsyncEvent`]: a flag that tasks can wait for, remembering who set it and when.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::AsyncEvent;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ready = AsyncEvent::new("ready");
//! assert!(!ready.wait_timeout(Duration::from_millis(1)).await);
//! ready.set();
//! assert!(ready.is_set());
//! ready.wait().await;
//! assert!(ready.set_by().is_some());
//! # }
//! ```

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Counters of an [`AsyncEvent`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct EventStats {
    /// Whether it is set now.
    pub is_set: bool,
    /// How many times it went from clear to set.
    pub sets: u64,
    /// `wait_timeout` calls that returned `false`.
    pub timeouts: u64,
}

struct Inner {
    name: Arc<str>,
    flag: AtomicBool,
    notify: Notify,
    last_set: Mutex<Option<(Instant, &'static Location<'static>)>>,
    sets: AtomicU64,
    timeouts: AtomicU64,
}

/// A settable, clearable flag to wait for. Cheap to clone (shared). See the
/// [module docs](self).
#[derive(Clone)]
pub struct AsyncEvent {
    inner: Arc<Inner>,
}

impl fmt::Debug for AsyncEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEvent")
            .field("name", &self.inner.name)
            .field("is_set", &self.is_set())
            .field("set_by", &self.set_by())
            .finish()
    }
}

impl AsyncEvent {
    /// A clear event named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                flag: AtomicBool::new(false),
                notify: Notify::new(),
                last_set: Mutex::new(None),
                sets: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
            }),
        }
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sets the flag and wakes every waiter; records when and where. Setting a set event
    /// changes nothing (the first setter stays recorded).
    #[track_caller]
    pub fn set(&self) {
        let location = Location::caller();
        let mut last = self.inner.last_set.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.inner.flag.swap(true, Ordering::AcqRel) {
            *last = Some((Instant::now(), location));
            self.inner.sets.fetch_add(1, Ordering::Relaxed);
        }
        drop(last);
        self.inner.notify.notify_waiters();
    }

    /// Clears the flag; later waiters wait again.
    pub fn clear(&self) {
        let mut last = self.inner.last_set.lock().unwrap_or_else(PoisonError::into_inner);
        self.inner.flag.store(false, Ordering::Release);
        *last = None;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.flag.load(Ordering::Acquire)
    }

    /// When the flag was set, if it is set.
    pub fn set_at(&self) -> Option<Instant> {
        self.last_set().map(|(at, _)| at)
    }

    /// Where the flag was set from, if it is set.
    pub fn set_by(&self) -> Option<&'static Location<'static>> {
        self.last_set().map(|(_, by)| by)
    }

    fn last_set(&self) -> Option<(Instant, &'static Location<'static>)> {
        *self.inner.last_set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EventStats {
        EventStats {
            is_set: self.is_set(),
            sets: self.inner.sets.load(Ordering::Relaxed),
            timeouts: self.inner.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Waits until the flag is set (returns at once if it is).
    ///
    /// # Cancel safety
    /// Cancel safe: it only observes the flag.
    ///
    /// # Errors
    /// None: it waits as long as it takes.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a `set` between the check and the await is not lost.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
            if self.is_set() {
                return;
            }
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it was set. Never panics.
    ///
    /// # Cancel safety
    /// Cancel safe: it only observes the flag.
    ///
    /// # Errors
    /// None: a timeout is the `false` result.
    pub async fn wait_timeout(&self, timeout: Duration) -> bool {
        let set = tokio::time::timeout(timeout, self.wait()).await.is_ok();
        if !set {
            self.inner.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        set
    }
}

crate::sync::stats::node_stats!(AsyncEvent);
