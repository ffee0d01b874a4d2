//! [`AsyncExitStack`]: a stack of async cleanups run in reverse order.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio_util::task::TaskTracker;
use uno_actors::AsyncManager;

use super::{AsyncContext, BoxError, CleanupFailure, CleanupFailureKind, CleanupFailures, ContextError};

/// A deferred cleanup: creates the close future when it is time to run it.
pub(crate) type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;
/// A deferred open.
pub(crate) type OpenFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// Default time allowed to each cleanup.
pub const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings shared by [`AsyncExitStack`] and [`AsyncContextGroup`](super::AsyncContextGroup).
#[derive(Debug, Clone)]
pub struct ContextConfig {
    /// The name used in errors and logs.
    pub name: String,
    /// The time allowed to each cleanup; one that overruns is dropped and reported.
    pub cleanup_timeout: Duration,
    /// Where a dropped (cancelled) scope hands its cleanups: a task on this tracker, so
    /// whoever waits on the tracker (e.g. the manager's shutdown) waits for them. Without
    /// one, they run on a plain task of the current runtime and a warning is logged.
    pub tracker: Option<TaskTracker>,
    /// Where a dropped scope hands its cleanups first: the manager's
    /// [`spawn_cleanup`](uno_actors::AsyncManager::spawn_cleanup), whose tasks the
    /// manager's shutdown waits for. Takes precedence over `tracker`.
    pub manager: Option<AsyncManager>,
}

impl ContextConfig {
    /// A configuration named `name` with the default cleanup timeout and no tracker.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cleanup_timeout: DEFAULT_CLEANUP_TIMEOUT,
            tracker: None,
            manager: None,
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs every cleanup, last entered first, each within `timeout` and with panics
/// caught; returns the failures.
pub(crate) async fn run_cleanups(cleanups: Vec<(String, CleanupFn)>, timeout: Duration) -> CleanupFailures {
    let mut failures = Vec::new();
    for (resource, cleanup) in cleanups.into_iter().rev() {
        let run = AssertUnwindSafe(async move { cleanup().await }).catch_unwind();
        let kind = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) => CleanupFailureKind::Error(e),
            Ok(Err(p)) => CleanupFailureKind::Panicked(panic_message(p.as_ref())),
            Err(_) => CleanupFailureKind::TimedOut(timeout),
        };
        failures.push(CleanupFailure { resource, kind });
    }
    CleanupFailures(failures)
}

/// A stack of async resources and cleanups that closes them in reverse order, as
/// Python's `contextlib.AsyncExitStack`. See the [module docs](super).
///
/// Close it with [`close`](Self::close). If it is dropped instead (an error path that
/// returned early, or the owning future was cancelled), its cleanups are handed to a
/// task (on the configured tracker if any): they are never skipped silently.
pub struct AsyncExitStack {
    config: ContextConfig,
    cleanups: Vec<(String, CleanupFn)>,
}

impl std::fmt::Debug for AsyncExitStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncExitStack")
            .field("config", &self.config)
            .field("cleanups", &self.cleanups.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

impl AsyncExitStack {
    /// An empty stack named `name` (default cleanup timeout, no tracker).
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_config(ContextConfig::new(name))
    }

    /// An empty stack with the given configuration.
    pub fn with_config(config: ContextConfig) -> Self {
        Self {
            config,
            cleanups: Vec::new(),
        }
    }

    /// Sets the time allowed to each cleanup.
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.config.cleanup_timeout = timeout;
        self
    }

    /// Sets the tracker a dropped stack hands its cleanups to.
    pub fn tracker(mut self, tracker: TaskTracker) -> Self {
        self.config.tracker = Some(tracker);
        self
    }

    /// Hands the cleanups of a dropped stack to `manager.spawn_cleanup`, so the
    /// manager's shutdown waits for them.
    pub fn manager(mut self, manager: AsyncManager) -> Self {
        self.config.manager = Some(manager);
        self
    }

    /// The stack's configuration.
    pub fn config(&self) -> &ContextConfig {
        &self.config
    }

    /// How many cleanups are pending.
    pub fn len(&self) -> usize {
        self.cleanups.len()
    }

    /// Whether no cleanup is pending.
    pub fn is_empty(&self) -> bool {
        self.cleanups.is_empty()
    }

    /// Registers a cleanup, run at close after every cleanup registered later.
    pub fn push_cleanup<F, Fut, E>(&mut self, name: impl Into<String>, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let f: CleanupFn = Box::new(move || cleanup().map(|r| r.map_err(Into::into)).boxed());
        self.cleanups.push((name.into(), f));
    }

    pub(crate) async fn enter_raw(&mut self, name: String, open: OpenFn, close: CleanupFn) -> Result<(), ContextError> {
        let opened = AssertUnwindSafe(async move { open().await }).catch_unwind().await;
        let source: BoxError = match opened {
            Ok(Ok(())) => {
                self.cleanups.push((name, close));
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(p) => format!("open panicked: {}", panic_message(p.as_ref())).into(),
        };
        let cleanups = std::mem::take(&mut self.cleanups);
        let cleanup = run_cleanups(cleanups, self.config.cleanup_timeout).await;
        Err(ContextError::Enter {
            context: self.config.name.clone(),
            resource: name,
            source,
            cleanup,
        })
    }

    /// Opens `resource` and registers its close. If the open fails, every resource
    /// entered before is closed (in reverse order) and the stack is left empty.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe for the resource being opened: if this future is dropped during
    /// the open, that resource is not closed (it never finished opening). Resources
    /// entered before stay on the stack and are closed with it.
    ///
    /// # Errors
    ///
    /// [`ContextError::Enter`] with the open's error (a panic in open is reported as an
    /// error too) and any failures of the cleanups that followed.
    pub async fn enter<R: AsyncContext>(&mut self, resource: Arc<R>) -> Result<Arc<R>, ContextError> {
        let name = resource.name().to_owned();
        let (o, c) = (resource.clone(), resource.clone());
        let open: OpenFn = Box::new(move || async move { o.open().await.map_err(Into::into) }.boxed());
        let close: CleanupFn = Box::new(move || async move { c.close().await.map_err(Into::into) }.boxed());
        self.enter_raw(name, open, close).await?;
        Ok(resource)
    }

    /// Runs `open` and, once it succeeded, registers `close(value)`; returns the value
    /// (shared with the cleanup). On failure, closes what was entered before.
    ///
    /// # Cancel safety
    ///
    /// As [`enter`](Self::enter): a value whose open was interrupted is not closed.
    ///
    /// # Errors
    ///
    /// [`ContextError::Enter`] with the open's error and any failed cleanups.
    pub async fn enter_with<T, E, Fut, C, CFut, CE>(
        &mut self,
        name: impl Into<String>,
        open: Fut,
        close: C,
    ) -> Result<Arc<T>, ContextError>
    where
        T: Send + Sync + 'static,
        E: Into<BoxError>,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        C: FnOnce(Arc<T>) -> CFut + Send + 'static,
        CFut: Future<Output = Result<(), CE>> + Send + 'static,
        CE: Into<BoxError>,
    {
        let slot: Arc<std::sync::OnceLock<Arc<T>>> = Arc::default();
        let (s_open, s_close) = (slot.clone(), slot.clone());
        let open: OpenFn = Box::new(move || {
            async move {
                let v = open.await.map_err(Into::into)?;
                let _ = s_open.set(Arc::new(v));
                Ok(())
            }
            .boxed()
        });
        let close: CleanupFn = Box::new(move || {
            async move {
                match s_close.get().cloned() {
                    Some(v) => close(v).await.map_err(Into::into),
                    None => Ok(()),
                }
            }
            .boxed()
        });
        self.enter_raw(name.into(), open, close).await?;
        match slot.get().cloned() {
            Some(v) => Ok(v),
            None => Err(ContextError::Enter {
                context: self.config.name.clone(),
                resource: "value".into(),
                source: "open succeeded without a value".into(),
                cleanup: CleanupFailures::default(),
            }),
        }
    }

    /// Runs every cleanup, last entered first. Every cleanup runs even if another one
    /// fails, times out or panics; the failures are aggregated.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that nothing is lost: if this future is dropped, the
    /// cleanups not yet finished are handed to a task as on drop. (The cleanup running
    /// at that moment is restarted from its close function only if it had not started;
    /// one already running is dropped.)
    ///
    /// # Errors
    ///
    /// [`ContextError::Cleanup`] listing every cleanup that failed, timed out or
    /// panicked.
    pub async fn close(mut self) -> Result<(), ContextError> {
        let total = self.cleanups.len();
        let mut failures = Vec::new();
        // Pop one at a time so that, if this future is dropped, the rest stay on the
        // stack and Drop hands them to a task.
        while let Some((name, cleanup)) = self.cleanups.pop() {
            let mut f = run_cleanups(vec![(name, cleanup)], self.config.cleanup_timeout).await;
            failures.append(&mut f.0);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ContextError::Cleanup {
                context: self.config.name.clone(),
                total,
                failures: CleanupFailures(failures),
            })
        }
    }
}

impl Drop for AsyncExitStack {
    fn drop(&mut self) {
        if self.cleanups.is_empty() {
            return;
        }
        let cleanups = std::mem::take(&mut self.cleanups);
        let name = self.config.name.clone();
        let timeout = self.config.cleanup_timeout;
        let pending = cleanups.len();
        let task = async move {
            let failures = run_cleanups(cleanups, timeout).await;
            if !failures.0.is_empty() {
                tracing::error!(context = %name, %failures, "cleanups of a dropped context failed");
            }
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                context = %self.config.name,
                pending,
                "context dropped outside a tokio runtime: its cleanups cannot run"
            );
            return;
        };
        if let Some(manager) = &self.config.manager {
            manager.spawn_cleanup(&self.config.name, task);
            return;
        }
        match &self.config.tracker {
            Some(tracker) => {
                tracker.spawn_on(task, &handle);
            }
            None => {
                tracing::warn!(
                    context = %self.config.name,
                    pending,
                    "context dropped without close: running its cleanups on an untracked task"
                );
                handle.spawn(task);
            }
        }
    }
}
