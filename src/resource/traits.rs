//! The [`AsyncResource`] trait: something with an async open, an async close and a health check.

use std::future::Future;

/// A resource with an async lifecycle: opened from its config, checked for health, closed.
///
/// A [`ResourceHandle`](super::ResourceHandle) hosts one in a supervised actor; an
/// [`AsyncResourcePool`](super::AsyncResourcePool) pools many through
/// [`ResourceManager`](super::ResourceManager). Implement it with plain `async fn`s:
///
/// ```
/// use uno_runtime::resource::AsyncResource;
///
/// struct Socket { peer: String }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("socket error: {0}")]
/// struct SocketError(String);
///
/// impl AsyncResource for Socket {
///     type Config = String;
///     type Error = SocketError;
///     async fn open(peer: &String) -> Result<Self, SocketError> {
///         Ok(Socket { peer: peer.clone() })
///     }
///     async fn close(self) {}
///     async fn health_check(&mut self) -> Result<(), SocketError> {
///         if self.peer.is_empty() { Err(SocketError("no peer".into())) } else { Ok(()) }
///     }
/// }
/// ```
pub trait AsyncResource: Sized + Send + 'static {
    /// What [`open`](Self::open) needs; kept by the node to reopen after a restart.
    type Config: Send + Sync + 'static;
    /// The error of `open` and `health_check`.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a resource.
    ///
    /// # Cancel safety
    /// Implementations decide; uno never cancels an open except when its node is killed.
    ///
    /// # Errors
    /// Whatever prevents opening it. In a resource actor, an error is a failed start of the
    /// node; in a pool, it is kept as the pool's last connection error.
    fn open(config: &Self::Config) -> impl Future<Output = Result<Self, Self::Error>> + Send;

    /// Closes the resource. Called once, when its node stops or restarts, or when a pool
    /// discards it.
    ///
    /// # Cancel safety
    /// Implementations decide; uno awaits it to the end unless the node is killed.
    fn close(self) -> impl Future<Output = ()> + Send;

    /// Checks that the resource still works.
    ///
    /// # Cancel safety
    /// Should be cancel safe: uno abandons a check that exceeds its timeout.
    ///
    /// # Errors
    /// An error means the resource is unusable: a resource actor fails (its supervisor
    /// restarts it with a fresh resource) and a pool discards the connection.
    fn health_check(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether the resource is known to be unusable without doing any I/O (for example its
    /// socket is closed). A pool discards such a resource when it is returned. Default: `false`.
    fn is_broken(&mut self) -> bool {
        false
    }
}
