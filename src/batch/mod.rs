//! `AsyncBatcher`: collects items submitted concurrently into batches for one batch
//! function, and gives each caller its own result.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::batch::AsyncBatcher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One query for many lookups: the batch function gets every queued id at once.
//! let lengths = AsyncBatcher::builder("lengths")
//!     .max_batch_size(100)
//!     .max_wait(Duration::from_millis(5))
//!     .build(|words: Vec<String>| async move {
//!         Ok::<_, std::io::Error>(words.iter().map(|w| w.len()).collect())
//!     })?;
//!
//! let (a, b) = tokio::join!(lengths.submit("tokio".into()), lengths.submit("otp".into()));
//! assert_eq!((a?, b?), (5, 3));
//! assert_eq!(lengths.stats().batches, 1);
//! lengths.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Rules
//!
//! - A batch is flushed when `max_batch_size` items are queued, or `max_wait` after the
//!   oldest queued item arrived; at most `max_concurrent` batches run at once.
//! - The queue is bounded: `submit` waits for room (backpressure), or fails with
//!   [`BatchError::Overloaded`] after the overload timeout.
//! - Result `i` of the batch function goes to the caller of item `i`. A result of the
//!   wrong length fails the batch with [`BatchError::WrongLength`] naming both lengths;
//!   a batch error reaches every caller of that batch through an `Arc` (errors need
//!   not be `Clone`); a panicking batch function gives its callers
//!   [`BatchError::Panicked`], never silence, and later batches run normally.
//! - A caller dropped before a batch took its item removes the item.
//! - [`AsyncBatcher::shutdown`] refuses new items, flushes every queued one and waits
//!   for running batches: nothing is lost.
//! - Dedup mode ([`AsyncBatcherBuilder::build_dedup`]), as a DataLoader: identical items
//!   of one batch are passed to the batch function once.
//!
//! Without a manager, the batcher runs its own flush loop (a panicking batch function is
//! caught, its callers get the error, later batches run). As a node of the tree
//! ([`AsyncBatcher::worker_spec`], [`BatcherNode`]) the node owns the flush loop: a
//! panicking batch function answers its callers with the error and then fails the
//! node, and its supervisor restarts it. The queue lives outside the loop, so the items
//! queued across the restart are served by the next incarnation; a final stop of the
//! node flushes the queue.

mod batcher;
mod config;
mod error;
mod node;
mod stats;

pub use batcher::{AsyncBatcher, AsyncBatcherBuilder};
pub use config::BatcherConfig;
pub use error::{BatchError, BatcherConfigError};
pub use node::{BatchPanic, BatcherNode, BatcherNodeMsg, BatcherNodeState};
pub use stats::BatcherStats;
