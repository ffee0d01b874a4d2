//! A long-running service under `run_application`: it runs until SIGINT or SIGTERM, then runs
//! its shutdown hooks in reverse order and prints its shutdown report.
//!
//! ```text
//! cargo run --example service          # Ctrl-C to stop; twice to force
//! SERVICE_FAIL_STARTUP=cache cargo run --example service   # a failing startup hook
//! SERVICE_SLOW_SHUTDOWN_MS=5000 ...    # a slow shutdown hook (to try a second signal)
//! ```
//!
//! Every hook prints one line `startup hook <name> ran` / `shutdown hook <name> ran` on stdout;
//! `service ready` once started.

use std::process::ExitCode;
use std::time::Duration;

use uno_runtime::actors::{Restart, RestartBackoff, Shutdown};
use uno_runtime::app::{run_application, AppConfig};
use uno_runtime::task::{as_task, spawn_task};

fn hook_fails(name: &str) -> bool {
    std::env::var("SERVICE_FAIL_STARTUP").is_ok_and(|v| v == name)
}

#[tokio::main]
async fn main() -> ExitCode {
    let slow_ms: u64 = std::env::var("SERVICE_SLOW_SHUTDOWN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    run_application(AppConfig::default(), move |app| {
        for name in ["config", "db", "cache"] {
            app.on_startup(name, move |_ctx| async move {
                if hook_fails(name) {
                    println!("startup hook {name} failed");
                    return Err(std::io::Error::other(format!("{name} is unavailable")));
                }
                println!("startup hook {name} ran");
                Ok(())
            });
            app.on_shutdown(name, move |_ctx| async move {
                if name == "db" && slow_ms > 0 {
                    println!("shutdown hook {name} is slow");
                    tokio::time::sleep(Duration::from_millis(slow_ms)).await;
                }
                println!("shutdown hook {name} ran");
                Ok::<_, std::io::Error>(())
            });
        }
        app.on_startup("heartbeat", |ctx| async move {
            let spec = as_task("heartbeat", |ctx| async move {
                let mut beats = 0u64;
                loop {
                    tokio::select! {
                        _ = ctx.cancelled() => return Ok::<_, std::io::Error>(()),
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {
                            beats += 1;
                            ctx.stats().set("beats", beats);
                        }
                    }
                }
            })
            .restart(Restart::Permanent)
            .backoff(RestartBackoff::default())
            .shutdown(Shutdown::Timeout(Duration::from_secs(2)));
            spawn_task(ctx.manager(), spec).await?;
            println!("startup hook heartbeat ran");
            println!("service ready");
            Ok::<_, uno_runtime::task::TaskError>(())
        });
    })
    .await
}
