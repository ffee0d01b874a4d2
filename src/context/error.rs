//! Errors of the context module.

use std::fmt;
use std::time::Duration;

/// A boxed error from a resource's open or close.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How one cleanup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanupFailureKind {
    /// The cleanup returned an error.
    #[error("{0}")]
    Error(BoxError),
    /// The cleanup did not finish within the per-cleanup timeout (it was dropped).
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The cleanup panicked (the panic was caught; the other cleanups still ran).
    #[error("panicked: {0}")]
    Panicked(String),
}

/// One failed cleanup: which resource, and how.
#[derive(Debug, thiserror::Error)]
#[error("closing `{resource}` {kind}")]
pub struct CleanupFailure {
    /// The name the resource was entered under.
    pub resource: String,
    /// What went wrong.
    #[source]
    pub kind: CleanupFailureKind,
}

/// The failed cleanups of one close, in the order they ran (reverse entry order).
#[derive(Debug, Default)]
pub struct CleanupFailures(pub Vec<CleanupFailure>);

impl fmt::Display for CleanupFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &c.kind {
                CleanupFailureKind::Error(e) => write!(f, "`{}` failed: {e}", c.resource)?,
                CleanupFailureKind::TimedOut(d) => write!(f, "`{}` timed out after {d:?}", c.resource)?,
                CleanupFailureKind::Panicked(m) => write!(f, "`{}` panicked: {m}", c.resource)?,
            }
        }
        Ok(())
    }
}

/// Why entering or closing a group of async resources failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// Opening one resource failed; the resources entered before it were closed (in
    /// reverse order), and any of those closes that failed are listed.
    #[error("context `{context}`: entering `{resource}` failed: {source}{}", cleanup_suffix(.cleanup))]
    Enter {
        /// The stack's or group's name.
        context: String,
        /// The resource whose open failed.
        resource: String,
        /// The open's error.
        source: BoxError,
        /// Cleanups of the already entered resources that failed.
        cleanup: CleanupFailures,
    },
    /// One or more cleanups failed; every cleanup ran regardless.
    #[error("context `{context}`: {} of {total} cleanups failed: {failures}", .failures.0.len())]
    Cleanup {
        /// The stack's or group's name.
        context: String,
        /// How many cleanups ran.
        total: usize,
        /// The failures, in the order the cleanups ran.
        failures: CleanupFailures,
    },
}

fn cleanup_suffix(c: &CleanupFailures) -> String {
    if c.0.is_empty() {
        String::new()
    } else {
        format!(" (and closing the entered resources: {c})")
    }
}
