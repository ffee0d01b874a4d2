//! The resource actor: one [`AsyncResource`] hosted by a supervised node, and its
//! [`ResourceHandle`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::DropGuard;
use tracing::Instrument;
use uno_actors::{AsyncManager, ChildContext, NodeKind, RefError, StatValue, StatsSource, SupervisedRef, WorkerSpec};

use super::error::ResourceError;
use super::traits::AsyncResource;

/// How a resource node checks its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceOptions {
    /// How often [`AsyncResource::health_check`] runs; `None` disables periodic checks.
    /// Default: every 30 s.
    pub health_check_interval: Option<Duration>,
    /// A check that takes longer than this counts as failed. Default: 5 s.
    pub health_check_timeout: Duration,
}

impl Default for ResourceOptions {
    fn default() -> Self {
        Self {
            health_check_interval: Some(Duration::from_secs(30)),
            health_check_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters shared by every incarnation of one resource node.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    health_checks: AtomicU64,
    health_check_failures: AtomicU64,
    opens: AtomicU64,
    open_failures: AtomicU64,
    closes: AtomicU64,
    last_check_unix_ms: AtomicU64,
    last_check_ok: AtomicBool,
}

/// The per-incarnation view attached to the tree (dropped with the incarnation).
struct StatsView(Arc<Counters>);

impl StatsSource for StatsView {
    fn collect(&self, out: &mut BTreeMap<String, StatValue>) {
        let c = &self.0;
        let get = |a: &AtomicU64| StatValue::from(a.load(Ordering::Relaxed));
        out.insert("calls".into(), get(&c.calls));
        out.insert("failures".into(), get(&c.failures));
        out.insert("health_checks".into(), get(&c.health_checks));
        out.insert("health_check_failures".into(), get(&c.health_check_failures));
        out.insert("opens".into(), get(&c.opens));
        out.insert("open_failures".into(), get(&c.open_failures));
        out.insert("closes".into(), get(&c.closes));
        let last = c.last_check_unix_ms.load(Ordering::Relaxed);
        if last > 0 {
            out.insert("last_check_unix_ms".into(), last.into());
            out.insert("last_check_ok".into(), c.last_check_ok.load(Ordering::Relaxed).into());
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A unit of work sent to a resource actor: runs against the resource and replies itself.
type CallFn<R> = Box<dyn for<'a> FnOnce(&'a mut R) -> BoxFuture<'a, ()> + Send>;

/// The message type of a resource actor. Opaque: send work with [`ResourceHandle::call`].
pub struct ResourceMsg<R: AsyncResource>(Inner<R>);

enum Inner<R: AsyncResource> {
    Call(CallFn<R>),
    /// A periodic check; clears the ticker's "queued" flag when it runs.
    HealthCheck(Arc<AtomicBool>),
}

/// The ractor actor hosting one resource. Built by [`ResourceHandle::spec`]; you never
/// construct it yourself.
pub struct ResourceActor<R>(PhantomData<fn() -> R>);

/// What a resource actor starts from (built by the spec's factory on every start).
pub struct ResourceArgs<R: AsyncResource> {
    config: Arc<R::Config>,
    options: ResourceOptions,
    counters: Arc<Counters>,
    ctx: ChildContext,
}

/// The state of a running resource actor.
pub struct ResourceState<R: AsyncResource> {
    resource: Option<R>,
    counters: Arc<Counters>,
    options: ResourceOptions,
    path: Arc<str>,
    _view: Arc<StatsView>,
    _ticker: Option<DropGuard>,
}

impl<R: AsyncResource> ResourceState<R> {
    /// Closes the resource (once) and counts it.
    async fn close(&mut self) {
        if let Some(r) = self.resource.take() {
            r.close().await;
            self.counters.closes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the resource and turns `reason` into the failure that restarts the node.
    async fn fail(&mut self, reason: String) -> ActorProcessingErr {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        self.close().await;
        tracing::warn!(path = %self.path, %reason, "resource failed; its supervisor restarts it");
        reason.into()
    }
}

impl<R: AsyncResource> Actor for ResourceActor<R> {
    type Msg = ResourceMsg<R>;
    type State = ResourceState<R>;
    type Arguments = ResourceArgs<R>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ResourceArgs<R>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let path: Arc<str> = args.ctx.path().into();
        let resource = match R::open(&args.config).await {
            Ok(r) => r,
            Err(e) => {
                args.counters.open_failures.fetch_add(1, Ordering::Relaxed);
                return Err(format!("resource {path}: open failed: {e}").into());
            }
        };
        args.counters.opens.fetch_add(1, Ordering::Relaxed);
        let view = Arc::new(StatsView(args.counters.clone()));
        let weak = Arc::downgrade(&view);
        args.ctx.stats().attach(weak);
        let ticker = args.options.health_check_interval.map(|period| {
            let token = args.ctx.cancel_token().child_token();
            let stop = token.clone();
            let queued = Arc::new(AtomicBool::new(false));
            let task = async move {
                let start = tokio::time::Instant::now() + period;
                let mut every = tokio::time::interval_at(start, period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = every.tick() => {
                            // At most one check queued: a busy resource does not pile them up.
                            if queued.swap(true, Ordering::AcqRel) {
                                continue;
                            }
                            let check = ResourceMsg(Inner::HealthCheck(queued.clone()));
                            if myself.send_message(check).is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            tokio::spawn(task.instrument(args.ctx.span()));
            token.drop_guard()
        });
        Ok(ResourceState {
            resource: Some(resource),
            counters: args.counters,
            options: args.options,
            path,
            _view: view,
            _ticker: ticker,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        ResourceMsg(msg): Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(resource) = state.resource.as_mut() else {
            return Err(format!("resource {}: no open resource", state.path).into());
        };
        match msg {
            Inner::Call(work) => {
                state.counters.calls.fetch_add(1, Ordering::Relaxed);
                // A panicking closure must not skip `close`: a failed actor runs no post_stop.
                if AssertUnwindSafe(work(resource)).catch_unwind().await.is_err() {
                    let reason = format!("resource {}: a call panicked", state.path);
                    return Err(state.fail(reason).await);
                }
            }
            Inner::HealthCheck(queued) => {
                queued.store(false, Ordering::Release);
                state.counters.health_checks.fetch_add(1, Ordering::Relaxed);
                let limit = state.options.health_check_timeout;
                let outcome = tokio::time::timeout(limit, resource.health_check()).await;
                let ok = matches!(outcome, Ok(Ok(())));
                state.counters.last_check_unix_ms.store(unix_ms(), Ordering::Relaxed);
                state.counters.last_check_ok.store(ok, Ordering::Relaxed);
                if !ok {
                    state.counters.health_check_failures.fetch_add(1, Ordering::Relaxed);
                    let reason = match outcome {
                        Ok(Err(e)) => format!("resource {}: health check failed: {e}", state.path),
                        _ => format!("resource {}: health check did not finish within {limit:?}", state.path),
                    };
                    return Err(state.fail(reason).await);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.close().await;
        Ok(())
    }
}

/// The typed address of a resource node: send it work with [`call`](Self::call). Follows the
/// node across restarts. Cheap to clone.
pub struct ResourceHandle<R: AsyncResource> {
    node: SupervisedRef<ResourceMsg<R>>,
    name: Arc<str>,
}

impl<R: AsyncResource> Clone for ResourceHandle<R> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            name: self.name.clone(),
        }
    }
}

impl<R: AsyncResource> std::fmt::Debug for ResourceHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceHandle").field("path", &self.path()).finish()
    }
}

impl<R: AsyncResource> ResourceHandle<R> {
    /// The worker spec of a resource node named `name` (kind [`NodeKind::Resource`]) and its
    /// handle. Adjust the spec (restart, backoff, shutdown) and start it under any supervisor;
    /// the handle works once the node runs and follows its restarts.
    pub fn spec(
        name: impl Into<String>,
        config: R::Config,
        options: ResourceOptions,
    ) -> (WorkerSpec<ResourceActor<R>>, Self) {
        let name: String = name.into();
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let spec = WorkerSpec::new(name.clone(), move |ctx: &ChildContext| {
            let args = ResourceArgs {
                config: config.clone(),
                options,
                counters: counters.clone(),
                ctx: ctx.clone(),
            };
            (ResourceActor(PhantomData), args)
        })
        .kind(NodeKind::Resource);
        let handle = Self {
            node: spec.reference(),
            name: name.into(),
        };
        (spec, handle)
    }

    /// Starts a resource node under the manager's root and returns its handle once the
    /// resource is open.
    ///
    /// # Cancel safety
    /// If dropped after the request reached the root, the node is still started.
    ///
    /// # Errors
    /// [`ResourceError::Spawn`] when the node could not start (its open failed, or the
    /// manager has stopped).
    pub async fn spawn(
        manager: &AsyncManager,
        name: impl Into<String>,
        config: R::Config,
        options: ResourceOptions,
    ) -> Result<Self, ResourceError> {
        let (spec, handle) = Self::spec(name, config, options);
        manager.spawn(spec).await?;
        Ok(handle)
    }

    /// The node's path, once started.
    pub fn path(&self) -> Option<String> {
        self.node.path()
    }

    /// The underlying kernel address.
    pub fn node(&self) -> &SupervisedRef<ResourceMsg<R>> {
        &self.node
    }

    fn wrap<T, F>(work: F) -> (ResourceMsg<R>, tokio::sync::oneshot::Receiver<T>)
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut R) -> BoxFuture<'a, T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call: CallFn<R> = Box::new(move |r: &mut R| {
            Box::pin(async move {
                let out = work(r).await;
                let _ = tx.send(out);
            })
        });
        (ResourceMsg(Inner::Call(call)), rx)
    }

    fn path_or_name(&self) -> String {
        self.path().unwrap_or_else(|| self.name.to_string())
    }

    /// Runs `work` against the resource, inside the node, and returns its result. Calls run
    /// one at a time, in the order they arrive.
    ///
    /// ```
    /// # use uno_runtime::resource::{AsyncResource, ResourceHandle};
    /// # async fn demo<R: AsyncResource>(db: ResourceHandle<R>) {
    /// let ok = db.call(|r| Box::pin(async move { r.health_check().await.is_ok() })).await;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future abandons the call: if it was already delivered it still runs, and
    /// its result is discarded.
    ///
    /// # Errors
    /// [`ResourceError::Call`] naming the node when it stopped, stayed down longer than its
    /// restart wait, or failed (the closure panicked) before answering.
    pub async fn call<T, F>(&self, work: F) -> Result<T, ResourceError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut R) -> BoxFuture<'a, T> + Send + 'static,
    {
        let (msg, rx) = Self::wrap(work);
        if let Err(e) = self.node.cast(msg).await {
            return Err(ResourceError::Call {
                path: self.path_or_name(),
                reason: e.reason,
            });
        }
        rx.await.map_err(|_| ResourceError::Call {
            path: self.path_or_name(),
            reason: RefError::NoReply {
                path: self.path_or_name(),
            },
        })
    }

    /// [`call`](Self::call) bounded by `limit` (waiting for a restarting node included).
    ///
    /// # Cancel safety
    /// As [`call`](Self::call).
    ///
    /// # Errors
    /// As [`call`](Self::call), plus [`ResourceError::CallTimeout`] naming the node and the
    /// limit.
    pub async fn call_timeout<T, F>(&self, work: F, limit: Duration) -> Result<T, ResourceError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut R) -> BoxFuture<'a, T> + Send + 'static,
    {
        match tokio::time::timeout(limit, self.call(work)).await {
            Ok(r) => r,
            Err(_) => Err(ResourceError::CallTimeout {
                path: self.path_or_name(),
                limit,
            }),
        }
    }
}
