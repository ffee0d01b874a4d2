//! [`spawn_task`] and [`as_task`]: long-lived tasks as supervised actors.
//!
//! A supervised task is one ractor actor whose only job is to run a future built by a factory.
//! Because it is a plain worker of the kernel, everything the kernel offers applies: restart
//! type, restart backoff, intensity, shutdown timeout, its node in the tree.
//!
//! * The future is rebuilt from the factory on every (re)start, with that incarnation's
//!   [`ChildContext`].
//! * Returning `Ok(())` ends the task normally (a `Permanent` task is still restarted, as in
//!   OTP; use `Transient` for run-until-done work). Returning `Err` or panicking is a failure:
//!   the supervisor restarts it according to its policy and backoff.
//! * The task sees cancellation through `ctx.cancelled()`; when its node is stopped, it gets
//!   its shutdown timeout to return, after which the kernel kills the actor and the future is
//!   aborted.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig, Restart, Shutdown};
//! use uno_runtime::task::{as_task, spawn_task};
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let ticker = spawn_task(
//!     &manager,
//!     as_task("ticker", |ctx| async move {
//!         let mut ticks = 0u64;
//!         loop {
//!             tokio::select! {
//!                 _ = ctx.cancelled() => return Ok::<_, std::io::Error>(()),
//!                 _ = tokio::time::sleep(Duration::from_millis(10)) => {
//!                     ticks += 1;
//!                     ctx.stats().set("ticks", ticks);
//!                 }
//!             }
//!         }
//!     })
//!     .restart(Restart::Permanent)
//!     .shutdown(Shutdown::Timeout(Duration::from_secs(1))),
//! )
//! .await
//! .unwrap();
//! assert_eq!(ticker.path().as_deref(), Some("root/ticker"));
//! let report = manager.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_clean());
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use uno_actors::{AsyncManager, ChildContext, NodeKind, SupervisedRef, WorkerSpec};

use super::error::{panic_message, BoxError, TaskError};

type Factory = dyn Fn(ChildContext) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;

/// The message a task's actor receives when its future ends. Opaque: a task has no API of
/// its own besides its node.
#[derive(Debug)]
pub struct TaskMsg(Result<(), String>);

/// The stable address of a supervised task.
pub type TaskRef = SupervisedRef<TaskMsg>;

/// The actor that runs one supervised task.
pub struct TaskActor {
    factory: Arc<Factory>,
}

/// The state of a running task's actor: the tokio task running the future, aborted on drop
/// (so also when the actor is killed).
pub struct TaskState {
    handle: AbortOnDropHandle<()>,
}

impl Actor for TaskActor {
    type Msg = TaskMsg;
    type State = TaskState;
    type Arguments = ChildContext;

    async fn pre_start(&self, myself: ActorRef<TaskMsg>, ctx: ChildContext) -> Result<TaskState, ActorProcessingErr> {
        // Locks taken by the task record this node's path as their holder's.
        let future = crate::sync::scope_node_path(std::sync::Arc::<str>::from(ctx.path()), (self.factory)(ctx.clone()));
        let span = ctx.span();
        let handle = tokio::spawn(
            async move {
                let ended = match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(payload) => Err(format!("panicked: {}", panic_message(&*payload))),
                };
                let _ = myself.send_message(TaskMsg(ended));
            }
            .instrument(span),
        );
        Ok(TaskState {
            handle: AbortOnDropHandle::new(handle),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TaskMsg>,
        message: TaskMsg,
        _state: &mut TaskState,
    ) -> Result<(), ActorProcessingErr> {
        match message.0 {
            Ok(()) => {
                myself.stop(None);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn post_stop(&self, _myself: ActorRef<TaskMsg>, state: &mut TaskState) -> Result<(), ActorProcessingErr> {
        // The node's token is cancelled before it is asked to stop: wait for the future to
        // return. The supervisor kills the actor after its shutdown timeout, which drops the
        // state and aborts the future.
        let _ = (&mut state.handle).await;
        Ok(())
    }
}

/// The spec of a long-lived supervised task named `name`, whose future `factory` builds on
/// every start. Configure it like any worker (`.restart`, `.backoff`, `.shutdown`) and start
/// it with [`spawn_task`] or under any supervisor. Its node kind is `task`.
pub fn as_task<F, Fut, E>(name: impl Into<String>, factory: F) -> WorkerSpec<TaskActor>
where
    F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let factory: Arc<Factory> = Arc::new(move |ctx| {
        let f = factory(ctx);
        Box::pin(async move { f.await.map_err(Into::into) })
    });
    WorkerSpec::new(name, move |ctx: &ChildContext| {
        (
            TaskActor {
                factory: factory.clone(),
            },
            ctx.clone(),
        )
    })
    .kind(NodeKind::Task)
}

/// Starts a supervised task under the manager's root and returns its stable address.
///
/// # Cancel safety
/// If dropped after the request reached the root, the task is still started.
///
/// # Errors
/// [`TaskError::Supervisor`] when the root refuses it (manager stopped, duplicate name) or its
/// actor fails to start.
pub async fn spawn_task(manager: &AsyncManager, spec: WorkerSpec<TaskActor>) -> Result<TaskRef, TaskError> {
    let name = spec.name().to_string();
    manager
        .spawn(spec)
        .await
        .map_err(|source| TaskError::Supervisor { name, source })
}
