//! [`timeout()`]: a time limit whose error names the operation, the limit and the time spent.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::sync::timeout;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let err = timeout("fetch profile", Duration::from_millis(50), std::future::pending::<()>())
//!     .await
//!     .unwrap_err();
//! assert_eq!(err.limit, Duration::from_millis(50));
//! assert!(err.to_string().contains("fetch profile"));
//! # }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

pub use super::error::Timeout;

/// Runs `fut` for at most `limit`.
///
/// # Cancel safety
/// As cancel safe as `fut`: dropping this drops `fut`.
///
/// # Errors
/// [`Timeout`] naming `operation`, `limit` and the elapsed time when the limit passes; `fut`
/// is dropped then.
pub async fn timeout<F: Future>(
    operation: impl Into<Cow<'static, str>>,
    limit: Duration,
    fut: F,
) -> Result<F::Output, Timeout> {
    let start = Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => Ok(out),
        Err(_) => Err(Timeout::new(operation, limit, start.elapsed())),
    }
}
