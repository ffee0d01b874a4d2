//! [`BatcherStats`]: a plain snapshot of a batcher's counters.

/// Counters of one [`AsyncBatcher`](super::AsyncBatcher), read without locking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Items accepted into the queue.
    pub submitted: u64,
    /// Items whose caller received a result.
    pub succeeded: u64,
    /// Items whose caller received an error from their batch.
    pub failed: u64,
    /// Items removed from the queue because their caller went away first.
    pub cancelled: u64,
    /// Submits refused with `Overloaded`.
    pub overloaded: u64,
    /// Batches started.
    pub batches: u64,
    /// Batches that failed (error, wrong length or panic).
    pub batch_failures: u64,
    /// Batches whose function panicked.
    pub panics: u64,
    /// Items deduplicated away (dedup mode).
    pub deduplicated: u64,
    /// Items queued now.
    pub queued: usize,
    /// Batches running now.
    pub running: usize,
}

impl BatcherStats {
    /// Mean items per batch so far (0 before the first batch).
    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            (self.succeeded + self.failed) as f64 / self.batches as f64
        }
    }
}
