//! Errors of the batch module.

use std::sync::Arc;
use std::time::Duration;

/// An invalid [`BatcherConfig`](super::BatcherConfig), reported at build time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatcherConfigError {
    /// `max_batch_size` is zero: no batch could ever hold an item.
    #[error("batcher `{batcher}`: max_batch_size must be at least 1")]
    ZeroBatchSize {
        /// The batcher's name.
        batcher: String,
    },
    /// `max_concurrent` is zero: no batch could ever run.
    #[error("batcher `{batcher}`: max_concurrent must be at least 1")]
    ZeroConcurrency {
        /// The batcher's name.
        batcher: String,
    },
    /// `queue_capacity` is zero: no item could ever be queued.
    #[error("batcher `{batcher}`: queue_capacity must be at least 1")]
    ZeroQueueCapacity {
        /// The batcher's name.
        batcher: String,
    },
}

/// Why [`AsyncBatcher::submit`](super::AsyncBatcher::submit) returned no result.
///
/// `E` is the batch function's error type; it need not be `Clone`: every caller of a
/// failed batch receives the same error behind an [`Arc`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError<E> {
    /// The batch function returned an error; every caller of that batch gets it.
    #[error("batcher `{batcher}`: the batch of {batch_size} items failed: {source}")]
    Batch {
        /// The batcher's name.
        batcher: String,
        /// How many items the failed batch held.
        batch_size: usize,
        /// The batch function's error.
        source: Arc<E>,
    },
    /// The batch function returned a different number of results than items.
    #[error("batcher `{batcher}`: the batch function returned {got} results for {expected} items")]
    WrongLength {
        /// The batcher's name.
        batcher: String,
        /// The number of items in the batch (distinct items in dedup mode).
        expected: usize,
        /// The number of results returned.
        got: usize,
    },
    /// The batch function panicked while handling this caller's batch.
    #[error("batcher `{batcher}`: the batch function panicked: {message}")]
    Panicked {
        /// The batcher's name.
        batcher: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The queue stayed full for the whole overload timeout.
    #[error("batcher `{batcher}` is overloaded: its queue of {capacity} items stayed full for {waited:?}")]
    Overloaded {
        /// The batcher's name.
        batcher: String,
        /// The queue's capacity.
        capacity: usize,
        /// How long the caller waited for room.
        waited: Duration,
    },
    /// The batcher is shutting down or shut down: it takes no new items.
    #[error("batcher `{batcher}` is shut down: it takes no new items")]
    Closed {
        /// The batcher's name.
        batcher: String,
    },
    /// The batch holding this item was dropped without a result (its task was
    /// aborted, e.g. because the runtime shut down).
    #[error("batcher `{batcher}`: the batch holding this item ended without a result")]
    Lost {
        /// The batcher's name.
        batcher: String,
    },
}
