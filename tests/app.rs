//! run_application end to end: the `service` example in a child process, and in process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use uno_runtime::actors::ManagerConfig;
use uno_runtime::app::{run_application, AppConfig, EXIT_STARTUP_FAILED};

/// The `service` example binary: built by `cargo test` beside the tests, or built here.
fn service_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir")
        .to_path_buf();
    let bin = profile_dir.join("examples").join("service");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "--example", "service", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .expect("run cargo build --example service");
        assert!(status.success(), "cargo build --example service failed");
    }
    bin
}

struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Service {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(service_binary());
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the service example");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one equals `want` (or the output ends).
    fn wait_for(&mut self, want: &str) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(60)) {
            let done = line == want;
            self.seen.push(line);
            if done {
                return;
            }
        }
        panic!("no line {want:?} in {:?}", self.seen);
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn finish(mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().expect("wait for the service");
        self.seen.extend(self.lines.iter());
        (status.code().unwrap_or(-1), self.seen)
    }
}

fn hooks(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.strip_suffix(" ran"))
        .map(str::to_string)
        .collect()
}

#[test]
fn sigterm_shuts_down_cleanly_with_hooks_in_reverse_order() {
    let mut svc = Service::start(&[]);
    svc.wait_for("service ready");
    svc.signal("-TERM");
    let (code, lines) = svc.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(hooks(&lines, "startup hook "), ["config", "db", "cache", "heartbeat"]);
    assert_eq!(hooks(&lines, "shutdown hook "), ["cache", "db", "config"]);
}

#[test]
fn a_second_signal_during_shutdown_exits_with_1() {
    let mut svc = Service::start(&[("SERVICE_SLOW_SHUTDOWN_MS", "60000")]);
    svc.wait_for("service ready");
    svc.signal("-TERM");
    svc.wait_for("shutdown hook db is slow");
    svc.signal("-INT");
    let (code, lines) = svc.finish();
    assert_eq!(code, 1, "{lines:?}");
    assert!(!hooks(&lines, "shutdown hook ").contains(&"config".to_string()));
}

#[test]
fn a_failing_startup_hook_aborts_startup() {
    let svc = Service::start(&[("SERVICE_FAIL_STARTUP", "cache")]);
    let (code, lines) = svc.finish();
    assert_eq!(code, i32::from(EXIT_STARTUP_FAILED), "{lines:?}");
    assert_eq!(hooks(&lines, "startup hook "), ["config", "db"]);
    // Only the shutdown hooks registered before the failing hook run, in reverse.
    assert_eq!(hooks(&lines, "shutdown hook "), ["db", "config"]);
}

#[tokio::test]
async fn an_escalation_ends_the_application_with_a_non_zero_code() {
    let baseline = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let config = AppConfig {
        handle_signals: false,
        print_report: false,
        manager: ManagerConfig::default(),
        ..AppConfig::default()
    };
    let code = run_application(config, |app| {
        app.on_startup("crasher", |ctx| async move {
            let spec = uno_runtime::task::as_task("crasher", |_ctx| async {
                Err::<(), _>(std::io::Error::other("always fails"))
            })
            .backoff(uno_runtime::actors::RestartBackoff::immediate());
            uno_runtime::task::spawn_task(ctx.manager(), spec).await?;
            Ok::<_, uno_runtime::task::TaskError>(())
        });
    })
    .await;
    assert_eq!(code, std::process::ExitCode::from(uno_runtime::app::EXIT_ESCALATION));
    for _ in 0..1000 {
        if tokio::runtime::Handle::current().metrics().num_alive_tasks() == baseline {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        baseline,
        "no orphan tasks after shutdown"
    );
}
