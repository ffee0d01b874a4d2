//! Resilience: retry, time limits, cancellation, rate and concurrency limits, circuit
//! breaking and backpressure, for any future.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::resilience::{retry, CircuitBreaker, ResilienceExt, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder().max_attempts(3).build()?;
//! let breaker = CircuitBreaker::builder("inventory").build()?;
//! let stock = retry(&policy, || async {
//!     let lookup = async { Ok::<u32, std::io::Error>(12) };
//!     breaker
//!         .call(lookup.timeout_handler("inventory", Duration::from_secs(2)))
//!         .await
//! })
//! .await??; // retry and breaker errors, then the lookup's own
//! assert_eq!(stock, 12);
//! # Ok(())
//! # }
//! ```

pub mod backpressure;
pub mod circuit_breaker;
pub mod combinators;
pub mod error;
pub mod retry;

pub use backpressure::{AdmissionGate, AdmissionGateBuilder, AdmissionPermit, GateStats};
pub use circuit_breaker::{BreakerPermit, BreakerState, BreakerStats, CircuitBreaker, CircuitBreakerBuilder};
pub use combinators::{cancellable_fn, concurrent_limited_fn, rate_limited_fn, timeout_fn, ResilienceExt};
pub use error::{BreakerError, Cancelled, ConfigError, Overloaded, RetryError};
pub use retry::{retry, retry_cancellable, RetryPolicy, RetryPolicyBuilder};
