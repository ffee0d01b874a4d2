//! [`CacheStats`]: a plain snapshot of a cache's counters.

/// Counters of one [`AsyncCache`](super::AsyncCache), read without locking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that returned a value (fresh, or stale after a failed reload).
    pub hits: u64,
    /// Reads that found no usable value.
    pub misses: u64,
    /// Loader runs started (foreground loads and background refreshes).
    pub loads: u64,
    /// Loader runs that returned an error or panicked.
    pub load_failures: u64,
    /// Background refreshes started (refresh-ahead, or retries of a failed reload).
    pub refreshes: u64,
    /// Hits that served a value past its expiry because reloading it failed.
    pub stale_served: u64,
    /// Entries evicted by the capacity bound.
    pub evictions: u64,
    /// Entries removed because they were past their expiry (and max staleness).
    pub expirations: u64,
    /// Loads and refreshes currently running.
    pub in_flight: usize,
    /// Entries held now.
    pub size: usize,
    /// The capacity bound, if any.
    pub max_capacity: Option<usize>,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when nothing was read yet.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}
