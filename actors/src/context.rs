//! [`ChildContext`]: what a supervised node knows about its place in the tree.
//!
//! A child's factory receives a fresh context on every start: the node's path, its
//! cancellation token (a child of its supervisor's, so cancelling any ancestor cancels it), the
//! manager, and a handle to publish stats in the tree.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//! use uno_actors::{AsyncManager, ChildContext, ManagerConfig, WorkerSpec};
//!
//! struct Watcher;
//! impl Actor for Watcher {
//!     type Msg = ();
//!     type State = ();
//!     type Arguments = ChildContext;
//!     async fn pre_start(&self, _: ActorRef<()>, ctx: ChildContext) -> Result<(), ActorProcessingErr> {
//!         ctx.stats().set("watching", true);
//!         // Background work of this node ends when the node is cancelled.
//!         let token = ctx.cancel_token().clone();
//!         tokio::spawn(async move { token.cancelled().await });
//!         Ok(())
//!     }
//! }
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! manager.spawn(WorkerSpec::new("watcher", |ctx| (Watcher, ctx.clone()))).await.unwrap();
//! let node = manager.tree().find("root/watcher").cloned().unwrap();
//! assert_eq!(node.stats["watching"], true);
//! manager.shutdown(std::time::Duration::from_secs(1)).await;
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::manager::{AsyncManager, Shared};
use crate::tree::{LeafNode, NodeId, NodeKind, NodeStats};

struct Inner {
    final_stop: AtomicBool,
    path: Arc<str>,
    name: String,
    kind: NodeKind,
    id: NodeId,
    token: CancellationToken,
    incarnation: u64,
    shared: Arc<Shared>,
}

/// A node's context, handed to its factory on every start. Cheap to clone.
#[derive(Clone)]
pub struct ChildContext {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildContext")
            .field("path", &self.inner.path)
            .field("kind", &self.inner.kind)
            .field("incarnation", &self.inner.incarnation)
            .finish()
    }
}

impl ChildContext {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: NodeId,
        path: Arc<str>,
        name: String,
        kind: NodeKind,
        token: CancellationToken,
        incarnation: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                final_stop: AtomicBool::new(false),
                path,
                name,
                kind,
                id,
                token,
                incarnation,
                shared,
            }),
        }
    }

    /// The node's path, like `root/db/pool`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The node's name (its last path segment).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's kind label.
    pub fn kind(&self) -> &NodeKind {
        &self.inner.kind
    }

    /// The node's id in its manager's tree.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Which start of this node this is: 1 for the first, 2 after the first restart, …
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// This incarnation's cancellation token: cancelled when the node is stopped, when any
    /// ancestor is, and when the manager shuts down. Tokens of background work the node starts
    /// should be children of it ([`CancellationToken::child_token`]).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Resolves when this node is cancelled.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future has no effect.
    pub async fn cancelled(&self) {
        self.inner.token.cancelled().await
    }

    /// Whether this node is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// The manager this node belongs to.
    pub fn manager(&self) -> AsyncManager {
        AsyncManager::from_shared(self.inner.shared.clone())
    }

    /// The handle to publish this node's stats in the tree.
    pub fn stats(&self) -> NodeStats {
        NodeStats::new(&self.inner.shared.registry, self.inner.id)
    }

    /// Whether the node is being stopped for good (terminated, deleted, its supervisor or the
    /// manager shutting down) rather than for a restart. Meant for `post_stop`: flush and
    /// close what outlives an incarnation only when nothing will restart it.
    pub fn stop_is_final(&self) -> bool {
        self.inner.final_stop.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_final_stop(&self) {
        self.inner.final_stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn manager_exited(&self) -> CancellationToken {
        self.inner.shared.exited.clone()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Adds a leaf below this node that is not an actor (for example one short task of a
    /// group). It shows in the tree until the returned handle is dropped.
    pub fn add_leaf(&self, name: &str, kind: NodeKind) -> LeafNode {
        LeafNode::new(&self.inner.shared.registry, self.inner.id, &self.inner.path, name, kind)
    }

    /// A tracing span carrying the node's path, for work the node runs outside its handlers
    /// (`future.instrument(ctx.span())`).
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(parent: None, "uno.node", path = %self.inner.path)
    }
}
