//! `AsyncContextGroup` and `AsyncExitStack`: enter several async resources as one unit,
//! and close them in reverse order whatever happens.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use uno_runtime::context::{AsyncContextGroup, AsyncExitStack};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let step = |log: &Arc<Mutex<Vec<String>>>, what: &'static str| {
//!     let log = log.clone();
//!     move || async move {
//!         log.lock().map_err(|_| "poisoned")?.push(what.to_string());
//!         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//!     }
//! };
//!
//! // A group: open in order, close in reverse order, as one unit.
//! let answer = AsyncContextGroup::new("app")
//!     .with_fns("db", step(&log, "open db"), step(&log, "close db"))
//!     .with_fns("cache", step(&log, "open cache"), step(&log, "close cache"))
//!     .run(async { 42 })
//!     .await?;
//! assert_eq!(answer, 42);
//! assert_eq!(
//!     *log.lock().map_err(|_| "poisoned")?,
//!     ["open db", "open cache", "close cache", "close db"]
//! );
//!
//! // A stack: enter values one by one; each close gets its value back.
//! let mut stack = AsyncExitStack::new("request");
//! let conn = stack
//!     .enter_with("conn", async { Ok::<_, std::io::Error>(String::from("conn#1")) }, |c| async move {
//!         println!("closing {c}");
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .await?;
//! assert_eq!(*conn, "conn#1");
//! stack.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Rules
//!
//! - Resources (an [`AsyncContext`], or a pair of async closures) are entered in order
//!   and closed in reverse order.
//! - If entering fails partway, the resources already entered are closed and the error
//!   names the one that failed ([`ContextError::Enter`]).
//! - Every cleanup runs even if another fails, times out or panics; the failures are
//!   aggregated in one [`ContextError::Cleanup`]. Each cleanup has a timeout
//!   ([`ContextConfig::cleanup_timeout`]).
//! - Cleanup runs on error and on cancellation: a stack dropped without
//!   [`AsyncExitStack::close`] hands its cleanups to a task, on the configured
//!   [`TaskTracker`](tokio_util::task::TaskTracker) so that a shutdown waiting on it
//!   waits for them (without one, on a plain task, with a warning logged).

mod error;
mod group;
mod resource;
mod stack;

pub use error::{BoxError, CleanupFailure, CleanupFailureKind, CleanupFailures, ContextError};
pub use group::AsyncContextGroup;
pub use resource::AsyncContext;
pub use stack::{AsyncExitStack, ContextConfig, DEFAULT_CLEANUP_TIMEOUT};
