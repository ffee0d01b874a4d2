//! Errors of the `resource` module. Every message names the node (its path) and the limit hit.

use std::time::Duration;

use uno_actors::{RefError, SupervisorError};

/// Errors from resource actors ([`ResourceHandle`](super::ResourceHandle)) and pools
/// ([`AsyncResourcePool`](super::AsyncResourcePool)).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// The resource node could not run the call: it stopped, stayed down longer than the
    /// restart wait, or failed (a panic in the closure) before answering.
    #[error("resource {path}: call failed: {reason}")]
    Call {
        /// Path of the resource node (or its name before its first start).
        path: String,
        /// What the kernel reported.
        reason: RefError,
    },
    /// The call did not finish within the caller's limit.
    #[error("resource {path}: call did not finish within {limit:?}")]
    CallTimeout {
        /// Path of the resource node.
        path: String,
        /// The limit given to `call_timeout`.
        limit: Duration,
    },
    /// No connection could be checked out of the pool within its acquire timeout.
    #[error(
        "pool {pool}: no connection within {timeout:?} (size {size}/{max_size}, in use {in_use}, \
         idle {idle}, waiters {waiters}); last connection error: {}",
        last_error.as_deref().unwrap_or("none")
    )]
    AcquireTimeout {
        /// Path of the pool node.
        pool: String,
        /// The pool's acquire timeout.
        timeout: Duration,
        /// Open connections when the wait ended.
        size: u32,
        /// The pool's maximum size.
        max_size: u32,
        /// Connections checked out when the wait ended.
        in_use: u32,
        /// Idle connections when the wait ended.
        idle: u32,
        /// Other callers still waiting for a connection.
        waiters: u64,
        /// The last error reported while opening or validating a connection, if any.
        last_error: Option<String>,
    },
    /// The pool was closed (its node stopped) while the caller waited, or it is down and did
    /// not come back within the acquire timeout.
    #[error("pool {pool} is closed{}", if *restarting { " (restarting; no new pool within the acquire timeout)" } else { "" })]
    PoolClosed {
        /// Path of the pool node.
        pool: String,
        /// Whether the node may still come back (it was down, not stopped for good).
        restarting: bool,
    },
    /// A pool or resource configuration is invalid.
    #[error("invalid configuration for {name}: {problem}")]
    InvalidConfig {
        /// Name of the node being configured.
        name: String,
        /// What is wrong, with the values at fault.
        problem: String,
    },
    /// Spawning the node failed (for example its first open or pre-warm failed).
    #[error(transparent)]
    Spawn(#[from] SupervisorError),
}
