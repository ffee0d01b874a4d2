#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use uno_actors as actors;

pub mod app;
pub mod batch;
pub mod cache;
pub mod context;
pub mod db;
pub mod resilience;
pub mod resource;
pub mod sync;
pub mod task;

/// The types most programs use, in one import.
pub mod prelude {
    pub use crate::resilience::{
        retry, AdmissionGate, BreakerState, CircuitBreaker, Overloaded, ResilienceExt, RetryError, RetryPolicy,
    };
    pub use crate::sync::{
        timeout, AsyncEvent, AsyncLock, AsyncSemaphore, KeyedRateLimiter, Limiter, RateLimiter, SyncError, Timeout,
    };
}
