//! The batcher as a node of the supervision tree: [`BatcherNode`], built by
//! [`AsyncBatcher::worker_spec`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uno_actors::tree::{NodeKind, NodeStats, StatValue, StatsSource};
use uno_actors::WorkerSpec;

use super::AsyncBatcher;

/// Publishes a batcher's counters in the tree (read only when a snapshot is taken).
struct BatcherStatsSource<I, O, E>(AsyncBatcher<I, O, E>);

impl<I, O, E> StatsSource for BatcherStatsSource<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        let s = self.0.stats();
        out.insert("submitted".into(), s.submitted.into());
        out.insert("succeeded".into(), s.succeeded.into());
        out.insert("failed".into(), s.failed.into());
        out.insert("cancelled".into(), s.cancelled.into());
        out.insert("overloaded".into(), s.overloaded.into());
        out.insert("batches".into(), s.batches.into());
        out.insert("batch_failures".into(), s.batch_failures.into());
        out.insert("panics".into(), s.panics.into());
        out.insert("deduplicated".into(), s.deduplicated.into());
        out.insert("queued".into(), s.queued.into());
        out.insert("running".into(), s.running.into());
        out.insert(
            "mean_batch_size".into(),
            ((s.mean_batch_size() * 100.0).round() / 100.0).into(),
        );
    }
}

/// The message of a [`BatcherNode`] (it takes none from users: submits never go
/// through its mailbox).
#[derive(Debug, Clone, Copy)]
pub enum BatcherNodeMsg {
    /// Does nothing; a liveness probe.
    Ping,
}

/// The actor representing an [`AsyncBatcher`] in the tree: it publishes the batcher's
/// stats on its node. The queue and the flush loop live outside it, so a restart of
/// the node loses nothing.
pub struct BatcherNode<I, O, E> {
    batcher: AsyncBatcher<I, O, E>,
}

impl<I, O, E> Actor for BatcherNode<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    type Msg = BatcherNodeMsg;
    type State = Arc<dyn StatsSource>;
    type Arguments = NodeStats;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, stats: NodeStats) -> Result<Self::State, ActorProcessingErr> {
        Ok(self.batcher.attach_stats(&stats))
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        _: Self::Msg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

impl<I, O, E> AsyncBatcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// A child spec representing this batcher as a node named after it (kind
    /// `Batcher`) that publishes its stats: spawn it with `manager.spawn(spec)` or add it
    /// to a supervisor. Submits never go through the node's mailbox.
    ///
    /// The spec and the node hold handles to the batcher, so it no longer shuts down
    /// when the user's last handle is dropped: call [`shutdown`](Self::shutdown) (e.g.
    /// from a shutdown hook) to flush it.
    pub fn worker_spec(&self) -> WorkerSpec<BatcherNode<I, O, E>> {
        let batcher = self.clone();
        WorkerSpec::new(self.config().name.clone(), move |ctx| {
            (
                BatcherNode {
                    batcher: batcher.clone(),
                },
                ctx.stats(),
            )
        })
        .kind(NodeKind::Batcher)
    }

    /// Attaches this batcher's counters to a node's stats. The node holds the source
    /// weakly: keep the returned handle as long as the stats should show.
    pub fn attach_stats(&self, stats: &NodeStats) -> Arc<dyn StatsSource> {
        let source: Arc<dyn StatsSource> = Arc::new(BatcherStatsSource(self.clone()));
        stats.attach(Arc::downgrade(&source));
        source
    }
}
