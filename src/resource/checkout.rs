//! What every pooled connection carries: the wrapper manager uno puts around a bb8
//! [`ManageConnection`] (close flag, broken flag, last-error sink, checkout tracking) and the
//! [`PoolGuard`] that `acquire` returns.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bb8::{ErrorSink, ManageConnection, PooledConnection};
use tokio_util::sync::CancellationToken;

use super::pool::Incarnation;

/// Locks a mutex, ignoring poisoning (the data are plain counters and strings).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State shared by every incarnation of one pool node.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: Arc<str>,
    pub path: std::sync::OnceLock<Arc<str>>,
    pub last_error: Mutex<Option<String>>,
    pub leaks_total: AtomicU64,
    pub last_leak: Mutex<Option<String>>,
    pub validation_failures: AtomicU64,
    pub leak_threshold: Option<Duration>,
}

impl Shared {
    pub fn path(&self) -> &str {
        self.path.get().map_or(&*self.name, |p| &**p)
    }

    pub fn record_error(&self, message: String) {
        tracing::warn!(pool = %self.path(), error = %message, "pool connection error");
        *lock(&self.last_error) = Some(message);
    }
}

/// The close signal of one pool: a plain flag for the hot paths (a `CancellationToken`'s
/// `is_cancelled` takes a lock) and a token for the waiters.
#[derive(Debug)]
pub(crate) struct Closer {
    flag: AtomicBool,
    pub token: CancellationToken,
}

impl Closer {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            flag: AtomicBool::new(false),
            token,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub fn close(&self) {
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }
}

/// A coarse clock for leak detection: a counter a background task bumps every `tick`, so
/// that a checkout reads no clock (a relaxed load at acquire, one at release).
#[derive(Debug)]
pub(crate) struct LeakClock {
    pub ticks: AtomicU64,
    pub tick: Duration,
    /// A checkout held more than this many ticks is a leak.
    pub limit_ticks: u64,
}

impl LeakClock {
    /// Ticks of an eighth of the threshold (at least 1 ms).
    pub fn new(threshold: Duration) -> Self {
        let tick = (threshold / 8).max(Duration::from_millis(1));
        let limit_ticks = (threshold.as_nanos() / tick.as_nanos()) as u64;
        Self {
            ticks: AtomicU64::new(0),
            tick,
            limit_ticks,
        }
    }

    pub fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// Per-connection checkout record, read by the stats (live count of held-too-long checkouts).
#[derive(Debug, Default)]
pub(crate) struct ConnMeta {
    /// 0 when idle, else 1 + the leak clock's tick at checkout.
    pub held_since: AtomicU64,
}

/// The registry of live connections' records, for the leak count.
pub(crate) type Metas = Arc<Mutex<Vec<Weak<ConnMeta>>>>;

/// A connection as uno pools it.
pub(crate) struct Pooled<C> {
    pub(crate) conn: C,
    pub(crate) broken: bool,
    pub(crate) meta: Arc<ConnMeta>,
}

/// The error of uno's wrapper manager: the pool was closed, or the backend's own error.
#[derive(Debug)]
pub(crate) enum ManagedError<E> {
    /// The pool node stopped: no new connections are made.
    Closed,
    /// The wrapped manager's error.
    Backend(E),
}

/// uno's wrapper around a bb8 manager. Internal to the pool; public only because it appears in
/// the type of the bb8 guard.
pub(crate) struct Managed<M> {
    pub(crate) inner: Arc<M>,
    pub(crate) closed: Arc<Closer>,
    pub(crate) metas: Metas,
    pub(crate) max_size: usize,
}

impl<M: ManageConnection> ManageConnection for Managed<M> {
    type Connection = Pooled<M::Connection>;
    type Error = ManagedError<M::Error>;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        if self.closed.is_closed() {
            return Err(ManagedError::Closed);
        }
        let conn = self.inner.connect().await.map_err(ManagedError::Backend)?;
        let meta = Arc::new(ConnMeta::default());
        let mut metas = lock(&self.metas);
        if metas.len() >= 2 * self.max_size {
            metas.retain(|m| m.strong_count() > 0);
        }
        metas.push(Arc::downgrade(&meta));
        Ok(Pooled {
            conn,
            broken: false,
            meta,
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.inner.is_valid(&mut conn.conn).await.map_err(ManagedError::Backend)
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.broken || self.closed.is_closed() || self.inner.has_broken(&mut conn.conn)
    }
}

/// bb8's error sink: keeps the last connection error for the acquire-timeout message.
pub(crate) struct Sink(pub Arc<Shared>);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sink").field(&self.0.path()).finish()
    }
}

impl<E: std::fmt::Display + Send + 'static> ErrorSink<ManagedError<E>> for Sink {
    fn sink(&self, error: ManagedError<E>) {
        match error {
            ManagedError::Backend(e) => self.0.record_error(e.to_string()),
            ManagedError::Closed => {} // expected while a pool closes
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<ManagedError<E>>> {
        Box::new(Sink(self.0.clone()))
    }
}

/// A checked-out connection: bb8's own guard plus where and when it was acquired. Returns the
/// connection to the pool when dropped; a checkout held longer than the pool's leak threshold
/// is reported then (a tracing warning naming the acquire location, and the pool's stats).
/// Dereferences to the connection.
pub struct PoolGuard<M: ManageConnection> {
    conn: PooledConnection<'static, Managed<M>>,
    acquired: u64,
    location: &'static Location<'static>,
    incarnation: Arc<Incarnation<M>>,
}

impl<M: ManageConnection> PoolGuard<M> {
    pub(crate) fn new(
        conn: PooledConnection<'static, Managed<M>>,
        location: &'static Location<'static>,
        incarnation: Arc<Incarnation<M>>,
    ) -> Self {
        let acquired = incarnation.clock.as_ref().map_or(0, LeakClock::now);
        conn.meta.held_since.store(acquired + 1, Ordering::Relaxed);
        Self {
            conn,
            acquired,
            location,
            incarnation,
        }
    }

    /// Marks the connection unusable: the pool discards it (and closes it) instead of reusing
    /// it. Do this after an error that leaves the connection in an unknown state.
    pub fn mark_broken(&mut self) {
        self.conn.broken = true;
    }

    /// Where this checkout was acquired.
    pub fn acquired_at(&self) -> &'static Location<'static> {
        self.location
    }

    /// About how long this checkout has been held, at the resolution of the leak check (an
    /// eighth of the pool's leak threshold); zero when leak detection is off.
    pub fn held_for(&self) -> Duration {
        self.incarnation.clock.as_ref().map_or(Duration::ZERO, |c| {
            c.tick * (c.now().saturating_sub(self.acquired)) as u32
        })
    }
}

impl<M: ManageConnection> Deref for PoolGuard<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self.conn.conn
    }
}

impl<M: ManageConnection> DerefMut for PoolGuard<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn.conn
    }
}

impl<M: ManageConnection> std::fmt::Debug for PoolGuard<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuard")
            .field("pool", &self.incarnation.shared.path())
            .field("acquired_at", &format_args!("{}", self.location))
            .field("held_for", &self.held_for())
            .finish()
    }
}

impl<M: ManageConnection> Drop for PoolGuard<M> {
    fn drop(&mut self) {
        self.conn.meta.held_since.store(0, Ordering::Relaxed);
        let Some(clock) = &self.incarnation.clock else {
            return;
        };
        let held_ticks = clock.now().saturating_sub(self.acquired);
        if held_ticks > clock.limit_ticks {
            self.report_leak(clock.tick * held_ticks as u32);
        }
    }
}

impl<M: ManageConnection> PoolGuard<M> {
    #[cold]
    fn report_leak(&self, held: Duration) {
        let shared = &self.incarnation.shared;
        shared.leaks_total.fetch_add(1, Ordering::Relaxed);
        let at = self.location.to_string();
        tracing::warn!(
            pool = %shared.path(),
            held = ?held,
            limit = ?shared.leak_threshold,
            acquired_at = %at,
            "pool checkout held longer than the leak threshold"
        );
        *lock(&shared.last_leak) = Some(format!("{at} held about {held:?}"));
    }
}
