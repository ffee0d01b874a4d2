//! Combinators for any future ([`ResilienceExt`]) or any `Fn() -> Future` closure
//! ([`timeout_fn`], [`cancellable_fn`], [`rate_limited_fn`], [`concurrent_limited_fn`]).
//!
//! They compose in any order; the order is the order of the checks: in
//! `fut.rate_limited(r).concurrent_limited(l)` the token is taken first, then the slot.
//! `rate_limited` and `concurrent_limited` never fail (they wait); `timeout_handler` and
//! `cancellable` wrap the output in a `Result`.
//!
//! ```
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//! use uno_runtime::resilience::ResilienceExt;
//! use uno_runtime::sync::{Limiter, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rate = RateLimiter::new("search", 10.0, 1)?;
//! let slots = Limiter::new("search", 2)?;
//! let token = CancellationToken::new();
//! let hits = async { 7 }
//!     .rate_limited(rate.clone())
//!     .concurrent_limited(slots.clone())
//!     .timeout_handler("search", Duration::from_secs(1))
//!     .cancellable(token.clone())
//!     .await??;
//! assert_eq!(hits, 7);
//! let fallback = std::future::pending::<u32>()
//!     .timeout_handler_or("slow search", Duration::from_millis(10), |_timeout| 0)
//!     .await;
//! assert_eq!(fallback, 0);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::error::Cancelled;
use crate::sync::{timeout, Limiter, RateLimiter, Timeout};

/// Resilience combinators for every future.
pub trait ResilienceExt: Future + Sized {
    /// Fails with [`Timeout`] (naming `operation`, `limit` and the elapsed time) if the
    /// future does not finish within `limit`; the future is dropped then.
    ///
    /// # Cancel safety
    /// As cancel safe as the future it wraps.
    ///
    /// # Errors
    /// [`Timeout`] naming `operation`, `limit` and the elapsed time.
    fn timeout_handler(
        self,
        operation: impl Into<Cow<'static, str>>,
        limit: Duration,
    ) -> impl Future<Output = Result<Self::Output, Timeout>> {
        timeout(operation, limit, self)
    }

    /// Like [`timeout_handler`](Self::timeout_handler), but returns `fallback(timeout)`
    /// instead of the error.
    ///
    /// # Cancel safety
    /// As cancel safe as the future it wraps.
    ///
    /// # Errors
    /// None: a timeout becomes `fallback`'s value.
    fn timeout_handler_or<G>(
        self,
        operation: impl Into<Cow<'static, str>>,
        limit: Duration,
        fallback: G,
    ) -> impl Future<Output = Self::Output>
    where
        G: FnOnce(Timeout) -> Self::Output,
    {
        let operation = operation.into();
        async move { timeout(operation, limit, self).await.unwrap_or_else(fallback) }
    }

    /// Fails with [`Cancelled`] as soon as `token` is cancelled (at once if it already is);
    /// the future is dropped then.
    ///
    /// # Cancel safety
    /// As cancel safe as the future it wraps.
    ///
    /// # Errors
    /// [`Cancelled`] when the token fires first.
    fn cancellable(self, token: CancellationToken) -> impl Future<Output = Result<Self::Output, Cancelled>> {
        async move {
            tokio::select! {
                biased;
                () = token.cancelled() => Err(Cancelled),
                out = self => Ok(out),
            }
        }
    }

    /// Waits for one token of `limiter` before the future starts.
    ///
    /// # Cancel safety
    /// Dropped while waiting, it takes no token; after that, as cancel safe as the future.
    ///
    /// # Errors
    /// None: it waits (one token never exceeds a burst, which is at least 1).
    fn rate_limited(self, limiter: RateLimiter) -> impl Future<Output = Self::Output> {
        async move {
            limiter.acquire_one().await;
            self.await
        }
    }

    /// Runs the future inside a slot of `limiter`, waiting for one first.
    ///
    /// # Cancel safety
    /// Dropped at any point, it frees its slot (or its place in the queue); the future's own
    /// cancel safety is its own.
    ///
    /// # Errors
    /// None: it waits as long as it takes.
    fn concurrent_limited(self, limiter: Limiter) -> impl Future<Output = Self::Output> {
        async move { limiter.run(self).await }
    }
}

impl<F: Future> ResilienceExt for F {}

/// Wraps `f` so every call is bounded by `limit` (see [`ResilienceExt::timeout_handler`]).
pub fn timeout_fn<F, Fut>(
    operation: impl Into<Cow<'static, str>>,
    limit: Duration,
    f: F,
) -> impl Fn() -> BoxFuture<'static, Result<Fut::Output, Timeout>> + Send + Sync + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
{
    let operation: Cow<'static, str> = operation.into();
    move || Box::pin(f().timeout_handler(operation.clone(), limit))
}

/// Wraps `f` so every call fails with [`Cancelled`] once `token` fires.
pub fn cancellable_fn<F, Fut>(
    token: CancellationToken,
    f: F,
) -> impl Fn() -> BoxFuture<'static, Result<Fut::Output, Cancelled>> + Send + Sync + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
{
    move || Box::pin(f().cancellable(token.clone()))
}

/// Wraps `f` so every call first waits for a token of `limiter`.
pub fn rate_limited_fn<F, Fut>(
    limiter: RateLimiter,
    f: F,
) -> impl Fn() -> BoxFuture<'static, Fut::Output> + Send + Sync + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
{
    let f = Arc::new(f);
    move || {
        let f = Arc::clone(&f);
        let limiter = limiter.clone();
        Box::pin(async move {
            limiter.acquire_one().await;
            f().await
        })
    }
}

/// Wraps `f` so every call runs inside a slot of `limiter`.
pub fn concurrent_limited_fn<F, Fut>(
    limiter: Limiter,
    f: F,
) -> impl Fn() -> BoxFuture<'static, Fut::Output> + Send + Sync + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
{
    let f = Arc::new(f);
    move || {
        let f = Arc::clone(&f);
        let limiter = limiter.clone();
        Box::pin(async move {
            let _slot = limiter.acquire_slot().await;
            f().await
        })
    }
}
