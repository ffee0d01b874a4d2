//! Concurrency primitives for plain async code and for code inside actors.
//!
//! Each primitive has a name (used in every error message), keeps its counters in atomics
//! and reports them through `stats()`.
//!
//! | primitive | what it bounds |
//! |---|---|
//! | [`AsyncLock`] | exclusive access, with holder tracking and deadlock detection |
//! | [`AsyncSemaphore`] | a counted resource, with RAII permits |
//! | [`AsyncEvent`] | nothing: a flag to wait for |
//! | [`Limiter`] | how many run at once |
//! | [`RateLimiter`], [`KeyedRateLimiter`] | how many start per second |
//! | [`timeout()`] | how long one operation runs |
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::{timeout, Limiter, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::new("crawler", 8)?;
//! let rate = RateLimiter::new("crawler-rate", 20.0, 5)?;
//! rate.acquire(1).await?;
//! let body = timeout("fetch", Duration::from_secs(5), limiter.run(async { "ok" })).await?;
//! assert_eq!(body, "ok");
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod event;
pub mod limiter;
pub mod lock;
pub mod rate_limiter;
pub mod semaphore;
pub(crate) mod stats;
pub mod timeout;

pub use error::{ConfigError, SyncError, Timeout};
pub use event::{AsyncEvent, EventStats};
pub use limiter::{Limiter, LimiterPermit, LimiterStats};
pub use lock::{
    current_node_path, scope_node_path, AsyncLock, AsyncLockBuilder, AsyncLockGuard, DeadlockEdge, HolderInfo,
    LockOwner, LockStats,
};
pub use rate_limiter::{KeyedRateLimiter, RateLimiter, RateLimiterStats, TokioClock};
pub use semaphore::{AsyncSemaphore, AsyncSemaphorePermit, SemaphoreStats};
pub use timeout::timeout;
