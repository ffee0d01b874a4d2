//! A counter that many threads can bump without fighting over one cache line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 8;

#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard(AtomicU64);

/// A sum of per-thread-ish shards: `add` touches the calling thread's shard only, `get`
/// sums them. For hot-path counters (e.g. tokens admitted by a rate limiter).
#[derive(Debug, Default)]
pub(crate) struct ShardedCounter {
    shards: [Shard; SHARDS],
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl ShardedCounter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = SHARD.with(|s| *s);
        self.shards[i].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}
