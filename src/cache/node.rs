//! The cache as a node of the supervision tree: [`CacheNode`], built by
//! [`AsyncCache::worker_spec`].

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uno_actors::tree::{NodeKind, NodeStats, StatValue, StatsSource};
use uno_actors::{ChildContext, WorkerSpec};

use super::AsyncCache;

/// Publishes a cache's counters in the tree (read only when a snapshot is taken).
pub(crate) struct CacheStatsSource<K: Hash + Eq, V>(pub(crate) AsyncCache<K, V>);

impl<K, V> StatsSource for CacheStatsSource<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        let s = self.0.stats();
        out.insert("hits".into(), s.hits.into());
        out.insert("misses".into(), s.misses.into());
        out.insert("hit_ratio".into(), ((s.hit_ratio() * 1000.0).round() / 1000.0).into());
        out.insert("loads".into(), s.loads.into());
        out.insert("load_failures".into(), s.load_failures.into());
        out.insert("refreshes".into(), s.refreshes.into());
        out.insert("stale_served".into(), s.stale_served.into());
        out.insert("evictions".into(), s.evictions.into());
        out.insert("expirations".into(), s.expirations.into());
        out.insert("in_flight".into(), s.in_flight.into());
        out.insert("size".into(), s.size.into());
        if let Some(cap) = s.max_capacity {
            out.insert("max_capacity".into(), cap.into());
        }
    }
}

/// The message of a [`CacheNode`]: its periodic maintenance tick.
#[derive(Debug, Clone, Copy)]
pub enum CacheNodeMsg {
    /// Remove entries past their expiry and max staleness.
    Purge,
}

/// The actor hosting an [`AsyncCache`] in the tree. It owns no data: the cache lives
/// outside it (reads never touch its mailbox) and survives its restarts. It publishes
/// the cache's stats on its node and purges expired entries periodically.
///
/// On a final stop (terminated, or its supervisor or the manager shutting down) it
/// closes the cache ([`AsyncCache::close`]: in-flight loads and refreshes are aborted,
/// no new loads start; reads keep working). A stop for a restart leaves the cache, its
/// entries and its running loads alone.
pub struct CacheNode<K: Hash + Eq, V> {
    cache: AsyncCache<K, V>,
    purge_every: Duration,
}

/// State of a running [`CacheNode`].
pub struct CacheNodeState {
    ctx: ChildContext,
    ticker: JoinHandle<()>,
    _stats: Arc<dyn StatsSource>,
}

impl<K, V> Actor for CacheNode<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Msg = CacheNodeMsg;
    type State = CacheNodeState;
    type Arguments = ChildContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: ChildContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let source = self.cache.attach_stats(&ctx.stats());
        let ticker = myself.send_interval(self.purge_every, || CacheNodeMsg::Purge);
        Ok(CacheNodeState {
            ctx,
            ticker,
            _stats: source,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CacheNodeMsg::Purge => {
                self.cache.purge_expired();
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        if state.ctx.stop_is_final() {
            self.cache.close().await;
        }
        Ok(())
    }
}

impl<K, V> AsyncCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A child spec hosting this cache as a node named after the cache (kind `Cache`):
    /// spawn it with `manager.spawn(spec)` or add it to a supervisor. The node publishes
    /// the cache's stats (hits, misses, hit ratio, loads, load failures, refreshes,
    /// evictions, size...) and purges expired entries every `purge_every`. Reads and
    /// loads never go through the node's mailbox. A final stop of the node closes the
    /// cache; a restart does not (see [`CacheNode`]).
    pub fn worker_spec(&self, purge_every: Duration) -> WorkerSpec<CacheNode<K, V>> {
        let cache = self.clone();
        let purge_every = purge_every.max(Duration::from_millis(1));
        WorkerSpec::new(self.name().to_owned(), move |ctx| {
            (
                CacheNode {
                    cache: cache.clone(),
                    purge_every,
                },
                ctx.clone(),
            )
        })
        .kind(NodeKind::Cache)
    }

    /// Attaches this cache's counters to a node's stats, for hosting the cache in a node
    /// of your own. The node holds the source weakly: keep the returned handle as long
    /// as the stats should show.
    pub fn attach_stats(&self, stats: &NodeStats) -> Arc<dyn StatsSource> {
        stats.attach_shared(Arc::new(CacheStatsSource(self.clone())))
    }
}
