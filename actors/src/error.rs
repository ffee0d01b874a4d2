//! Error types of the kernel. Every message names the node (by path) or the parameter at fault.

use std::time::Duration;

/// Invalid configuration, reported when a spec or policy is built, before anything runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A child name is empty.
    #[error("child name is empty (under {parent})")]
    EmptyName {
        /// Path of the supervisor the child was meant for.
        parent: String,
    },
    /// A child name contains `/`, which separates path segments.
    #[error("child name {name:?} contains '/' (under {parent})")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Path of the supervisor the child was meant for.
        parent: String,
    },
    /// Two children of one supervisor share a name.
    #[error("duplicate child name {name:?} under {parent}")]
    DuplicateName {
        /// The repeated name.
        name: String,
        /// Path of the supervisor.
        parent: String,
    },
    /// An intensity with a zero period would make every restart exceed it.
    #[error("restart intensity period is zero (max_restarts = {max_restarts})")]
    ZeroPeriod {
        /// The `max_restarts` given with the zero period.
        max_restarts: u32,
    },
    /// A significant child must be `Transient` or `Temporary` (as in OTP).
    #[error("child {name:?} is significant but permanent; significant children must be transient or temporary")]
    SignificantPermanent {
        /// The child's name.
        name: String,
    },
    /// The backoff parameters are invalid.
    #[error(transparent)]
    Backoff(#[from] crate::backoff::BackoffError),
}

/// Errors from supervisor operations (spawning and managing children).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The spec was invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The child's actor failed to start (`pre_start` returned an error or panicked).
    #[error("child {path} failed to start: {error}")]
    StartFailed {
        /// Path of the child.
        path: String,
        /// The start error.
        error: String,
    },
    /// The supervisor is stopping or has stopped and accepts no more requests.
    #[error("supervisor {path} is stopped or shutting down")]
    SupervisorStopped {
        /// Path of the supervisor.
        path: String,
    },
    /// No child of that name.
    #[error("no child named {name:?} under {parent}")]
    NoSuchChild {
        /// The name asked for.
        name: String,
        /// Path of the supervisor.
        parent: String,
    },
    /// The child is running, and the operation needs it stopped (`restart_child`, `delete_child`).
    #[error("child {path} is running")]
    ChildRunning {
        /// Path of the child.
        path: String,
    },
    /// The manager has stopped.
    #[error("the manager {name:?} has stopped")]
    ManagerStopped {
        /// Name of the manager's root.
        name: String,
    },
    /// The supervisor did not answer (it is restarting, or stopped while handling the request).
    #[error(transparent)]
    Unreachable(#[from] RefError),
}

/// Errors from a [`SupervisedRef`](crate::SupervisedRef).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// The node is gone for good: deleted, terminated, or its manager shut down.
    #[error("node {path} has stopped")]
    NodeStopped {
        /// Path of the node.
        path: String,
    },
    /// The node was not started yet (its spec was never spawned).
    #[error("node {name:?} was never started")]
    NotStarted {
        /// Name from the spec.
        name: String,
    },
    /// The node stayed down (restarting or in backoff) longer than the ref's restart wait.
    #[error("node {path} is restarting and did not come back within {waited:?}")]
    RestartTimeout {
        /// Path of the node.
        path: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The call was delivered but the actor stopped or failed before replying.
    #[error("node {path} stopped before replying to a call")]
    NoReply {
        /// Path of the node.
        path: String,
    },
    /// The call was not answered within its timeout.
    #[error("call to node {path} timed out after {limit:?}")]
    CallTimeout {
        /// Path of the node.
        path: String,
        /// The timeout given to `call_timeout`.
        limit: Duration,
    },
}

/// A failed cast: why, and the message itself so that it is not lost.
pub struct CastError<M> {
    /// Why the message was not delivered.
    pub reason: RefError,
    /// The undelivered message, handed back to the sender.
    pub message: M,
}

impl<M> CastError<M> {
    /// The undelivered message.
    pub fn into_message(self) -> M {
        self.message
    }
}

impl<M> std::fmt::Debug for CastError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CastError")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<M> std::fmt::Display for CastError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cast not delivered: {}", self.reason)
    }
}

impl<M> std::error::Error for CastError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// A supervisor gave up: its children failed more often than its intensity allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("supervisor {path} exceeded its restart intensity ({max_restarts} restarts in {period:?}); last failure: {last_failure}")]
pub struct EscalationError {
    /// Path of the supervisor that gave up.
    pub path: String,
    /// The intensity's `max_restarts`.
    pub max_restarts: u32,
    /// The intensity's period.
    pub period: Duration,
    /// `path: error` of the child failure that exceeded the intensity.
    pub last_failure: String,
}
