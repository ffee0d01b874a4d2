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

/// Publishes a primitive's counters in the tree as `<name>.<counter>` keys, so several
/// primitives attached to one node do not collide.
pub(crate) fn collect_prefixed<S: serde::Serialize>(
    name: &str,
    stats: &S,
    out: &mut std::collections::BTreeMap<String, uno_actors::tree::StatValue>,
) {
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(stats) {
        for (key, value) in fields {
            out.insert(format!("{name}.{key}"), value);
        }
    }
}

/// Implements `StatsSource` and `attach_stats` for a cloneable primitive with `name()`
/// and a serialisable `stats()`.
macro_rules! node_stats {
    ($ty:ty) => {
        impl uno_actors::tree::StatsSource for $ty {
            fn collect(&self, out: &mut std::collections::BTreeMap<String, uno_actors::tree::StatValue>) {
                crate::sync::stats::collect_prefixed(self.name(), &self.stats(), out);
            }
        }

        impl $ty {
            /// Attaches this primitive's counters to a node's stats (for example
            /// `ctx.stats()` of the node using it), as `<name>.<counter>` keys read only
            /// when a snapshot is taken. The node holds the source weakly: keep the
            /// returned handle as long as the stats should show (the handle keeps the
            /// primitive alive).
            pub fn attach_stats(
                &self,
                stats: &uno_actors::tree::NodeStats,
            ) -> std::sync::Arc<dyn uno_actors::tree::StatsSource> {
                stats.attach_shared(std::sync::Arc::new(self.clone()))
            }
        }
    };
}
pub(crate) use node_stats;
