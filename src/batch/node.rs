//! The batcher as a node of the supervision tree: [`BatcherNode`], built by
//! [`AsyncBatcher::worker_spec`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use uno_actors::tree::{NodeKind, NodeStats, StatValue, StatsSource};
use uno_actors::{ChildContext, WorkerSpec};

use super::batcher::PanicHook;
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

/// Why a [`BatcherNode`] fails: the batch function panicked (its callers were
/// answered with [`BatchError::Panicked`](super::BatchError::Panicked) first).
#[derive(Debug, Clone)]
pub struct BatchPanic {
    message: String,
}

impl BatchPanic {
    /// The panic message of the batch function.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The message of a [`BatcherNode`]. Submits never go through its mailbox: the only
/// message is the report of its own flush loop.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BatcherNodeMsg {
    /// Does nothing; a liveness probe.
    Ping,
    /// Sent by the node's flush loop when the batch function panicked: the node fails,
    /// so its supervisor restarts it.
    BatchPanicked(BatchPanic),
}

/// The actor running an [`AsyncBatcher`]'s flush loop as a node of the tree.
///
/// - It owns the flush loop task of its incarnation and publishes the batcher's stats.
/// - When the batch function panics, the callers of that batch get
///   [`BatchError::Panicked`](super::BatchError::Panicked), then the node fails and its
///   supervisor restarts it (restart policy, intensity and backoff apply). The queue
///   lives outside the node, so the items queued meanwhile are served by the next
///   incarnation; batches already running finish and answer their callers.
/// - On a final stop (terminated, or its supervisor or the manager shutting down) it
///   refuses new items, flushes every queued item and waits for running batches before
///   it stops: nothing is lost. A stop for a restart only hands the queue over.
pub struct BatcherNode<I, O, E> {
    batcher: AsyncBatcher<I, O, E>,
}

/// State of a running [`BatcherNode`].
pub struct BatcherNodeState {
    ctx: ChildContext,
    /// Cancelled when the state is dropped (also when the node fails, where ractor
    /// skips `post_stop`), so a loop never outlives its incarnation.
    _stop_on_drop: DropGuard,
    stop: CancellationToken,
    flush_loop: Option<JoinHandle<()>>,
    _stats: Arc<dyn StatsSource>,
}

impl<I, O, E> Actor for BatcherNode<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    type Msg = BatcherNodeMsg;
    type State = BatcherNodeState;
    type Arguments = ChildContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: ChildContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let stats = self.batcher.attach_stats(&ctx.stats());
        let stop = CancellationToken::new();
        let on_panic: PanicHook = {
            let stop = stop.clone();
            Arc::new(move |message| {
                // Take no more batches in this incarnation; the next one serves the queue.
                stop.cancel();
                let _ = myself.cast(BatcherNodeMsg::BatchPanicked(BatchPanic { message }));
            })
        };
        let flush_loop = self.batcher.spawn_owned_loop(stop.clone(), on_panic, ctx.span());
        Ok(BatcherNodeState {
            ctx,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            flush_loop: Some(flush_loop),
            _stats: stats,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BatcherNodeMsg::Ping => Ok(()),
            BatcherNodeMsg::BatchPanicked(p) => Err(format!(
                "batch function of batcher `{}` panicked: {}",
                self.batcher.config().name,
                p.message
            )
            .into()),
        }
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if state.ctx.stop_is_final() {
            // Nothing will restart this node: flush what is queued, wait for every batch.
            self.batcher.begin_close();
            self.batcher.drained().await;
        } else if let Some(flush_loop) = state.flush_loop.take() {
            // A restart: leave the queue to the next incarnation.
            state.stop.cancel();
            let _ = flush_loop.await;
        }
        Ok(())
    }
}

impl<I, O, E> AsyncBatcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// A child spec running this batcher as a node named after it (kind `Batcher`): the
    /// node takes the flush loop over, publishes the batcher's stats, fails (and is
    /// restarted by its supervisor) when the batch function panics, and flushes the
    /// queue on a final stop. See [`BatcherNode`]. Spawn it with `manager.spawn(spec)`
    /// or add it to a supervisor. Submits never go through the node's mailbox.
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
                ctx.clone(),
            )
        })
        .kind(NodeKind::Batcher)
    }

    /// Attaches this batcher's counters to a node's stats. The node holds the source
    /// weakly: keep the returned handle as long as the stats should show.
    pub fn attach_stats(&self, stats: &NodeStats) -> Arc<dyn StatsSource> {
        stats.attach_shared(Arc::new(BatcherStatsSource(self.clone())))
    }
}
