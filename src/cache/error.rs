//! Errors of the cache module.

use std::sync::Arc;
use std::time::Duration;

/// An invalid [`CacheConfig`](super::CacheConfig), reported by
/// [`AsyncCacheBuilder::build`](super::AsyncCacheBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheConfigError {
    /// The time to live is zero: every entry would be expired on insert.
    #[error("cache `{cache}`: ttl must be greater than zero")]
    ZeroTtl {
        /// The cache's name.
        cache: String,
    },
    /// The capacity bound is zero: nothing could ever be cached.
    #[error("cache `{cache}`: max_capacity must be at least 1 (use no bound for an unbounded cache)")]
    ZeroCapacity {
        /// The cache's name.
        cache: String,
    },
    /// `refresh_before` is not strictly between zero and the ttl.
    #[error("cache `{cache}`: refresh_before ({refresh_before:?}) must be greater than zero and less than the ttl ({ttl:?})")]
    RefreshBeforeOutOfRange {
        /// The cache's name.
        cache: String,
        /// The configured refresh window.
        refresh_before: Duration,
        /// The configured time to live.
        ttl: Duration,
    },
}

/// Why [`AsyncCache::get_with`](super::AsyncCache::get_with) returned no value.
///
/// `E` is the loader's error type. Errors need not be `Clone`: every waiter of a
/// failed load receives the same error behind an [`Arc`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The loader returned an error (shared with every waiter of that load).
    #[error("cache `{cache}`: loading the value failed: {source}")]
    Load {
        /// The cache's name.
        cache: String,
        /// The loader's error.
        source: Arc<E>,
    },
    /// The loader panicked; the panic was caught and no value was cached.
    #[error("cache `{cache}`: the loader panicked: {message}")]
    LoaderPanicked {
        /// The cache's name.
        cache: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The load was cancelled (by `invalidate`, `clear` or `close`) before it finished,
    /// and this caller's loader had already been used.
    #[error("cache `{cache}`: the load was cancelled by an invalidation")]
    Cancelled {
        /// The cache's name.
        cache: String,
    },
    /// The load failed with an error of another type than this caller's loader
    /// returns (two callers loaded one key with different loader error types).
    #[error("cache `{cache}`: a concurrent load of this key failed with an error of another type: {message}")]
    ForeignLoadError {
        /// The cache's name.
        cache: String,
        /// A description of the failure.
        message: String,
    },
    /// The cache was closed: no new loads start.
    #[error("cache `{cache}` is closed: no new loads start")]
    Closed {
        /// The cache's name.
        cache: String,
    },
}
