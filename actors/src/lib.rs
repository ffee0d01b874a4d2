//! uno-actors: the supervision kernel of uno.
//!
//! Erlang/OTP supervision on [ractor]: an [`AsyncManager`] owns one tree of supervisors and
//! plain ractor actors. Supervisors apply restart strategies, restart types, intensity and
//! backoff; cancellation flows down through a [`CancellationToken`] per node; a
//! [`SupervisedRef`] keeps pointing at a child across its restarts; and [`AsyncManager::tree`]
//! gives a live [`TreeSnapshot`] at any time without messaging any actor.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
//! use uno_actors::{AsyncManager, ManagerConfig, SupervisorSpec, Strategy, WorkerSpec};
//!
//! struct Greeter;
//! impl Actor for Greeter {
//!     type Msg = (String, RpcReplyPort<String>);
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) }
//!     async fn handle(&self, _: ActorRef<Self::Msg>, (name, reply): Self::Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
//!         let _ = reply.send(format!("hello, {name}"));
//!         Ok(())
//!     }
//! }
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let greeter = WorkerSpec::new("greeter", |_| (Greeter, ()));
//! let greeter_ref = greeter.reference();
//! manager
//!     .spawn_supervisor(SupervisorSpec::new("web").strategy(Strategy::OneForAll).child(greeter))
//!     .await
//!     .unwrap();
//! let answer = greeter_ref.call(|r| ("uno".to_string(), r)).await.unwrap();
//! assert_eq!(answer, "hello, uno");
//! println!("{}", manager.tree());
//! manager.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```
//!
//! [`CancellationToken`]: tokio_util::sync::CancellationToken
#![warn(missing_docs)]

pub mod backoff;
pub mod context;
pub mod error;
pub mod handle;
pub mod manager;
pub mod spec;
pub mod supervisor;
pub mod tree;

pub use backoff::{Backoff, BackoffError, BackoffState, BackoffStrategy};
pub use context::ChildContext;
pub use error::{CastError, EscalationError, RefError, SpecError, SupervisorError};
pub use handle::SupervisedRef;
pub use manager::{AsyncManager, ExitReason, FailedNode, KilledNode, ManagerConfig, ShutdownReport, StopOutcome};
pub use spec::{
    AutoShutdown, ChildDefaults, ChildSpec, Intensity, Restart, RestartBackoff, Shutdown, Strategy, SupervisorSpec,
    WorkerSpec,
};
pub use supervisor::{ChildCounts, ChildInfo, SupervisorRef};
pub use tree::{
    EffectivePolicy, LastError, LeafNode, NodeId, NodeKind, NodeSnapshot, NodeStats, NodeStatus, StatValue,
    StatsSource, TreeSnapshot,
};

/// Re-exported so that users name the same ractor the kernel is built on.
pub use ractor;
/// Re-exported for `ChildContext::cancel_token`.
pub use tokio_util::sync::CancellationToken;
