//! `AsyncCache`: a concurrent cache whose reads are one map read and an expiry check.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::cache::{AsyncCache, CacheError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users: AsyncCache<u64, String> = AsyncCache::builder("users")
//!     .ttl(Duration::from_secs(60))
//!     .max_capacity(10_000)
//!     .refresh_before(Duration::from_secs(10))
//!     .max_stale(Duration::from_secs(30))
//!     .build()?;
//!
//! // A miss runs the loader once, however many callers miss the key at the same time.
//! let name = users
//!     .get_with(7, || async { Ok::<_, std::io::Error>("ada".to_string()) })
//!     .await?;
//! assert_eq!(name, "ada");
//!
//! // A hit is a plain concurrent-map read: no mailbox, no lock shared by all readers.
//! assert_eq!(users.get(&7).as_deref(), Some("ada"));
//! users.invalidate(&7);
//! assert_eq!(users.get(&7), None);
//! assert_eq!(users.stats().loads, 1);
//! # let _: Option<CacheError<std::io::Error>> = None;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - **Reads** ([`AsyncCache::get`], and hits of [`AsyncCache::get_with`]) take one
//!   shard read lock of a [`dashmap::DashMap`], compare the entry's expiry with the
//!   clock, set the entry's CLOCK reference bit if it is clear (a relaxed load, rarely a
//!   store) and bump a per-thread striped hit counter. There is no global lock, no
//!   queue of access events and no mailbox.
//! - **Eviction** is CLOCK (second chance) over per-shard rings of keys maintained by
//!   inserts only. When an insert of a new key exceeds `max_capacity`, the hand sweeps a
//!   ring: referenced entries lose their bit and are spared once, the first
//!   unreferenced (or long expired) entry is evicted.
//! - **Loads** are single flight per key: the first miss spawns the loader in a task
//!   tracked by the cache; concurrent misses of that key await the same result. Errors
//!   need not be `Clone`: waiters share them through an `Arc<E>`.
//! - **Refresh-ahead**: a `get_with` hit within `refresh_before` of expiry returns the
//!   current value and starts one background refresh of that key.
//! - **Stale on error**: when a reload fails, the old value is served up to `max_stale`
//!   past its expiry; beyond that the key is a miss and the error reaches the caller.
//! - **Invalidation** (`invalidate`, `invalidate_if`, `clear`, `insert`) cancels the
//!   in-flight load or refresh of those keys, so an older load never overwrites a newer
//!   state. Dropping the last handle, or [`AsyncCache::close`], aborts every load task.

mod clock;
mod config;
mod counter;
mod error;
mod node;
mod stats;
mod store;

pub use config::{AsyncCacheBuilder, CacheConfig};
pub use error::{CacheConfigError, CacheError};
pub use node::{CacheNode, CacheNodeMsg, CacheNodeState};
pub use stats::CacheStats;
pub use store::AsyncCache;
