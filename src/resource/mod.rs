//! Supervised resources: one [`AsyncResource`] in an actor, or many in an [`AsyncResourcePool`].
//!
//! A resource node opens its resource in `pre_start` (a failed open is a failed start, counted
//! by its supervisor), runs the work sent with [`ResourceHandle::call`] one call at a time,
//! checks the resource's health periodically (a failed check closes it and fails the node, so
//! its supervisor restarts it with a fresh one), and closes it when the node stops.
//!
//! An [`AsyncResourcePool`] node owns a bb8 pool of any [`AsyncResource`] (through
//! [`ResourceManager`]) or of any bb8 `ManageConnection`; checkouts go straight to bb8, and the
//! node owns the pool's lifecycle (pre-warming, background validation, closing), its stats in
//! the tree and its restarts. Its docs show an example. Note that uno's pools default to
//! `test_on_check_out = false` (bb8 defaults to `true`, a round trip per checkout): idle
//! connections are validated in the background and broken ones discarded instead.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::resource::{AsyncResource, ResourceHandle, ResourceOptions};
//!
//! struct Counter { n: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("counter error")]
//! struct CounterError;
//!
//! impl AsyncResource for Counter {
//!     type Config = u64;
//!     type Error = CounterError;
//!     async fn open(start: &u64) -> Result<Self, CounterError> { Ok(Counter { n: *start }) }
//!     async fn close(self) {}
//!     async fn health_check(&mut self) -> Result<(), CounterError> { Ok(()) }
//! }
//!
//! let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
//! let counter: ResourceHandle<Counter> =
//!     ResourceHandle::spawn(&manager, "counter", 40, ResourceOptions::default()).await.unwrap();
//! let n = counter.call(|c| Box::pin(async move { c.n += 2; c.n })).await.unwrap();
//! assert_eq!(n, 42);
//! assert_eq!(manager.tree().find("root/counter").unwrap().stats["calls"], 1);
//! manager.shutdown(Duration::from_secs(1)).await;
//! # }
//! ```

mod actor;
mod adapter;
mod checkout;
mod error;
mod pool;
mod traits;

pub use actor::{ResourceActor, ResourceArgs, ResourceHandle, ResourceMsg, ResourceOptions, ResourceState};
pub use adapter::{ResourceConn, ResourceManager};
pub use checkout::PoolGuard;
pub use error::ResourceError;
pub use pool::{AsyncResourcePool, PoolActor, PoolArgs, PoolConfig, PoolMsg, PoolState, ResourcePool};
pub use traits::AsyncResource;
