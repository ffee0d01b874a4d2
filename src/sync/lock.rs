//! [`AsyncLock`]: an async mutex that knows who holds it.
//!
//! The holder is recorded on every acquisition (tokio task id, or the thread outside tasks; node path if the task runs
//! inside [`scope_node_path`], the `#[track_caller]` location of the acquiring call and since
//! when), so a timeout names who was in the way. Re-acquiring from the task that holds the lock
//! fails at once with [`SyncError::WouldDeadlock`] instead of hanging; a lock held longer than
//! its threshold is reported with a tracing warning when it is released; a waiter that waits
//! past the deadlock-check threshold looks for a cycle in the wait-for graph of all
//! `AsyncLock`s and, if it is part of one, fails with [`SyncError::Deadlock`].
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::{AsyncLock, SyncError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), SyncError> {
//! let lock = AsyncLock::builder(0u32).name("counter").build();
//! {
//!     let mut n = lock.lock().await?;
//!     *n += 1;
//!     let holder = lock.holder().expect("held");
//!     assert!(holder.location.file().ends_with(".rs"));
//!     // The same task asking again is an error, not a hang.
//!     assert!(matches!(lock.lock().await, Err(SyncError::WouldDeadlock { .. })));
//! }
//! assert_eq!(*lock.lock_timeout(Duration::from_millis(10)).await?, 1);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::SyncError;

tokio::task_local! {
    static NODE_PATH: Arc<str>;
}

/// Runs `fut` with `path` as the node path recorded in the holder of every [`AsyncLock`]
/// acquired inside it. The supervision tree wraps each node's work in this; plain code may too.
///
/// # Cancel safety
/// As cancel safe as `fut`: dropping this drops `fut`.
///
/// # Errors
/// None of its own: it returns `fut`'s output.
pub async fn scope_node_path<F: Future>(path: impl Into<Arc<str>>, fut: F) -> F::Output {
    NODE_PATH.scope(path.into(), fut).await
}

/// The node path set by [`scope_node_path`] for the current task, if any.
pub fn current_node_path() -> Option<Arc<str>> {
    NODE_PATH.try_with(Arc::clone).ok()
}

/// Who acquired a lock: a tokio task, or, outside any task (a `block_on` future, a plain
/// thread), the thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockOwner {
    /// A tokio task.
    Task(tokio::task::Id),
    /// Code outside any tokio task, identified by a per-thread number unique in the process.
    Thread(u64),
}

impl LockOwner {
    /// The calling task, or the calling thread outside a task.
    #[inline]
    pub fn current() -> Self {
        match tokio::task::try_id() {
            Some(id) => Self::Task(id),
            None => Self::Thread(THREAD_KEY.with(|k| *k)),
        }
    }

    /// The task id, if the owner is a task.
    pub fn task(&self) -> Option<tokio::task::Id> {
        match self {
            Self::Task(id) => Some(*id),
            Self::Thread(_) => None,
        }
    }
}

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Task(id) => write!(f, "task {id}"),
            Self::Thread(n) => write!(f, "thread #{n} (outside any task)"),
        }
    }
}

thread_local! {
    static THREAD_KEY: u64 = {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// Who holds a lock, as recorded when it was acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderInfo {
    /// The task (or thread, outside tasks) that acquired it.
    pub owner: LockOwner,
    /// The supervision-tree node of that task, if known (see [`scope_node_path`]).
    pub node: Option<Arc<str>>,
    /// The source location of the acquiring call.
    pub location: &'static Location<'static>,
    /// When it was acquired.
    pub since: Instant,
    /// How long it had been held when this record was read.
    pub held_for: Duration,
}

impl fmt::Display for HolderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.owner)?;
        if let Some(node) = &self.node {
            write!(f, " of node `{node}`")?;
        }
        write!(f, " at {} for {:?}", self.location, self.held_for)
    }
}

/// One step of a deadlock cycle: a lock and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockEdge {
    /// The lock's name.
    pub lock: Arc<str>,
    /// Its holder, who waits for the next lock in the cycle.
    pub holder: HolderInfo,
}

/// Counters of an [`AsyncLock`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LockStats {
    /// Successful acquisitions.
    pub acquired: u64,
    /// Acquisitions that had to wait.
    pub contended: u64,
    /// Tasks waiting now.
    pub waiting: usize,
    /// `lock_timeout` calls that gave up.
    pub timeouts: u64,
    /// Re-acquisitions refused with `WouldDeadlock`.
    pub would_deadlock: u64,
    /// Waiters failed with `Deadlock`.
    pub deadlocks: u64,
    /// Releases after the held-too-long threshold.
    pub held_too_long: u64,
}

#[derive(Clone, Copy)]
struct Record {
    owner: LockOwner,
    location: &'static Location<'static>,
    since: Instant,
}

struct RecordSlot {
    record: Option<Record>,
    node: Option<Arc<str>>,
}

pub(crate) struct LockShared {
    name: Arc<str>,
    warn_held_after: Option<Duration>,
    deadlock_check_after: Option<Duration>,
    slot: Mutex<RecordSlot>,
    /// Whether the record in `slot` is current. Set under the slot's mutex (after the record
    /// is written), cleared without it on release: a reader holding the mutex that sees it set
    /// is looking at the current holder's record.
    held: AtomicBool,
    acquired: AtomicU64,
    contended: AtomicU64,
    waiting: AtomicUsize,
    timeouts: AtomicU64,
    would_deadlock: AtomicU64,
    deadlocks: AtomicU64,
    held_too_long: AtomicU64,
}

impl LockShared {
    fn slot(&self) -> MutexGuard<'_, RecordSlot> {
        // The slot holds plain data: a panic while it was locked cannot leave it inconsistent.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn holder(&self) -> Option<HolderInfo> {
        let slot = self.slot();
        let r = slot.record.filter(|_| self.held.load(Ordering::Acquire))?;
        Some(HolderInfo {
            owner: r.owner,
            node: slot.node.clone(),
            location: r.location,
            since: r.since,
            held_for: r.since.elapsed(),
        })
    }
}

/// Which task waits for which lock: the edges of the wait-for graph.
static WAITS_FOR: LazyLock<Mutex<HashMap<LockOwner, Arc<LockShared>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn waits_for() -> MutexGuard<'static, HashMap<LockOwner, Arc<LockShared>>> {
    WAITS_FOR.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Follows holder → the lock it waits for → its holder … from `first`. If the chain comes back
/// to `me`, removes `me`'s edge (breaking the cycle, so the other members do not also fail)
/// and returns the cycle.
fn find_cycle(me: LockOwner, first: &Arc<LockShared>) -> Option<Vec<DeadlockEdge>> {
    let mut graph = waits_for();
    let mut cycle = Vec::new();
    let mut lock = Arc::clone(first);
    for _ in 0..=graph.len() {
        let holder = lock.holder()?;
        let task = holder.owner;
        cycle.push(DeadlockEdge {
            lock: Arc::clone(&lock.name),
            holder,
        });
        if task == me {
            graph.remove(&me);
            return Some(cycle);
        }
        lock = Arc::clone(graph.get(&task)?);
    }
    None
}

/// Builds an [`AsyncLock`].
#[derive(Debug)]
pub struct AsyncLockBuilder<T> {
    value: T,
    name: Arc<str>,
    warn_held_after: Option<Duration>,
    deadlock_check_after: Option<Duration>,
}

impl<T> AsyncLockBuilder<T> {
    /// The name used in errors, warnings and stats (default `"AsyncLock"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Warn (tracing) when the lock is released after being held longer than this
    /// (default 1 s; `None` turns it off).
    pub fn warn_held_after(mut self, threshold: Option<Duration>) -> Self {
        self.warn_held_after = threshold;
        self
    }

    /// A waiter that has waited this long looks for a deadlock cycle, and again after every
    /// further such period (default 1 s; `None` turns detection off).
    pub fn deadlock_check_after(mut self, threshold: Option<Duration>) -> Self {
        self.deadlock_check_after = threshold.filter(|d| !d.is_zero());
        self
    }

    /// Builds the lock.
    pub fn build(self) -> AsyncLock<T> {
        AsyncLock {
            shared: Arc::new(LockShared {
                name: self.name,
                warn_held_after: self.warn_held_after,
                deadlock_check_after: self.deadlock_check_after,
                slot: Mutex::new(RecordSlot {
                    record: None,
                    node: None,
                }),
                held: AtomicBool::new(false),
                acquired: AtomicU64::new(0),
                contended: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                timeouts: AtomicU64::new(0),
                would_deadlock: AtomicU64::new(0),
                deadlocks: AtomicU64::new(0),
                held_too_long: AtomicU64::new(0),
            }),
            mutex: tokio::sync::Mutex::new(self.value),
        }
    }
}

/// An async mutex that records its holder, times out with the holder's name, refuses
/// re-entry from the holding task and detects deadlock cycles. See the [module docs](self).
pub struct AsyncLock<T: ?Sized> {
    shared: Arc<LockShared>,
    mutex: tokio::sync::Mutex<T>,
}

impl<T: ?Sized> fmt::Debug for AsyncLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLock")
            .field("name", &self.shared.name)
            .field("holder", &self.holder())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Default for AsyncLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> AsyncLock<T> {
    /// A lock named `"AsyncLock"` with the default thresholds.
    pub fn new(value: T) -> Self {
        Self::builder(value).build()
    }

    /// A builder to set the name and thresholds.
    pub fn builder(value: T) -> AsyncLockBuilder<T> {
        AsyncLockBuilder {
            value,
            name: Arc::from("AsyncLock"),
            warn_held_after: Some(Duration::from_secs(1)),
            deadlock_check_after: Some(Duration::from_secs(1)),
        }
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.mutex.into_inner()
    }
}

impl<T: ?Sized> AsyncLock<T> {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Who holds the lock now, if anyone.
    pub fn holder(&self) -> Option<HolderInfo> {
        self.shared.holder()
    }

    /// A snapshot of the lock's counters.
    pub fn stats(&self) -> LockStats {
        self.shared.stats()
    }

    /// A mutable reference to the value, without locking: `&mut self` proves exclusivity.
    pub fn get_mut(&mut self) -> &mut T {
        self.mutex.get_mut()
    }

    /// Acquires the lock, waiting as long as it takes (FIFO), unless a deadlock is found.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before it completes leaves the lock as it was and
    /// gives up the caller's place in the queue; nothing is acquired.
    ///
    /// # Errors
    /// [`SyncError::WouldDeadlock`] at once if the calling task already holds the lock;
    /// [`SyncError::Deadlock`] if, after waiting past the deadlock-check threshold, the caller
    /// is part of a wait-for cycle.
    #[track_caller]
    pub fn lock(&self) -> impl Future<Output = Result<AsyncLockGuard<'_, T>, SyncError>> + '_ {
        let location = Location::caller();
        async move {
            match self.mutex.try_lock() {
                Ok(guard) => Ok(self.guard(guard, location)),
                Err(_) => self.lock_slow(location, None).await,
            }
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Cancel safety
    /// Cancel safe, like [`lock`](Self::lock).
    ///
    /// # Errors
    /// [`SyncError::LockTimeout`] naming the lock, how long the caller waited and the holder;
    /// otherwise as [`lock`](Self::lock).
    #[track_caller]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<AsyncLockGuard<'_, T>, SyncError>> + '_ {
        let location = Location::caller();
        async move {
            match self.mutex.try_lock() {
                Ok(guard) => Ok(self.guard(guard, location)),
                Err(_) => self.lock_slow(location, Some(timeout)).await,
            }
        }
    }

    /// Acquires the lock if it is free now.
    ///
    /// # Errors
    /// [`SyncError::LockHeld`] naming the holder, or [`SyncError::WouldDeadlock`] if the
    /// holder is the calling task.
    #[track_caller]
    pub fn try_lock(&self) -> Result<AsyncLockGuard<'_, T>, SyncError> {
        let location = Location::caller();
        match self.mutex.try_lock() {
            Ok(guard) => Ok(self.guard(guard, location)),
            Err(_) => {
                let holder = self.holder();
                if let Some(h) = holder.as_ref().filter(|h| held_by_me(h)) {
                    self.shared.would_deadlock.fetch_add(1, Ordering::Relaxed);
                    return Err(SyncError::WouldDeadlock {
                        lock: Arc::clone(&self.shared.name),
                        holder: h.clone(),
                    });
                }
                Err(SyncError::LockHeld {
                    lock: Arc::clone(&self.shared.name),
                    holder,
                })
            }
        }
    }

    fn guard<'a>(
        &'a self,
        guard: tokio::sync::MutexGuard<'a, T>,
        location: &'static Location<'static>,
    ) -> AsyncLockGuard<'a, T> {
        let since = Instant::now();
        let record = Record {
            owner: LockOwner::current(),
            location,
            since,
        };
        let node = current_node_path();
        {
            let mut slot = self.shared.slot();
            self.shared.held.store(true, Ordering::Release);
            slot.record = Some(record);
            slot.node = node;
        }
        self.shared.acquired.fetch_add(1, Ordering::Relaxed);
        AsyncLockGuard {
            shared: &self.shared,
            since,
            location,
            guard,
        }
    }

    async fn lock_slow(
        &self,
        location: &'static Location<'static>,
        timeout: Option<Duration>,
    ) -> Result<AsyncLockGuard<'_, T>, SyncError> {
        let shared = &self.shared;
        let me = LockOwner::current();
        if let Some(h) = self.holder().filter(held_by_me) {
            shared.would_deadlock.fetch_add(1, Ordering::Relaxed);
            return Err(SyncError::WouldDeadlock {
                lock: Arc::clone(&shared.name),
                holder: h,
            });
        }
        let _waiting = WaitRegistration::new(shared, me);
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let acquire = self.mutex.lock();
        tokio::pin!(acquire);
        loop {
            let check_at = shared.deadlock_check_after.map(|d| Instant::now() + d);
            let wake_at = match (deadline, check_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let guard = match wake_at {
                None => Some(acquire.as_mut().await),
                Some(at) => tokio::select! {
                    biased;
                    guard = acquire.as_mut() => Some(guard),
                    () = tokio::time::sleep_until(at) => None,
                },
            };
            if let Some(guard) = guard {
                shared.contended.fetch_add(1, Ordering::Relaxed);
                return Ok(self.guard(guard, location));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(SyncError::LockTimeout {
                    lock: Arc::clone(&shared.name),
                    waited: now - start,
                    holder: self.holder(),
                });
            }
            if let Some(cycle) = find_cycle(me, shared) {
                shared.deadlocks.fetch_add(1, Ordering::Relaxed);
                tracing::error!(lock = %shared.name, cycle = ?cycle, "AsyncLock deadlock detected; failing the waiter");
                return Err(SyncError::Deadlock { cycle });
            }
        }
    }
}

fn held_by_me(h: &HolderInfo) -> bool {
    h.owner == LockOwner::current()
}

/// Registers a waiter (counter and wait-for edge) and unregisters it when dropped, whether the
/// wait completed, failed or was cancelled.
struct WaitRegistration<'a> {
    shared: &'a Arc<LockShared>,
    me: LockOwner,
}

impl<'a> WaitRegistration<'a> {
    fn new(shared: &'a Arc<LockShared>, me: LockOwner) -> Self {
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        if shared.deadlock_check_after.is_some() {
            waits_for().insert(me, Arc::clone(shared));
        }
        Self { shared, me }
    }
}

impl Drop for WaitRegistration<'_> {
    fn drop(&mut self) {
        self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        if self.shared.deadlock_check_after.is_some() {
            let mut graph = waits_for();
            if graph.get(&self.me).is_some_and(|l| Arc::ptr_eq(l, self.shared)) {
                graph.remove(&self.me);
            }
        }
    }
}

/// Exclusive access to the value of an [`AsyncLock`]; releases the lock when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncLockGuard<'a, T: ?Sized> {
    shared: &'a LockShared,
    since: Instant,
    location: &'static Location<'static>,
    guard: tokio::sync::MutexGuard<'a, T>,
}

impl<T: ?Sized> AsyncLockGuard<'_, T> {
    /// When the lock was acquired.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Where the lock was acquired.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl<T: ?Sized> Deref for AsyncLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for AsyncLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.guard, f)
    }
}

impl<T: ?Sized> Drop for AsyncLockGuard<'_, T> {
    fn drop(&mut self) {
        self.shared.held.store(false, Ordering::Release);
        if let Some(threshold) = self.shared.warn_held_after {
            let held = self.since.elapsed();
            if held > threshold {
                self.shared.held_too_long.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    lock = %self.shared.name,
                    held = ?held,
                    threshold = ?threshold,
                    location = %self.location,
                    "AsyncLock held longer than its threshold"
                );
            }
        }
        // `guard` is dropped after this body: the record says "free" before the lock is.
    }
}

/// Publishes a lock's counters and current holder in the tree.
struct LockStatsSource(Arc<LockShared>);

impl uno_actors::tree::StatsSource for LockStatsSource {
    fn collect(&self, out: &mut std::collections::BTreeMap<String, uno_actors::tree::StatValue>) {
        let s = &self.0;
        crate::sync::stats::collect_prefixed(&s.name, &s.stats(), out);
        let holder = s.holder().map(|h| h.to_string());
        out.insert(format!("{}.holder", s.name), holder.into());
    }
}

impl<T: ?Sized + Send + Sync + 'static> uno_actors::tree::StatsSource for AsyncLock<T> {
    fn collect(&self, out: &mut std::collections::BTreeMap<String, uno_actors::tree::StatValue>) {
        LockStatsSource(self.shared.clone()).collect(out);
    }
}

impl<T: ?Sized> AsyncLock<T> {
    /// Attaches this lock's counters and its current holder to a node's stats, as
    /// `<name>.<counter>` keys read only when a snapshot is taken. The node holds the
    /// source weakly: keep the returned handle as long as the stats should show (it
    /// keeps the lock's bookkeeping alive, not the protected value).
    pub fn attach_stats(&self, stats: &uno_actors::tree::NodeStats) -> Arc<dyn uno_actors::tree::StatsSource> {
        stats.attach_shared(Arc::new(LockStatsSource(self.shared.clone())))
    }
}

impl LockShared {
    fn stats(&self) -> LockStats {
        let s = self;
        LockStats {
            acquired: s.acquired.load(Ordering::Relaxed),
            contended: s.contended.load(Ordering::Relaxed),
            waiting: s.waiting.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            would_deadlock: s.would_deadlock.load(Ordering::Relaxed),
            deadlocks: s.deadlocks.load(Ordering::Relaxed),
            held_too_long: s.held_too_long.load(Ordering::Relaxed),
        }
    }
}
