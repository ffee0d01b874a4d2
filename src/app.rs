//! [`run_application`]: the lifecycle of a service around one supervision tree.
//!
//! 1. Starts the [`AsyncManager`] and installs SIGINT and SIGTERM handlers.
//! 2. Runs the startup hooks in registration order. A failing hook (an error, a panic, or its
//!    timeout) aborts startup: the shutdown hooks registered *before* it run (in reverse), the
//!    tree is shut down, and the exit code is [`EXIT_STARTUP_FAILED`].
//! 3. Waits for SIGINT/SIGTERM, a shutdown request ([`AppHandle::request_shutdown`]), or the
//!    end of the tree ([`AsyncManager::shutdown`] called from inside, or an escalation).
//! 4. Runs every shutdown hook in reverse registration order, each bounded by the hook timeout
//!    and each even if an earlier one failed; then shuts the tree down (reverse start order,
//!    per-node timeouts, bounded by the shutdown timeout) and logs the [`ShutdownReport`].
//! 5. Returns [`EXIT_OK`] for a clean shutdown, [`EXIT_ESCALATION`] after an escalation, and
//!    [`EXIT_UNCLEAN`] when a node had to be killed or failed, or a shutdown hook failed.
//!
//! A second SIGINT/SIGTERM while shutting down exits the process at once with
//! [`EXIT_FORCED`] (1).
//!
//! ```no_run
//! use std::process::ExitCode;
//! use uno_runtime::app::{run_application, AppConfig};
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     run_application(AppConfig::default(), |app| {
//!         app.on_startup("db", |ctx| async move {
//!             println!("connecting; tree root is {}", ctx.manager().name());
//!             Ok::<_, std::io::Error>(())
//!         });
//!         app.on_shutdown("db", |_ctx| async move {
//!             println!("closing");
//!             Ok::<_, std::io::Error>(())
//!         });
//!     })
//!     .await
//! }
//! ```
//!
//! The lifecycle itself runs without signals too (here, a hook asks for the shutdown):
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use uno_runtime::app::{run_application, AppConfig};
//!
//! let config = AppConfig { handle_signals: false, ..AppConfig::default() };
//! let code = run_application(config, |app| {
//!     app.on_startup("done", |ctx| async move {
//!         ctx.handle().request_shutdown();
//!         Ok::<_, std::io::Error>(())
//!     });
//! })
//! .await;
//! assert_eq!(code, std::process::ExitCode::SUCCESS);
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use uno_actors::{AsyncManager, ExitReason, ManagerConfig, ShutdownReport};

use crate::task::error::{panic_message, BoxError};

/// Exit code of a clean shutdown.
pub const EXIT_OK: u8 = 0;
/// Exit code when a second signal forced the exit during shutdown.
pub const EXIT_FORCED: u8 = 1;
/// Exit code when the manager or a startup hook failed.
pub const EXIT_STARTUP_FAILED: u8 = 2;
/// Exit code after an escalation reached the root.
pub const EXIT_ESCALATION: u8 = 3;
/// Exit code when the shutdown was not clean: a node was killed or failed, or a shutdown hook
/// failed.
pub const EXIT_UNCLEAN: u8 = 4;

/// Errors of the `app` module, as logged for failing hooks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A hook returned an error.
    #[error("{phase} hook {hook:?} failed: {source}")]
    HookFailed {
        /// `startup` or `shutdown`.
        phase: &'static str,
        /// The hook's name.
        hook: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A hook panicked.
    #[error("{phase} hook {hook:?} panicked: {message}")]
    HookPanicked {
        /// `startup` or `shutdown`.
        phase: &'static str,
        /// The hook's name.
        hook: String,
        /// The panic message.
        message: String,
    },
    /// A hook ran past the hook timeout.
    #[error("{phase} hook {hook:?} did not finish within {limit:?}")]
    HookTimedOut {
        /// `startup` or `shutdown`.
        phase: &'static str,
        /// The hook's name.
        hook: String,
        /// The hook timeout.
        limit: Duration,
    },
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Configuration of [`run_application`].
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The supervision tree's configuration.
    pub manager: ManagerConfig,
    /// Bound on the tree's shutdown (default 30 s).
    pub shutdown_timeout: Duration,
    /// Bound on each hook (default 10 s).
    pub hook_timeout: Duration,
    /// Install SIGINT/SIGTERM handlers (default true).
    pub handle_signals: bool,
    /// Print the shutdown report to stderr besides logging it (default true).
    pub print_report: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            manager: ManagerConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            hook_timeout: Duration::from_secs(10),
            handle_signals: true,
            print_report: true,
        }
    }
}

/// Asks a running application to shut down. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AppHandle {
    token: CancellationToken,
}

impl AppHandle {
    /// Starts the graceful shutdown (as SIGTERM would).
    pub fn request_shutdown(&self) {
        self.token.cancel();
    }

    /// Whether a shutdown was requested.
    pub fn is_shutdown_requested(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// What hooks receive: the tree and the application's handle.
#[derive(Debug, Clone)]
pub struct AppContext {
    manager: AsyncManager,
    handle: AppHandle,
}

impl AppContext {
    /// The application's supervision tree.
    pub fn manager(&self) -> &AsyncManager {
        &self.manager
    }

    /// The handle to request the shutdown.
    pub fn handle(&self) -> &AppHandle {
        &self.handle
    }
}

type HookFn = Box<dyn FnOnce(AppContext) -> BoxFuture<'static, Result<(), BoxError>> + Send>;

enum Phase {
    Startup,
    Shutdown,
}

struct Hook {
    phase: Phase,
    name: String,
    run: HookFn,
}

/// The hooks of an application, registered by the `startup` closure of [`run_application`].
#[derive(Default)]
pub struct Lifecycle {
    hooks: Vec<Hook>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.hooks.iter().map(|h| h.name.as_str()).collect();
        f.debug_struct("Lifecycle").field("hooks", &names).finish()
    }
}

fn boxed<F, Fut, E>(f: F) -> HookFn
where
    F: FnOnce(AppContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    Box::new(move |ctx| {
        let fut = f(ctx);
        Box::pin(async move { fut.await.map_err(Into::into) })
    })
}

impl Lifecycle {
    /// Registers a startup hook; startup hooks run in registration order.
    pub fn on_startup<F, Fut, E>(&mut self, name: &str, hook: F) -> &mut Self
    where
        F: FnOnce(AppContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.hooks.push(Hook {
            phase: Phase::Startup,
            name: name.to_string(),
            run: boxed(hook),
        });
        self
    }

    /// Registers a shutdown hook; shutdown hooks run in reverse registration order. If a
    /// startup hook fails, only the shutdown hooks registered before it run.
    pub fn on_shutdown<F, Fut, E>(&mut self, name: &str, hook: F) -> &mut Self
    where
        F: FnOnce(AppContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.hooks.push(Hook {
            phase: Phase::Shutdown,
            name: name.to_string(),
            run: boxed(hook),
        });
        self
    }
}

async fn run_hook(phase: &'static str, hook: Hook, ctx: AppContext, limit: Duration) -> Result<(), AppError> {
    let name = hook.name;
    let fut = AssertUnwindSafe((hook.run)(ctx)).catch_unwind();
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(source))) => Err(AppError::HookFailed {
            phase,
            hook: name,
            source,
        }),
        Ok(Err(payload)) => Err(AppError::HookPanicked {
            phase,
            hook: name,
            message: panic_message(&*payload),
        }),
        Err(_) => Err(AppError::HookTimedOut {
            phase,
            hook: name,
            limit,
        }),
    }
}

struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn install() -> Result<Self, AppError> {
        let int = signal(SignalKind::interrupt()).map_err(|source| AppError::Signal {
            signal: "SIGINT",
            source,
        })?;
        let term = signal(SignalKind::terminate()).map_err(|source| AppError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        Ok(Self { int, term })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

async fn next_signal(signals: &mut Option<Signals>) -> &'static str {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Runs an application: see the [module docs](self) for the lifecycle and the exit codes.
/// `startup` registers the hooks on a [`Lifecycle`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future mid-way leaves the tree running without its shutdown
/// hooks having run.
///
/// # Errors
/// Reported through the returned exit code (and logged): see [`EXIT_STARTUP_FAILED`],
/// [`EXIT_ESCALATION`], [`EXIT_UNCLEAN`] and [`EXIT_FORCED`].
pub async fn run_application<S>(config: AppConfig, startup: S) -> ExitCode
where
    S: FnOnce(&mut Lifecycle),
{
    let manager = match AsyncManager::start(config.manager.clone()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the supervision tree");
            eprintln!("uno: cannot start the supervision tree: {e}");
            return ExitCode::from(EXIT_STARTUP_FAILED);
        }
    };
    let mut signals = None;
    if config.handle_signals {
        match Signals::install() {
            Ok(s) => signals = Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                eprintln!("uno: {e}");
                finish_tree(&manager, &config).await;
                return ExitCode::from(EXIT_STARTUP_FAILED);
            }
        }
    }
    let ctx = AppContext {
        manager: manager.clone(),
        handle: AppHandle::default(),
    };
    let mut lifecycle = Lifecycle::default();
    startup(&mut lifecycle);

    let mut shutdown_hooks: Vec<Hook> = Vec::new();
    let mut startup_error = None;
    let mut interrupted = None;
    for hook in lifecycle.hooks {
        match hook.phase {
            Phase::Shutdown => shutdown_hooks.push(hook),
            Phase::Startup if startup_error.is_none() && interrupted.is_none() => {
                let name = hook.name.clone();
                tracing::info!(hook = %name, "running startup hook");
                tokio::select! {
                    r = run_hook("startup", hook, ctx.clone(), config.hook_timeout) => {
                        if let Err(e) = r {
                            startup_error = Some(e);
                        }
                    }
                    s = next_signal(&mut signals) => interrupted = Some(s),
                }
            }
            // Hooks after a failure: their shutdown hooks are not "registered so far".
            Phase::Startup => {}
        }
        if startup_error.is_some() || interrupted.is_some() {
            break;
        }
    }

    let reason = if let Some(e) = &startup_error {
        tracing::error!(error = %e, "startup failed");
        eprintln!("uno: startup failed: {e}");
        "startup failed".to_string()
    } else if let Some(s) = interrupted {
        format!("{s} during startup")
    } else {
        tokio::select! {
            s = next_signal(&mut signals) => s.to_string(),
            _ = ctx.handle.token.cancelled() => "shutdown requested".to_string(),
            r = manager.wait() => match r {
                ExitReason::Shutdown => "the tree was shut down".to_string(),
                other => format!("the tree stopped: {other:?}"),
            },
        }
    };
    tracing::info!(%reason, "shutting down");
    eprintln!("uno: shutting down ({reason})");

    // A second signal while shutting down forces the exit.
    let forcer = signals.map(|mut s| {
        tokio::spawn(async move {
            let sig = s.next().await;
            eprintln!("uno: {sig} during shutdown: exiting at once");
            std::process::exit(i32::from(EXIT_FORCED));
        })
    });

    let mut hooks_failed = false;
    for hook in shutdown_hooks.into_iter().rev() {
        let name = hook.name.clone();
        tracing::info!(hook = %name, "running shutdown hook");
        if let Err(e) = run_hook("shutdown", hook, ctx.clone(), config.hook_timeout).await {
            hooks_failed = true;
            tracing::error!(error = %e, "shutdown hook failed");
            eprintln!("uno: {e}");
        }
    }
    let report = finish_tree(&manager, &config).await;
    if let Some(f) = forcer {
        f.abort();
    }
    let exit = manager.wait().await;
    let code = if startup_error.is_some() {
        EXIT_STARTUP_FAILED
    } else if !exit.is_clean() {
        tracing::error!(?exit, "the application ended by an escalation");
        EXIT_ESCALATION
    } else if !report.is_clean() || hooks_failed {
        EXIT_UNCLEAN
    } else {
        EXIT_OK
    };
    ExitCode::from(code)
}

async fn finish_tree(manager: &AsyncManager, config: &AppConfig) -> ShutdownReport {
    let report = manager.shutdown(config.shutdown_timeout).await;
    tracing::info!(clean = report.is_clean(), "{report}");
    if config.print_report {
        eprint!("{report}");
    }
    report
}
