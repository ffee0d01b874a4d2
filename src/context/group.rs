//! [`AsyncContextGroup`]: several async resources entered and closed as one unit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use tokio_util::task::TaskTracker;

use super::stack::{CleanupFn, OpenFn};
use super::{AsyncContext, AsyncExitStack, BoxError, ContextConfig, ContextError};

/// Several async resources entered in order as one unit and closed in reverse order.
/// See the [module docs](super).
///
/// Entering opens each resource in the order added; if one fails, the ones already
/// open are closed (last first) and the error names the one that failed.
pub struct AsyncContextGroup {
    config: ContextConfig,
    steps: Vec<(String, OpenFn, CleanupFn)>,
}

impl std::fmt::Debug for AsyncContextGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncContextGroup")
            .field("config", &self.config)
            .field("resources", &self.steps.iter().map(|(n, _, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

impl AsyncContextGroup {
    /// An empty group named `name` (default cleanup timeout, no tracker).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            config: ContextConfig::new(name),
            steps: Vec::new(),
        }
    }

    /// Sets the time allowed to each cleanup.
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.config.cleanup_timeout = timeout;
        self
    }

    /// Sets the tracker a dropped (cancelled) group hands its cleanups to.
    pub fn tracker(mut self, tracker: TaskTracker) -> Self {
        self.config.tracker = Some(tracker);
        self
    }

    /// Hands the cleanups of a dropped (cancelled) group to `manager.spawn_cleanup`, so
    /// the manager's shutdown waits for them.
    pub fn manager(mut self, manager: uno_actors::AsyncManager) -> Self {
        self.config.manager = Some(manager);
        self
    }

    /// How many resources the group holds.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the group holds no resource.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds a resource (keep a clone of the `Arc` to use it).
    pub fn with<R: AsyncContext>(mut self, resource: Arc<R>) -> Self {
        let name = resource.name().to_owned();
        let (o, c) = (resource.clone(), resource);
        let open: OpenFn = Box::new(move || async move { o.open().await.map_err(Into::into) }.boxed());
        let close: CleanupFn = Box::new(move || async move { c.close().await.map_err(Into::into) }.boxed());
        self.steps.push((name, open, close));
        self
    }

    /// Adds a resource given as a pair of async closures.
    pub fn with_fns<O, OFut, OE, C, CFut, CE>(mut self, name: impl Into<String>, open: O, close: C) -> Self
    where
        O: FnOnce() -> OFut + Send + 'static,
        OFut: Future<Output = Result<(), OE>> + Send + 'static,
        OE: Into<BoxError>,
        C: FnOnce() -> CFut + Send + 'static,
        CFut: Future<Output = Result<(), CE>> + Send + 'static,
        CE: Into<BoxError>,
    {
        let open: OpenFn = Box::new(move || open().map(|r| r.map_err(Into::into)).boxed());
        let close: CleanupFn = Box::new(move || close().map(|r| r.map_err(Into::into)).boxed());
        self.steps.push((name.into(), open, close));
        self
    }

    /// Opens every resource in order and returns the entered stack; close it with
    /// [`AsyncExitStack::close`] (or drop it to hand the cleanups to a task).
    ///
    /// # Cancel safety
    ///
    /// If this future is dropped, the resources already open are closed by a task (on
    /// the group's tracker if any); the one being opened at that moment is not.
    ///
    /// # Errors
    ///
    /// [`ContextError::Enter`] naming the resource whose open failed, after the ones
    /// already open were closed.
    pub async fn enter(self) -> Result<AsyncExitStack, ContextError> {
        let mut stack = AsyncExitStack::with_config(self.config);
        for (name, open, close) in self.steps {
            stack.enter_raw(name, open, close).await?;
        }
        Ok(stack)
    }

    /// Enters every resource, runs `body`, then closes every resource (also when the
    /// body returned an error value). Returns the body's output.
    ///
    /// # Cancel safety
    ///
    /// If this future is dropped (e.g. the body is cancelled), the open resources are
    /// closed by a task (on the group's tracker if any), never skipped.
    ///
    /// # Errors
    ///
    /// [`ContextError::Enter`] if entering failed (the body did not run), or
    /// [`ContextError::Cleanup`] if a cleanup failed after the body ran; in that case
    /// the body's output is dropped: use [`enter`](Self::enter) and
    /// [`AsyncExitStack::close`] to keep both.
    pub async fn run<F: Future>(self, body: F) -> Result<F::Output, ContextError> {
        let stack = self.enter().await?;
        let out = body.await;
        stack.close().await?;
        Ok(out)
    }
}
