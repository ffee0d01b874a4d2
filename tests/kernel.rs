//! The supervision contract, clause by clause (paused tokio time for anything about timing).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uno_runtime::actors::{
    AsyncManager, AutoShutdown, Backoff, BackoffError, ChildDefaults, ExitReason, Intensity, ManagerConfig, NodeKind,
    NodeStatus, RefError, Restart, RestartBackoff, Shutdown, SpecError, Strategy, SupervisedRef, SupervisorError,
    SupervisorSpec, TreeSnapshot, WorkerSpec,
};
use uno_runtime::actors::{CancellationToken, ChildContext};

type Log = Arc<Mutex<Vec<String>>>;

/// A worker that logs its starts and stops and fails on request.
struct Probe;

enum ProbeMsg {
    Ping(RpcReplyPort<u64>),
    Fail(String),
    Panic,
    StopNormally,
    Block(Duration),
    Count(RpcReplyPort<u64>),
    Add,
}

#[derive(Clone)]
struct ProbeArgs {
    name: String,
    log: Log,
    /// Fail this many starts (shared across incarnations).
    fail_starts: Arc<AtomicU32>,
    post_stop_fails: bool,
    incarnation: u64,
    token: CancellationToken,
    tokens: Arc<Mutex<Vec<(String, CancellationToken)>>>,
}

struct ProbeState {
    args: ProbeArgs,
    count: u64,
}

impl Actor for Probe {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ProbeArgs;

    async fn pre_start(&self, _: ActorRef<ProbeMsg>, args: ProbeArgs) -> Result<ProbeState, ActorProcessingErr> {
        if args
            .fail_starts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            args.log.lock().unwrap().push(format!("start-failed:{}", args.name));
            return Err(format!("{} refused to start", args.name).into());
        }
        args.log.lock().unwrap().push(format!("start:{}", args.name));
        args.tokens
            .lock()
            .unwrap()
            .push((args.name.clone(), args.token.clone()));
        Ok(ProbeState { args, count: 0 })
    }

    async fn handle(
        &self,
        me: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        s: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Ping(r) => {
                let _ = r.send(s.args.incarnation);
            }
            ProbeMsg::Fail(e) => return Err(e.into()),
            ProbeMsg::Panic => panic!("probe {} panicked on request", s.args.name),
            ProbeMsg::StopNormally => me.stop(Some("done".into())),
            ProbeMsg::Block(d) => tokio::time::sleep(d).await,
            ProbeMsg::Count(r) => {
                let _ = r.send(s.count);
            }
            ProbeMsg::Add => s.count += 1,
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<ProbeMsg>, s: &mut ProbeState) -> Result<(), ActorProcessingErr> {
        s.args.log.lock().unwrap().push(format!("stop:{}", s.args.name));
        if s.args.post_stop_fails {
            return Err(format!("{} could not flush", s.args.name).into());
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Kit {
    log: Log,
    tokens: Arc<Mutex<Vec<(String, CancellationToken)>>>,
}

impl Kit {
    fn worker(&self, name: &str) -> WorkerSpec<Probe> {
        self.worker_with(name, Arc::new(AtomicU32::new(0)), false)
    }

    fn worker_with(&self, name: &str, fail_starts: Arc<AtomicU32>, post_stop_fails: bool) -> WorkerSpec<Probe> {
        let (log, tokens, n) = (self.log.clone(), self.tokens.clone(), name.to_string());
        WorkerSpec::new(name, move |ctx: &ChildContext| {
            (
                Probe,
                ProbeArgs {
                    name: n.clone(),
                    log: log.clone(),
                    fail_starts: fail_starts.clone(),
                    post_stop_fails,
                    incarnation: ctx.incarnation(),
                    token: ctx.cancel_token().clone(),
                    tokens: tokens.clone(),
                },
            )
        })
        .backoff(RestartBackoff::immediate())
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn generous() -> Intensity {
    Intensity::new(100, Duration::from_secs(1)).unwrap()
}

async fn manager() -> AsyncManager {
    AsyncManager::start(ManagerConfig {
        intensity: generous(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The incarnation answering a ping. A ping that lands in the mailbox of an incarnation that is
/// about to fail dies with it (as in Erlang) and reports `NoReply`; ask again then.
async fn incarnation(r: &SupervisedRef<ProbeMsg>) -> u64 {
    loop {
        match r.call(ProbeMsg::Ping).await {
            Ok(i) => return i,
            Err(RefError::NoReply { .. }) => continue,
            Err(e) => panic!("ping failed: {e}"),
        }
    }
}

/// Lets the supervisors process what is queued (paused time auto-advances when idle).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn status(tree: &TreeSnapshot, path: &str) -> NodeStatus {
    tree.find(path)
        .unwrap_or_else(|| panic!("no node {path} in\n{tree}"))
        .status
        .clone()
}

async fn group(m: &AsyncManager, kit: &Kit, strategy: Strategy) -> [SupervisedRef<ProbeMsg>; 3] {
    let (a, b, c) = (kit.worker("a"), kit.worker("b"), kit.worker("c"));
    let refs = [a.reference(), b.reference(), c.reference()];
    m.spawn_supervisor(
        SupervisorSpec::new("g")
            .strategy(strategy)
            .intensity(generous())
            .child(a)
            .child(b)
            .child(c),
    )
    .await
    .unwrap();
    refs
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    let (m, kit) = (manager().await, Kit::default());
    let [a, b, c] = group(&m, &kit, Strategy::OneForOne).await;
    kit.take();
    b.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    assert_eq!(incarnation(&b).await, 2);
    assert_eq!((incarnation(&a).await, incarnation(&c).await), (1, 1));
    assert_eq!(kit.take(), ["start:b"]); // a failed actor runs no post_stop
    let tree = m.tree();
    let node = tree.find("root/g/b").unwrap();
    assert_eq!(node.restarts, 1);
    assert!(node.last_error.as_ref().unwrap().message.contains("boom"));
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn one_for_all_stops_siblings_in_reverse_then_restarts_all_in_order() {
    let (m, kit) = (manager().await, Kit::default());
    let [a, b, c] = group(&m, &kit, Strategy::OneForAll).await;
    kit.take();
    b.cast(ProbeMsg::Panic).await.unwrap();
    settle().await;
    assert_eq!(incarnation(&c).await, 2);
    assert_eq!((incarnation(&a).await, incarnation(&b).await), (2, 2));
    // Graceful stops (post_stop ran), reverse order, then starts in order.
    assert_eq!(kit.take(), ["stop:c", "stop:a", "start:a", "start:b", "start:c"]);
    // Every node of the group was restarted; only b failed.
    let tree = m.tree();
    let restarts: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| tree.find(&format!("root/g/{n}")).unwrap().restarts)
        .collect();
    assert_eq!(restarts, [1, 1, 1]);
    assert!(tree.find("root/g/a").unwrap().last_error.is_none());
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let (m, kit) = (manager().await, Kit::default());
    let [a, b, c] = group(&m, &kit, Strategy::RestForOne).await;
    kit.take();
    b.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    assert_eq!(incarnation(&c).await, 2);
    assert_eq!((incarnation(&a).await, incarnation(&b).await), (1, 2));
    assert_eq!(kit.take(), ["stop:c", "start:b", "start:c"]);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn permanent_is_restarted_even_after_a_normal_exit() {
    let (m, kit) = (manager().await, Kit::default());
    let w = m.spawn(kit.worker("w").restart(Restart::Permanent)).await.unwrap();
    w.cast(ProbeMsg::StopNormally).await.unwrap();
    assert_eq!(incarnation(&w).await, 2);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn transient_is_restarted_only_after_an_abnormal_exit() {
    let (m, kit) = (manager().await, Kit::default());
    let w = m.spawn(kit.worker("w").restart(Restart::Transient)).await.unwrap();
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    assert_eq!(incarnation(&w).await, 2);
    w.cast(ProbeMsg::StopNormally).await.unwrap();
    settle().await;
    assert_eq!(
        w.call(ProbeMsg::Ping).await,
        Err(RefError::NodeStopped { path: "root/w".into() })
    );
    assert_eq!(status(&m.tree(), "root/w"), NodeStatus::Stopped);
    // The spec is kept (OTP): it can be restarted by hand.
    m.root().unwrap().restart_child("w").await.unwrap();
    assert_eq!(incarnation(&w).await, 3);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn temporary_is_never_restarted_and_is_removed() {
    let (m, kit) = (manager().await, Kit::default());
    let w = m.spawn(kit.worker("w").restart(Restart::Temporary)).await.unwrap();
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    assert!(matches!(
        w.call(ProbeMsg::Ping).await,
        Err(RefError::NodeStopped { .. })
    ));
    assert!(m.tree().find("root/w").is_none());
    assert!(m.root().unwrap().which_children().await.unwrap().is_empty());
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn temporary_sibling_is_stopped_but_not_restarted_by_one_for_all() {
    let (m, kit) = (manager().await, Kit::default());
    let (a, t) = (kit.worker("a"), kit.worker("t").restart(Restart::Temporary));
    let (ar, tr) = (a.reference(), t.reference());
    m.spawn_supervisor(
        SupervisorSpec::new("g")
            .strategy(Strategy::OneForAll)
            .intensity(generous())
            .child(a)
            .child(t),
    )
    .await
    .unwrap();
    kit.take();
    ar.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    assert_eq!(incarnation(&ar).await, 2);
    assert_eq!(kit.take(), ["stop:t", "start:a"]);
    assert!(matches!(
        tr.call(ProbeMsg::Ping).await,
        Err(RefError::NodeStopped { .. })
    ));
    assert!(m.tree().find("root/g/t").is_none());
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn intensity_exceeded_escalates_to_the_parent_which_restarts_the_supervisor() {
    let (m, kit) = (manager().await, Kit::default());
    let w = kit.worker("w");
    let wr = w.reference();
    let inner = SupervisorSpec::new("inner")
        .intensity(Intensity::new(1, Duration::from_secs(5)).unwrap())
        .child(w);
    m.spawn_supervisor(
        SupervisorSpec::new("outer")
            .intensity(generous())
            .child(inner.backoff(RestartBackoff::immediate())),
    )
    .await
    .unwrap();
    wr.cast(ProbeMsg::Fail("one".into())).await.unwrap();
    assert_eq!(incarnation(&wr).await, 2); // one restart is within 1 in 5 s
    wr.cast(ProbeMsg::Fail("two".into())).await.unwrap();
    // The second exceeds it: inner stops its children and fails; outer restarts inner,
    // which starts w afresh (its first start under the new inner), behind the same ref.
    settle().await;
    assert_eq!(incarnation(&wr).await, 1);
    assert_eq!(wr.incarnation(), 3);
    let tree = m.tree();
    let inner = tree.find("root/outer/inner").unwrap();
    assert_eq!(inner.restarts, 1);
    let err = &inner.last_error.as_ref().unwrap().message;
    assert!(err.contains("root/outer/inner exceeded its restart intensity"), "{err}");
    assert!(err.contains("root/outer/inner/w: two"), "{err}");
    assert_eq!(status(&tree, "root/outer/inner/w"), NodeStatus::Running);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn escalation_at_the_root_ends_the_manager_and_wait_says_why() {
    let m = AsyncManager::start(ManagerConfig::default()).await.unwrap(); // 1 in 5 s
    let kit = Kit::default();
    let w = m.spawn(kit.worker("w")).await.unwrap();
    w.cast(ProbeMsg::Fail("first".into())).await.unwrap();
    assert_eq!(incarnation(&w).await, 2);
    w.cast(ProbeMsg::Fail("second".into())).await.unwrap();
    match m.wait().await {
        ExitReason::Escalation { path, error } => {
            assert_eq!(path, "root");
            assert!(error.contains("root/w: second"), "{error}");
        }
        other => panic!("expected an escalation, got {other:?}"),
    }
    assert!(!m.wait().await.is_clean());
    assert!(matches!(
        w.call(ProbeMsg::Ping).await,
        Err(RefError::NodeStopped { .. })
    ));
    assert!(matches!(
        m.spawn(kit.worker("x")).await,
        Err(SupervisorError::ManagerStopped { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_grow_and_reset_after_a_stable_period() {
    let (m, kit) = (manager().await, Kit::default());
    let backoff = RestartBackoff::exponential(
        Duration::from_millis(100),
        Duration::from_secs(1),
        0.0,
        Duration::from_secs(10),
    )
    .unwrap();
    let w = m.spawn(kit.worker("w").backoff(backoff)).await.unwrap();
    for (attempt, expected_ms) in [(1u64, 100u64), (2, 200), (3, 400)] {
        let t0 = tokio::time::Instant::now();
        w.cast(ProbeMsg::Fail(format!("failure {attempt}"))).await.unwrap();
        settle().await;
        match status(&m.tree(), "root/w") {
            NodeStatus::Backoff { next_start_in_ms } => {
                assert!(next_start_in_ms <= expected_ms, "{next_start_in_ms}")
            }
            other => panic!("expected backoff, got {other}"),
        }
        assert_eq!(incarnation(&w).await, attempt + 1); // waits for the new incarnation
        assert_eq!(t0.elapsed().as_millis() as u64, expected_ms);
    }
    // Up for longer than reset_after: the next failure starts again from the minimum.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let t0 = tokio::time::Instant::now();
    w.cast(ProbeMsg::Fail("after a quiet period".into())).await.unwrap();
    incarnation(&w).await;
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
    // The supervisor answered while the child was in backoff.
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn supervisor_answers_while_a_child_is_in_backoff() {
    let (m, kit) = (manager().await, Kit::default());
    let backoff = RestartBackoff::exponential(
        Duration::from_secs(60),
        Duration::from_secs(60),
        0.0,
        Duration::from_secs(1),
    )
    .unwrap();
    let w = m.spawn(kit.worker("w").backoff(backoff)).await.unwrap();
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    let t0 = tokio::time::Instant::now();
    let counts = m.root().unwrap().count_children().await.unwrap();
    assert_eq!((counts.specs, counts.active), (1, 0));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(m.tree().to_string().contains("backoff until +59.9"), "{}", m.tree());
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_restart_counts_as_a_failure_and_is_retried() {
    let (m, kit) = (manager().await, Kit::default());
    let fail_starts = Arc::new(AtomicU32::new(0));
    let w = m.spawn(kit.worker_with("w", fail_starts.clone(), false)).await.unwrap();
    fail_starts.store(2, Ordering::SeqCst);
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    assert_eq!(incarnation(&w).await, 4);
    assert_eq!(m.tree().find("root/w").unwrap().restarts, 3);
    kit.take();
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn initial_start_failure_fails_the_spawn_and_leaves_nothing_behind() {
    let (m, kit) = (manager().await, Kit::default());
    let spec =
        SupervisorSpec::new("g")
            .child(kit.worker("a"))
            .child(kit.worker_with("b", Arc::new(AtomicU32::new(1)), false));
    let err = m.spawn_supervisor(spec).await.unwrap_err();
    assert!(
        matches!(&err, SupervisorError::StartFailed { path, .. } if path == "root/g"),
        "{err}"
    );
    assert!(err.to_string().contains("b refused to start"), "{err}");
    assert_eq!(kit.take(), ["start:a", "start-failed:b", "stop:a"]);
    assert!(m.tree().find("root/g").is_none());
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_in_reverse_start_order_depth_first() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker("a")).await.unwrap();
    m.spawn_supervisor(SupervisorSpec::new("s").child(kit.worker("b")).child(kit.worker("c")))
        .await
        .unwrap();
    m.spawn(kit.worker("d")).await.unwrap();
    assert_eq!(kit.take(), ["start:a", "start:b", "start:c", "start:d"]);
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert_eq!(kit.take(), ["stop:d", "stop:c", "stop:b", "stop:a"]);
    assert_eq!(
        report.stopped,
        ["root/d", "root/s/c", "root/s/b", "root/s", "root/a", "root"]
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(m.wait().await, ExitReason::Shutdown);
    assert!(m.tree().iter().all(|n| n.status == NodeStatus::Stopped), "{}", m.tree());
    // A second call returns the same report.
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, report);
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_is_followed_by_a_kill() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker("quick")).await.unwrap();
    let slow = m
        .spawn(kit.worker("slow").shutdown(Shutdown::Timeout(Duration::from_secs(2))))
        .await
        .unwrap();
    slow.cast(ProbeMsg::Block(Duration::from_secs(3600))).await.unwrap();
    settle().await;
    let t0 = tokio::time::Instant::now();
    let report = m.shutdown(Duration::from_secs(60)).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(report.killed.len(), 1);
    assert_eq!(report.killed[0].path, "root/slow");
    assert_eq!(report.killed[0].after, Duration::from_secs(2));
    assert_eq!(report.stopped, ["root/quick", "root"]);
    assert_eq!(kit.take().last().map(String::as_str), Some("stop:quick")); // killed: no post_stop for slow
}

#[tokio::test(start_paused = true)]
async fn brutal_kill_runs_no_post_stop() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker("b").shutdown(Shutdown::Brutal)).await.unwrap();
    kit.take();
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(kit.take().is_empty());
    assert_eq!(report.killed.len(), 1);
    assert_eq!(report.killed[0].after, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_node_failing_while_stopping_is_reported() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker_with("f", Arc::new(AtomicU32::new(0)), true))
        .await
        .unwrap();
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.failed.len(), 1, "{report}");
    assert_eq!(report.failed[0].path, "root/f");
    assert!(report.failed[0].error.contains("could not flush"));
}

#[tokio::test(start_paused = true)]
async fn any_significant_child_ending_shuts_the_supervisor_down() {
    let (m, kit) = (manager().await, Kit::default());
    let job = kit.worker("job").restart(Restart::Transient).significant(true);
    let job_ref = job.reference();
    let sup = m
        .spawn_supervisor(
            SupervisorSpec::new("s")
                .auto_shutdown(AutoShutdown::AnySignificant)
                .restart(Restart::Transient)
                .child(kit.worker("helper"))
                .child(job),
        )
        .await
        .unwrap();
    kit.take();
    job_ref.cast(ProbeMsg::StopNormally).await.unwrap();
    settle().await;
    assert_eq!(kit.take(), ["stop:job", "stop:helper"]);
    assert!(!sup.is_running());
    assert_eq!(status(&m.tree(), "root/s"), NodeStatus::Stopped);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn all_significant_waits_for_every_significant_child() {
    let (m, kit) = (manager().await, Kit::default());
    let (x, y) = (
        kit.worker("x").restart(Restart::Temporary).significant(true),
        kit.worker("y").restart(Restart::Transient).significant(true),
    );
    let (xr, yr) = (x.reference(), y.reference());
    let sup = m
        .spawn_supervisor(
            SupervisorSpec::new("s")
                .auto_shutdown(AutoShutdown::AllSignificant)
                .restart(Restart::Temporary)
                .child(x)
                .child(y),
        )
        .await
        .unwrap();
    xr.cast(ProbeMsg::StopNormally).await.unwrap();
    settle().await;
    assert!(sup.is_running());
    yr.cast(ProbeMsg::StopNormally).await.unwrap();
    settle().await;
    assert!(!sup.is_running());
    assert!(m.tree().find("root/s").is_none()); // temporary: removed from the root
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn dynamic_children_start_terminate_restart_delete() {
    let (m, kit) = (manager().await, Kit::default());
    let sup = m
        .spawn_supervisor(SupervisorSpec::new("s").child(kit.worker("a")))
        .await
        .unwrap();
    let b = sup.start_worker(kit.worker("b")).await.unwrap();
    assert_eq!(incarnation(&b).await, 1);
    let counts = sup.count_children().await.unwrap();
    assert_eq!(
        (counts.specs, counts.active, counts.workers, counts.supervisors),
        (2, 2, 2, 0)
    );
    let dup = sup.start_child(kit.worker("b")).await.unwrap_err();
    assert_eq!(
        dup,
        SupervisorError::Spec(SpecError::DuplicateName {
            name: "b".into(),
            parent: "root/s".into()
        })
    );
    assert!(matches!(
        sup.delete_child("b").await,
        Err(SupervisorError::ChildRunning { .. })
    ));
    sup.terminate_child("b").await.unwrap();
    assert!(matches!(
        b.call(ProbeMsg::Ping).await,
        Err(RefError::NodeStopped { .. })
    ));
    let which = sup.which_children().await.unwrap();
    assert_eq!(
        which.iter().map(|c| (c.name.as_str(), c.running)).collect::<Vec<_>>(),
        [("a", true), ("b", false)]
    );
    sup.restart_child("b").await.unwrap();
    assert_eq!(incarnation(&b).await, 2);
    assert!(matches!(
        sup.restart_child("b").await,
        Err(SupervisorError::ChildRunning { .. })
    ));
    sup.terminate_child("b").await.unwrap();
    sup.delete_child("b").await.unwrap();
    assert_eq!(
        sup.delete_child("b").await,
        Err(SupervisorError::NoSuchChild {
            name: "b".into(),
            parent: "root/s".into()
        })
    );
    assert!(m.tree().find("root/s/b").is_none());
    let nested = sup
        .start_supervisor(SupervisorSpec::new("n").child(kit.worker("c")))
        .await
        .unwrap();
    assert_eq!(sup.count_children().await.unwrap().supervisors, 1);
    sup.terminate_child("n").await.unwrap();
    assert_eq!(
        nested.start_child(kit.worker("late")).await,
        Err(SupervisorError::SupervisorStopped {
            path: "root/s/n".into()
        })
    );
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_call_made_during_a_restart_is_answered_by_the_new_incarnation() {
    let (m, kit) = (manager().await, Kit::default());
    let backoff = RestartBackoff::exponential(
        Duration::from_secs(2),
        Duration::from_secs(2),
        0.0,
        Duration::from_secs(1),
    )
    .unwrap();
    let w = m.spawn(kit.worker("w").backoff(backoff)).await.unwrap();
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    assert!(!w.is_running());
    assert_eq!(w.call(ProbeMsg::Ping).await, Ok(2));
    // A short restart wait fails with an error that names the node.
    w.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    let impatient = w.clone().with_restart_wait(Duration::from_millis(500));
    assert_eq!(
        impatient.call(ProbeMsg::Ping).await,
        Err(RefError::RestartTimeout {
            path: "root/w".into(),
            waited: Duration::from_millis(500)
        })
    );
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_ractor_hands_back_is_sent_again_not_lost() {
    let (m, kit) = (manager().await, Kit::default());
    let w = m.spawn(kit.worker("w")).await.unwrap();
    for round in 1..=20u64 {
        // Kill the current incarnation behind the supervisor's back: the ref still points at
        // the dead actor until the supervisor handles the exit, so ractor hands the cast back.
        let old = w.current().unwrap();
        old.kill_and_wait(None).await.unwrap();
        assert!(
            old.cast(ProbeMsg::Add).is_err(),
            "ractor should refuse a cast to a dead actor"
        );
        w.cast(ProbeMsg::Add).await.unwrap();
        assert_eq!(w.call(ProbeMsg::Count).await.unwrap(), 1, "round {round}");
        assert_eq!(w.incarnation(), round + 1);
    }
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn cancellation_reaches_every_descendant() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker("a")).await.unwrap();
    m.spawn_supervisor(
        SupervisorSpec::new("s")
            .child(kit.worker("b"))
            .child(SupervisorSpec::new("t").child(kit.worker("c"))),
    )
    .await
    .unwrap();
    let tokens = kit.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    m.cancel_token().cancel();
    assert!(tokens.iter().all(|(_, t)| t.is_cancelled()));
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_a_subtree_cancels_only_that_subtree() {
    let (m, kit) = (manager().await, Kit::default());
    m.spawn(kit.worker("a")).await.unwrap();
    m.spawn_supervisor(
        SupervisorSpec::new("s")
            .child(kit.worker("b"))
            .child(SupervisorSpec::new("t").child(kit.worker("c"))),
    )
    .await
    .unwrap();
    m.root().unwrap().terminate_child("s").await.unwrap();
    let tokens = kit.tokens.lock().unwrap().clone();
    let cancelled: Vec<_> = tokens.iter().map(|(n, t)| (n.as_str(), t.is_cancelled())).collect();
    assert_eq!(cancelled, [("a", false), ("b", true), ("c", true)]);
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn two_managers_with_the_same_names_do_not_collide() {
    let (m1, m2, kit) = (manager().await, manager().await, Kit::default());
    let a1 = m1.spawn(kit.worker("same")).await.unwrap();
    let a2 = m2.spawn(kit.worker("same")).await.unwrap();
    a1.cast(ProbeMsg::Fail("only in m1".into())).await.unwrap();
    assert_eq!((incarnation(&a1).await, incarnation(&a2).await), (2, 1));
    assert_eq!(m1.tree().find("root/same").unwrap().restarts, 1);
    assert_eq!(m2.tree().find("root/same").unwrap().restarts, 0);
    m1.shutdown(Duration::from_secs(5)).await;
    assert_eq!(incarnation(&a2).await, 1);
    m2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn snapshot_shows_kinds_policies_and_round_trips_through_json() {
    let m = AsyncManager::start(ManagerConfig {
        intensity: generous(),
        defaults: ChildDefaults {
            restart: Some(Restart::Transient),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let kit = Kit::default();
    m.spawn_supervisor(
        SupervisorSpec::new("db")
            .strategy(Strategy::RestForOne)
            .defaults(ChildDefaults {
                shutdown: Some(Shutdown::Timeout(Duration::from_secs(1))),
                ..Default::default()
            })
            .child(kit.worker("pool").kind(NodeKind::Pool))
            .child(kit.worker("cache").restart(Restart::Permanent)),
    )
    .await
    .unwrap();
    let tree = m.tree();
    assert_eq!(tree.len(), 4);
    let paths: Vec<_> = tree.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(paths, ["root", "root/db", "root/db/pool", "root/db/cache"]);
    let pool = tree.find("root/db/pool").unwrap();
    assert_eq!(pool.kind, NodeKind::Pool);
    assert_eq!(pool.status, NodeStatus::Running);
    let policy = pool.policy.as_ref().unwrap();
    assert_eq!(policy.restart, Restart::Transient); // inherited from the root
    assert_eq!(policy.shutdown, Shutdown::Timeout(Duration::from_secs(1))); // from db
    assert_eq!(
        tree.find("root/db/cache").unwrap().policy.as_ref().unwrap().restart,
        Restart::Permanent
    );
    let db = tree.find("root/db").unwrap().policy.clone().unwrap();
    assert_eq!(
        (db.strategy, db.shutdown),
        (Some(Strategy::RestForOne), Shutdown::Infinity)
    );
    let json = serde_json::to_string_pretty(&tree).unwrap();
    let back: TreeSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tree);
    let text = tree.to_string();
    assert!(text.starts_with("root [root] running"), "{text}");
    assert!(
        text.contains("└── db [supervisor] running RestForOne transient"),
        "{text}"
    );
    assert!(text.contains("    ├── pool [pool] running"), "{text}");
    let dot = tree.to_dot();
    assert!(dot.contains("\"root/db\" -> \"root/db/pool\""), "{dot}");
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn bad_input_gets_typed_errors_naming_the_problem() {
    let (m, kit) = (manager().await, Kit::default());
    assert_eq!(
        m.spawn(kit.worker("")).await.unwrap_err(),
        SupervisorError::Spec(SpecError::EmptyName { parent: "root".into() })
    );
    assert!(matches!(
        m.spawn(kit.worker("a/b")).await.unwrap_err(),
        SupervisorError::Spec(SpecError::InvalidName { .. })
    ));
    let dup = SupervisorSpec::new("s").child(kit.worker("x")).child(kit.worker("x"));
    let err = m.spawn_supervisor(dup).await.unwrap_err();
    assert_eq!(
        err,
        SupervisorError::Spec(SpecError::DuplicateName {
            name: "x".into(),
            parent: "root/s".into()
        })
    );
    assert_eq!(err.to_string(), "duplicate child name \"x\" under root/s");
    assert_eq!(
        Intensity::new(3, Duration::ZERO),
        Err(SpecError::ZeroPeriod { max_restarts: 3 })
    );
    let min_above_max =
        RestartBackoff::exponential(Duration::from_secs(2), Duration::from_secs(1), 0.1, Duration::ZERO);
    assert_eq!(
        min_above_max,
        Err(SpecError::Backoff(BackoffError::MinAboveMax {
            min: Duration::from_secs(2),
            max: Duration::from_secs(1)
        }))
    );
    assert_eq!(
        Backoff::default().with_jitter(2.0),
        Err(BackoffError::JitterOutOfRange(2.0))
    );
    let significant_permanent = kit.worker("sig").significant(true);
    assert_eq!(
        m.spawn(significant_permanent).await.unwrap_err(),
        SupervisorError::Spec(SpecError::SignificantPermanent { name: "sig".into() })
    );
    assert!(AsyncManager::start(ManagerConfig {
        name: String::new(),
        ..Default::default()
    })
    .await
    .is_err());
    m.shutdown(Duration::from_secs(5)).await;
    let err = m.spawn(kit.worker("late")).await.unwrap_err();
    assert_eq!(err, SupervisorError::ManagerStopped { name: "root".into() });
    assert_eq!(err.to_string(), "the manager \"root\" has stopped");
}

#[tokio::test(start_paused = true)]
async fn stats_published_by_a_node_appear_in_the_tree() {
    struct Hits(AtomicU32);
    impl uno_runtime::actors::StatsSource for Hits {
        fn collect(&self, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
            out.insert("hits".into(), self.0.load(Ordering::Relaxed).into());
        }
    }
    let m = manager().await;
    let kit = Kit::default();
    let hits = Arc::new(Hits(AtomicU32::new(0)));
    let source = Arc::downgrade(&hits) as std::sync::Weak<dyn uno_runtime::actors::StatsSource>;
    let spec = WorkerSpec::new("cache", {
        let kit = kit.clone();
        move |ctx: &ChildContext| {
            ctx.stats().set("capacity", 100);
            ctx.stats().attach(source.clone());
            (
                Probe,
                ProbeArgs {
                    name: "cache".into(),
                    log: kit.log.clone(),
                    fail_starts: Arc::new(AtomicU32::new(0)),
                    post_stop_fails: false,
                    incarnation: ctx.incarnation(),
                    token: ctx.cancel_token().clone(),
                    tokens: kit.tokens.clone(),
                },
            )
        }
    });
    m.spawn(spec).await.unwrap();
    hits.0.store(42, Ordering::Relaxed);
    let tree = m.tree();
    let node = tree.find("root/cache").unwrap();
    assert_eq!(node.stats["capacity"], 100);
    assert_eq!(node.stats["hits"], 42);
    drop(hits);
    assert!(!m.tree().find("root/cache").unwrap().stats.contains_key("hits"));
    m.shutdown(Duration::from_secs(5)).await;
}

/// Records in `post_stop` whether the stop was final.
struct FinalProbe;

impl Actor for FinalProbe {
    type Msg = ProbeMsg;
    type State = (ChildContext, Log);
    type Arguments = (ChildContext, Log);

    async fn pre_start(
        &self,
        _: ActorRef<ProbeMsg>,
        args: (ChildContext, Log),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        me: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ProbeMsg::StopNormally = msg {
            me.stop(None);
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<ProbeMsg>, (ctx, log): &mut Self::State) -> Result<(), ActorProcessingErr> {
        log.lock()
            .unwrap()
            .push(format!("{} final={}", ctx.incarnation(), ctx.stop_is_final()));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn post_stop_can_tell_a_restart_from_a_final_stop() {
    let (m, kit) = (manager().await, Kit::default());
    let log = kit.log.clone();
    let spec = WorkerSpec::new("f", move |ctx: &ChildContext| (FinalProbe, (ctx.clone(), log.clone())))
        .backoff(RestartBackoff::immediate());
    let f = spec.reference();
    let a = kit.worker("a");
    let a_ref = a.reference();
    m.spawn_supervisor(
        SupervisorSpec::new("s")
            .strategy(Strategy::OneForAll)
            .intensity(generous())
            .child(a)
            .child(spec),
    )
    .await
    .unwrap();
    // A sibling's failure stops f for a restart: not final.
    a_ref.cast(ProbeMsg::Fail("boom".into())).await.unwrap();
    settle().await;
    assert!(f.is_running());
    m.shutdown(Duration::from_secs(5)).await;
    let entries: Vec<String> = kit.take().into_iter().filter(|e| e.contains("final=")).collect();
    assert_eq!(entries, ["1 final=false", "2 final=true"]);
}
