//! [`AsyncCache`]: the concurrent map, single-flight loads, refresh-ahead and eviction.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio_util::task::TaskTracker;

use super::clock::{duration_nanos, Clock};
use super::counter::StripedCounter;
use super::{AsyncCacheBuilder, CacheConfig, CacheError, CacheStats};

type ErasedError = Arc<dyn Any + Send + Sync>;

/// Why a flight produced no value.
#[derive(Clone)]
enum FlightFailure {
    /// The loader's error, type-erased (an `Arc<E>` inside).
    Load(ErasedError, String),
    Panicked(String),
    Aborted,
}

type FlightOutput<V> = Result<V, FlightFailure>;
type SharedFlight<V> = Shared<BoxFuture<'static, FlightOutput<V>>>;

/// One in-flight load (foreground miss or background refresh) of one key.
struct Flight<V> {
    id: u64,
    result: SharedFlight<V>,
    abort: tokio::task::AbortHandle,
}

/// One cached value with its timing and eviction metadata.
struct Entry<V> {
    value: V,
    /// Identity of this key's slot in the eviction rings (kept across overwrites).
    slot: u64,
    /// Times in nanoseconds of the cache's clock. `refresh_at` is `u64::MAX` when
    /// refresh-ahead is off.
    expires_at: u64,
    refresh_at: u64,
    stale_until: u64,
    /// CLOCK reference bit: set on hit (only when clear), cleared by the hand.
    referenced: AtomicBool,
    /// The last reload of this value failed.
    refresh_failed: AtomicBool,
}

/// CLOCK ring of one eviction shard: keys in insertion order; the hand is the front.
struct Ring<K> {
    items: VecDeque<(K, u64)>,
}

struct Inner<K: Hash + Eq, V> {
    config: CacheConfig,
    clock: Clock,
    map: DashMap<K, Entry<V>>,
    flights: DashMap<K, Arc<Flight<V>>>,
    rings: Box<[Mutex<Ring<K>>]>,
    ring_cursor: AtomicUsize,
    size: AtomicUsize,
    next_id: AtomicU64,
    closed: AtomicBool,
    tracker: TaskTracker,
    external_tracker: Option<TaskTracker>,
    hits: StripedCounter,
    misses: StripedCounter,
    loads: AtomicU64,
    load_failures: AtomicU64,
    refreshes: AtomicU64,
    stale_served: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

impl<K: Hash + Eq, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        // No orphans: loads still running for a cache nobody holds are aborted.
        for f in self.flights.iter() {
            f.abort.abort();
        }
    }
}

/// A concurrent cache with TTL, a capacity bound (CLOCK eviction), per-key single-flight
/// loads, refresh-ahead and stale-on-error. See the [module docs](super).
///
/// Cloning is cheap and shares the cache.
pub struct AsyncCache<K: Hash + Eq, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K: Hash + Eq, V> Clone for AsyncCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for AsyncCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCache")
            .field("name", &self.inner.config.name)
            .field("size", &self.inner.size.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a read found.
enum Lookup<V> {
    /// Fresh value; `refresh` when it is within the refresh window.
    Fresh { value: V, refresh: bool },
    /// Expired but within max staleness after a failed reload: serve it and retry.
    StaleFailed(V),
    /// Expired but within max staleness, no failure known yet: reload in the foreground.
    StaleReload,
    /// Absent or dead.
    Missing,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<K, V> AsyncCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts building a cache named `name`.
    pub fn builder(name: impl Into<String>) -> AsyncCacheBuilder<K, V> {
        AsyncCacheBuilder::new(name)
    }

    pub(crate) fn from_config(config: CacheConfig, external_tracker: Option<TaskTracker>) -> Self {
        let rings = match config.max_capacity {
            Some(_) => {
                let n = std::thread::available_parallelism()
                    .map_or(4, |n| n.get())
                    .saturating_mul(4)
                    .next_power_of_two()
                    .clamp(4, 64);
                (0..n).map(|_| Mutex::new(Ring { items: VecDeque::new() })).collect()
            }
            None => Box::default(),
        };
        Self {
            inner: Arc::new(Inner {
                clock: Clock::new(config.coarse_clock),
                config,
                map: DashMap::new(),
                flights: DashMap::new(),
                rings,
                ring_cursor: AtomicUsize::new(0),
                size: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                tracker: TaskTracker::new(),
                external_tracker,
                hits: StripedCounter::default(),
                misses: StripedCounter::default(),
                loads: AtomicU64::new(0),
                load_failures: AtomicU64::new(0),
                refreshes: AtomicU64::new(0),
                stale_served: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                expirations: AtomicU64::new(0),
            }),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The cache's configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The number of entries held (expired ones included until they are read, evicted
    /// or purged).
    pub fn len(&self) -> usize {
        self.inner.size.load(Ordering::Relaxed)
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a fresh value: one concurrent-map read and an expiry check, no lock shared
    /// by all readers, no mailbox, no load. Counts a hit or a miss.
    ///
    /// A value past its expiry is served only within `max_stale` after a failed reload.
    /// `get` never starts a load or a refresh (use [`get_with`](Self::get_with)).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.inner.clock.now();
        if let Some(e) = self.inner.map.get(key) {
            if now < e.expires_at {
                if !e.referenced.load(Ordering::Relaxed) {
                    e.referenced.store(true, Ordering::Relaxed);
                }
                let v = e.value.clone();
                drop(e);
                self.inner.hits.inc();
                return Some(v);
            }
            if now < e.stale_until && e.refresh_failed.load(Ordering::Relaxed) {
                let v = e.value.clone();
                drop(e);
                self.inner.hits.inc();
                self.inner.stale_served.fetch_add(1, Ordering::Relaxed);
                return Some(v);
            }
        }
        self.inner.misses.inc();
        None
    }

    fn lookup(&self, key: &K, now: u64) -> Lookup<V> {
        let Some(e) = self.inner.map.get(key) else {
            return Lookup::Missing;
        };
        if now < e.expires_at {
            if !e.referenced.load(Ordering::Relaxed) {
                e.referenced.store(true, Ordering::Relaxed);
            }
            let refresh = now >= e.refresh_at && !e.refresh_failed.load(Ordering::Relaxed);
            return Lookup::Fresh {
                value: e.value.clone(),
                refresh,
            };
        }
        if now < e.stale_until {
            return if e.refresh_failed.load(Ordering::Relaxed) {
                Lookup::StaleFailed(e.value.clone())
            } else {
                Lookup::StaleReload
            };
        }
        let slot = e.slot;
        drop(e);
        self.remove_dead(key, slot, now);
        Lookup::Missing
    }

    /// The stale value of `key`, if it is within its max staleness.
    fn stale_value(&self, key: &K, now: u64) -> Option<V> {
        let e = self.inner.map.get(key)?;
        (now < e.stale_until).then(|| e.value.clone())
    }

    fn remove_dead(&self, key: &K, slot: u64, now: u64) {
        if self
            .inner
            .map
            .remove_if(key, |_, e| e.slot == slot && now >= e.stale_until)
            .is_some()
        {
            self.inner.size.fetch_sub(1, Ordering::Relaxed);
            self.inner.expirations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns the value of `key`, loading it with `loader` on a miss.
    ///
    /// - Concurrent misses of one key run one load (single flight); every waiter gets
    ///   its value or its error. Misses of different keys load in parallel.
    /// - A hit within `refresh_before` of expiry returns the current value and starts
    ///   one background refresh of that key with `loader`.
    /// - With `max_stale`, a value whose reload failed is served up to `max_stale` past
    ///   its expiry (a further reload is attempted in the background, one at a time).
    ///
    /// The load runs in a task tracked by the cache, not in the caller: it completes
    /// (and fills the cache) even if every caller waiting for it goes away.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future stops waiting; the load itself carries on and
    /// fills the cache for the next reader.
    ///
    /// # Errors
    ///
    /// - [`CacheError::Load`] with the loader's error (shared by every waiter);
    /// - [`CacheError::LoaderPanicked`] when the loader panicked;
    /// - [`CacheError::Cancelled`] when an invalidation aborted the load this caller
    ///   joined and its own loader was already used;
    /// - [`CacheError::ForeignLoadError`] when a concurrent load of the key with another
    ///   error type failed;
    /// - [`CacheError::Closed`] on a miss after [`close`](Self::close).
    pub async fn get_with<F, Fut, E>(&self, key: K, loader: F) -> Result<V, CacheError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let mut loader = Some(loader);
        let mut counted_miss = false;
        loop {
            let now = self.inner.clock.now();
            match self.lookup(&key, now) {
                Lookup::Fresh { value, refresh } => {
                    self.inner.hits.inc();
                    if refresh {
                        self.start_refresh(&key, &mut loader);
                    }
                    return Ok(value);
                }
                Lookup::StaleFailed(value) => {
                    self.inner.hits.inc();
                    self.inner.stale_served.fetch_add(1, Ordering::Relaxed);
                    self.start_refresh(&key, &mut loader);
                    return Ok(value);
                }
                Lookup::StaleReload | Lookup::Missing => {}
            }
            if !counted_miss {
                counted_miss = true;
                self.inner.misses.inc();
            }
            let Some(flight) = self.flight(&key, &mut loader, false) else {
                return Err(if self.inner.closed.load(Ordering::Acquire) {
                    CacheError::Closed {
                        cache: self.inner.config.name.clone(),
                    }
                } else {
                    CacheError::Cancelled {
                        cache: self.inner.config.name.clone(),
                    }
                });
            };
            let failure = match flight.await {
                Ok(v) => return Ok(v),
                Err(failure) => failure,
            };
            if let FlightFailure::Aborted = failure {
                // An invalidation cancelled the load we waited on: look again.
                continue;
            }
            if let Some(v) = self.stale_value(&key, self.inner.clock.now()) {
                self.inner.hits.inc();
                self.inner.stale_served.fetch_add(1, Ordering::Relaxed);
                return Ok(v);
            }
            let cache = self.inner.config.name.clone();
            return Err(match failure {
                FlightFailure::Load(erased, message) => match erased.downcast::<E>() {
                    Ok(source) => CacheError::Load { cache, source },
                    Err(_) if loader.is_some() => continue,
                    Err(_) => CacheError::ForeignLoadError { cache, message },
                },
                FlightFailure::Panicked(message) => CacheError::LoaderPanicked { cache, message },
                FlightFailure::Aborted => CacheError::Cancelled { cache },
            });
        }
    }

    fn start_refresh<F, Fut, E>(&self, key: &K, loader: &mut Option<F>)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if self.inner.flights.contains_key(key) {
            return;
        }
        let _ = self.flight(key, loader, true);
    }

    /// Joins the flight of `key`, or starts one with `loader` (taking it). `None` when
    /// no flight exists and the loader is gone, or the cache is closed.
    fn flight<F, Fut, E>(&self, key: &K, loader: &mut Option<F>, refresh: bool) -> Option<SharedFlight<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        match self.inner.flights.entry(key.clone()) {
            MapEntry::Occupied(o) => Some(o.get().result.clone()),
            MapEntry::Vacant(vacant) => {
                if self.inner.closed.load(Ordering::Acquire) {
                    return None;
                }
                let load = loader.take()?;
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                self.inner.loads.fetch_add(1, Ordering::Relaxed);
                if refresh {
                    self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                }
                let weak = Arc::downgrade(&self.inner);
                let task = run_flight(weak, key.clone(), id, load);
                let handle = match &self.inner.external_tracker {
                    Some(ext) => self.inner.tracker.spawn(ext.track_future(task)),
                    None => self.inner.tracker.spawn(task),
                };
                let abort = handle.abort_handle();
                let result = async move {
                    match handle.await {
                        Ok(out) => out,
                        Err(e) if e.is_cancelled() => Err(FlightFailure::Aborted),
                        Err(e) => Err(FlightFailure::Panicked(e.to_string())),
                    }
                }
                .boxed()
                .shared();
                vacant.insert(Arc::new(Flight {
                    id,
                    result: result.clone(),
                    abort,
                }));
                Some(result)
            }
        }
    }

    /// Inserts (or replaces) a value, fresh for the ttl. A load of `key` in flight is
    /// cancelled so it cannot overwrite this newer value.
    pub fn insert(&self, key: K, value: V) {
        self.cancel_flight(&key);
        store(&self.inner, key, value, self.inner.clock.now());
    }

    fn cancel_flight(&self, key: &K) {
        if let Some((_, f)) = self.inner.flights.remove(key) {
            f.abort.abort();
        }
    }

    /// Removes `key` and cancels its in-flight load or refresh (callers waiting for a
    /// cancelled load retry with their own loader). Returns whether a value was removed.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((_, f)) = self.inner.flights.remove(key) {
            f.abort.abort();
        }
        if self.inner.map.remove(key).is_some() {
            self.inner.size.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Removes every key matching `predicate` (e.g. a key prefix) and cancels their
    /// in-flight loads and refreshes. Returns how many values were removed.
    ///
    /// This visits every entry: O(n), locking one map shard at a time.
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K) -> bool) -> usize {
        self.inner.flights.retain(|k, f| {
            if predicate(k) {
                f.abort.abort();
                false
            } else {
                true
            }
        });
        let mut removed = 0usize;
        self.inner.map.retain(|k, _| {
            if predicate(k) {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.inner.size.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Removes every entry and cancels every in-flight load and refresh.
    pub fn clear(&self) {
        self.invalidate_if(|_| true);
    }

    /// Removes every entry past its expiry and max staleness. Returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.now();
        let mut removed = 0usize;
        self.inner.map.retain(|_, e| {
            if now >= e.stale_until {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.inner.size.fetch_sub(removed, Ordering::Relaxed);
        self.inner.expirations.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// A snapshot of the cache's counters (relaxed reads, no lock).
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            hits: i.hits.get(),
            misses: i.misses.get(),
            loads: i.loads.load(Ordering::Relaxed),
            load_failures: i.load_failures.load(Ordering::Relaxed),
            refreshes: i.refreshes.load(Ordering::Relaxed),
            stale_served: i.stale_served.load(Ordering::Relaxed),
            evictions: i.evictions.load(Ordering::Relaxed),
            expirations: i.expirations.load(Ordering::Relaxed),
            in_flight: i.flights.len(),
            size: i.size.load(Ordering::Relaxed),
            max_capacity: i.config.max_capacity,
        }
    }

    /// Closes the cache: no new loads start, in-flight loads and refreshes are aborted,
    /// and this waits until their tasks have ended. Reads keep working.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the cache is closed and the loads aborted before the first await;
    /// dropping the future only stops waiting for the tasks to end.
    ///
    /// # Errors
    ///
    /// None; closing an already closed cache just waits again.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.flights.retain(|_, f| {
            f.abort.abort();
            false
        });
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

/// The body of a load task: run the loader (panics caught), then publish the value
/// unless the flight was cancelled meanwhile.
async fn run_flight<K, V, F, Fut, E>(weak: Weak<Inner<K, V>>, key: K, id: u64, load: F) -> FlightOutput<V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    let out = match AssertUnwindSafe(async move { load().await }).catch_unwind().await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let message = format!("a loader error of type {}", std::any::type_name::<E>());
            Err(FlightFailure::Load(Arc::new(e) as ErasedError, message))
        }
        Err(p) => Err(FlightFailure::Panicked(panic_message(p.as_ref()))),
    };
    let Some(inner) = weak.upgrade() else {
        return out;
    };
    {
        // Holding the flight's shard (read) while publishing: an invalidation removes
        // the flight under the write lock, so it either happens before (and we do not
        // publish) or after (and removes what we published).
        let mine = inner.flights.get(&key);
        if mine.as_ref().is_some_and(|f| f.id == id) {
            match &out {
                Ok(v) => store(&inner, key.clone(), v.clone(), inner.clock.now()),
                Err(_) => {
                    inner.load_failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(e) = inner.map.get(&key) {
                        e.refresh_failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    inner.flights.remove_if(&key, |_, f| f.id == id);
    out
}

/// Stores a value, then enforces the capacity bound.
fn store<K, V>(inner: &Inner<K, V>, key: K, value: V, now: u64)
where
    K: Hash + Eq + Clone,
{
    let cfg = &inner.config;
    let expires_at = now.saturating_add(duration_nanos(cfg.ttl));
    let refresh_at = cfg
        .refresh_before
        .map_or(u64::MAX, |rb| expires_at.saturating_sub(duration_nanos(rb)));
    let stale_until = cfg
        .max_stale
        .map_or(expires_at, |s| expires_at.saturating_add(duration_nanos(s)));
    let new_slot = match inner.map.entry(key.clone()) {
        MapEntry::Occupied(mut o) => {
            let e = o.get_mut();
            e.value = value;
            e.expires_at = expires_at;
            e.refresh_at = refresh_at;
            e.stale_until = stale_until;
            e.refresh_failed.store(false, Ordering::Relaxed);
            None
        }
        MapEntry::Vacant(v) => {
            let slot = inner.next_id.fetch_add(1, Ordering::Relaxed);
            v.insert(Entry {
                value,
                slot,
                expires_at,
                refresh_at,
                stale_until,
                referenced: AtomicBool::new(false),
                refresh_failed: AtomicBool::new(false),
            });
            Some(slot)
        }
    };
    let Some(slot) = new_slot else { return };
    let size = inner.size.fetch_add(1, Ordering::Relaxed) + 1;
    let Some(cap) = cfg.max_capacity else { return };
    push_ring(inner, key, slot, cap);
    if size > cap {
        let mut size = size;
        while size > cap {
            if !evict_one(inner, now) {
                break;
            }
            size = inner.size.load(Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_ring<K, V>(inner: &Inner<K, V>, key: K, slot: u64, cap: usize)
where
    K: Hash + Eq,
{
    let n = inner.rings.len();
    if n == 0 {
        return;
    }
    let idx = (inner.map.hasher().hash_one(&key) as usize) & (n - 1);
    let mut ring = lock(&inner.rings[idx]);
    ring.items.push_back((key, slot));
    // Keys invalidated or overwritten leave stale items behind: compact when the ring
    // grows well past its share of the capacity.
    let limit = (cap / n + 1).saturating_mul(2).saturating_add(16);
    if ring.items.len() > limit {
        ring.items
            .retain(|(k, s)| inner.map.get(k).is_some_and(|e| e.slot == *s));
    }
}

/// Runs the CLOCK hand over the rings (starting at a rotating ring) until one entry is
/// evicted: the front key of a ring is evicted unless its reference bit is set, in
/// which case the bit is cleared and the key goes to the back (second chance). The
/// first pass gives every ring one lap; the second finds a victim if any remains.
/// Returns false when nothing could be evicted.
fn evict_one<K, V>(inner: &Inner<K, V>, now: u64) -> bool
where
    K: Hash + Eq,
{
    let n = inner.rings.len();
    let start = inner.ring_cursor.fetch_add(1, Ordering::Relaxed);
    for _pass in 0..2 {
        for r in 0..n {
            let mut ring = lock(&inner.rings[(start + r) & (n - 1)]);
            let mut budget = ring.items.len();
            while budget > 0 {
                budget -= 1;
                let Some((key, slot)) = ring.items.pop_front() else {
                    break;
                };
                let verdict = match inner.map.get(&key) {
                    None => Verdict::Stale,
                    Some(e) if e.slot != slot => Verdict::Stale,
                    Some(e) if now >= e.stale_until => Verdict::Evict(true),
                    Some(e) if e.referenced.swap(false, Ordering::Relaxed) => Verdict::Spare,
                    Some(_) => Verdict::Evict(false),
                };
                match verdict {
                    Verdict::Stale => {}
                    Verdict::Spare => ring.items.push_back((key, slot)),
                    Verdict::Evict(expired) => {
                        if inner.map.remove_if(&key, |_, e| e.slot == slot).is_some() {
                            inner.size.fetch_sub(1, Ordering::Relaxed);
                            if expired {
                                inner.expirations.fetch_add(1, Ordering::Relaxed);
                            } else {
                                inner.evictions.fetch_add(1, Ordering::Relaxed);
                            }
                            return true;
                        }
                    }
                }
            }
        }
    }
    false
}

enum Verdict {
    Stale,
    Spare,
    Evict(bool),
}
