//! [`BatcherConfig`]: the settings of one batcher.

use std::time::Duration;

/// The settings of one [`AsyncBatcher`](super::AsyncBatcher); build it through
/// [`AsyncBatcher::builder`](super::AsyncBatcher::builder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatcherConfig {
    /// The batcher's name, used in errors, logs and the tree.
    pub name: String,
    /// Flush as soon as this many items are queued.
    pub max_batch_size: usize,
    /// Flush this long after the oldest queued item arrived.
    pub max_wait: Duration,
    /// The most batches running at once.
    pub max_concurrent: usize,
    /// The most items queued; `submit` waits for room beyond it.
    pub queue_capacity: usize,
    /// How long `submit` waits for room before failing with `Overloaded`; `None` waits
    /// as long as it takes.
    pub overload_timeout: Option<Duration>,
}
