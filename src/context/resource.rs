//! [`AsyncContext`]: anything with an async open and an async close.

use std::future::Future;

use super::BoxError;

/// A resource with an async open and an async close, entered through an
/// [`AsyncExitStack`](super::AsyncExitStack) or an
/// [`AsyncContextGroup`](super::AsyncContextGroup).
///
/// Both take `&self`: the stack keeps an `Arc` of the resource to close it, while the
/// caller uses another.
pub trait AsyncContext: Send + Sync + 'static {
    /// The error of open and close.
    type Error: Into<BoxError> + Send + 'static;

    /// The name used in errors and logs (the type's name by default).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Opens (enters) the resource.
    fn open(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Closes (exits) the resource. Runs once, after a successful open.
    fn close(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
