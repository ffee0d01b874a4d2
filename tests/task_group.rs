//! TaskGroup rules: fail-fast, collect-all, order, aggregation, single use, drop, grace, tree.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, Instant};
use uno_runtime::actors::{AsyncManager, ManagerConfig, NodeKind};
use uno_runtime::task::{GroupMode, TaskError, TaskGroup};

type R<T> = Result<T, std::io::Error>;

/// Counts drops of the futures that own it.
#[derive(Clone, Default)]
struct Drops(Arc<AtomicUsize>);
struct Guard(Arc<AtomicUsize>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
impl Drops {
    fn guard(&self) -> Guard {
        Guard(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_siblings_and_reports_the_first_failure() {
    let drops = Drops::default();
    let mut group = TaskGroup::<u32>::new("ff");
    group.spawn("ok", async { R::Ok(1) }).unwrap();
    group
        .spawn("boom", async {
            sleep(Duration::from_millis(10)).await;
            Err(std::io::Error::other("boom"))
        })
        .unwrap();
    let g = drops.guard();
    group
        .spawn("sleeper", async move {
            let _g = g;
            sleep(Duration::from_secs(3600)).await;
            R::Ok(3)
        })
        .unwrap();
    let started = Instant::now();
    let err = group.join().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "siblings were not cancelled"
    );
    match &err {
        TaskError::Group {
            group,
            first,
            others,
            cancelled,
        } => {
            assert_eq!(group, "ff");
            assert!(matches!(**first, TaskError::Failed { ref task, .. } if task == "boom"));
            assert!(others.is_empty());
            assert_eq!(*cancelled, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(drops.count(), 1, "the cancelled future was dropped");
    assert!(err.to_string().contains("\"boom\""), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_failure_too() {
    let mut group = TaskGroup::<u32>::new("p");
    group
        .spawn("panics", async {
            if true {
                panic!("kaboom");
            }
            R::Ok(0)
        })
        .unwrap();
    group
        .spawn("sleeper", async {
            sleep(Duration::from_secs(3600)).await;
            R::Ok(1)
        })
        .unwrap();
    match group.join().await.unwrap_err() {
        TaskError::Group { first, cancelled, .. } => {
            assert!(matches!(*first, TaskError::Panicked { ref message, .. } if message == "kaboom"));
            assert_eq!(cancelled, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn results_come_in_spawn_order() {
    let mut group = TaskGroup::<u64>::new("order");
    for i in 0..5u64 {
        group
            .spawn(&format!("t{i}"), async move {
                sleep(Duration::from_millis(100 * (5 - i))).await; // reverse completion
                R::Ok(i)
            })
            .unwrap();
    }
    assert_eq!(group.join().await.unwrap(), [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn collect_all_runs_everything_and_aggregates_failures() {
    let mut group = TaskGroup::<u32>::builder("all")
        .mode(GroupMode::CollectAll)
        .detached()
        .unwrap();
    let fail_after = |ms: u64, what: &'static str| async move {
        sleep(Duration::from_millis(ms)).await;
        R::<u32>::Err(std::io::Error::other(what))
    };
    group.spawn("late", fail_after(300, "late")).unwrap();
    group
        .spawn("ok", async {
            sleep(Duration::from_millis(500)).await;
            R::Ok(7)
        })
        .unwrap();
    group.spawn("early", fail_after(100, "early")).unwrap();
    group.spawn("middle", fail_after(200, "middle")).unwrap();
    match group.join().await.unwrap_err() {
        TaskError::Group {
            first,
            others,
            cancelled,
            ..
        } => {
            assert_eq!(first.name(), "early", "first failure is the first in time");
            let names: Vec<_> = others.iter().map(TaskError::name).collect();
            assert_eq!(names, ["late", "middle"], "others in spawn order");
            assert_eq!(cancelled, 0, "collect-all cancels nothing");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn join_results_gives_every_result_in_order() {
    let mut group = TaskGroup::<u32>::builder("each")
        .mode(GroupMode::CollectAll)
        .detached()
        .unwrap();
    group.spawn("a", async { R::Ok(1) }).unwrap();
    group.spawn("b", async { R::Err(std::io::Error::other("b")) }).unwrap();
    group.spawn("c", async { R::Ok(3) }).unwrap();
    let r = group.join_results().await.unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &1);
    assert!(matches!(r[1], Err(TaskError::Failed { .. })));
    assert_eq!(r[2].as_ref().unwrap(), &3);
}

#[tokio::test]
async fn a_group_is_single_use() {
    let mut group = TaskGroup::<u32>::new("once");
    group.spawn("a", async { R::Ok(1) }).unwrap();
    assert_eq!(group.join().await.unwrap(), [1]);
    let err = group.spawn("b", async { R::Ok(2) }).unwrap_err();
    assert!(matches!(err, TaskError::GroupClosed { ref group, ref task } if group == "once" && task == "b"));
    assert!(matches!(group.join().await, Err(TaskError::GroupClosed { .. })));
}

#[tokio::test]
async fn dropping_an_unjoined_group_cancels_and_aborts_its_tasks() {
    let drops = Drops::default();
    let baseline = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let group = TaskGroup::<()>::new("dropped");
    for i in 0..3 {
        let g = drops.guard();
        group
            .spawn(&format!("plain{i}"), async move {
                let _g = g;
                std::future::pending::<()>().await;
                R::Ok(())
            })
            .unwrap();
    }
    let g = drops.guard();
    group
        .spawn_with("stubborn", move |_token| async move {
            let _g = g; // ignores its token: must be aborted
            std::future::pending::<()>().await;
            R::Ok(())
        })
        .unwrap();
    tokio::task::yield_now().await;
    drop(group);
    for _ in 0..100 {
        if drops.count() == 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(drops.count(), 4, "every future was dropped");
    for _ in 0..100 {
        if tokio::runtime::Handle::current().metrics().num_alive_tasks() == baseline {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn cooperative_tasks_get_the_grace_period_then_are_aborted() {
    let mut group = TaskGroup::<u32>::builder("grace")
        .grace(Duration::from_secs(2))
        .detached()
        .unwrap();
    group
        .spawn_with("polite", |token| async move {
            token.cancelled().await;
            sleep(Duration::from_millis(500)).await; // winds down within the grace
            R::Ok(1)
        })
        .unwrap();
    group
        .spawn_with("stubborn", |_token| async move {
            sleep(Duration::from_secs(3600)).await;
            R::Ok(2)
        })
        .unwrap();
    group
        .spawn("boom", async { R::Err(std::io::Error::other("boom")) })
        .unwrap();
    let started = Instant::now();
    let r = group.join_results().await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(r[0].as_ref().unwrap(), &1, "the polite task returned its own result");
    assert!(matches!(r[1], Err(TaskError::Cancelled { ref task }) if task == "stubborn"));
}

#[tokio::test(start_paused = true)]
async fn join_timeout_aborts_and_names_what_was_pending() {
    let mut group = TaskGroup::<u32>::new("bounded");
    group.spawn("quick", async { R::Ok(1) }).unwrap();
    group
        .spawn("slow", async {
            sleep(Duration::from_secs(60)).await;
            R::Ok(2)
        })
        .unwrap();
    let err = group.join_timeout(Duration::from_secs(1)).await.unwrap_err();
    match &err {
        TaskError::GroupTimedOut { group, limit, pending } => {
            assert_eq!(group, "bounded");
            assert_eq!(*limit, Duration::from_secs(1));
            assert_eq!(pending, &["slow".to_string()]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_group_is_a_node_with_its_tasks_as_leaves() {
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let mut group = TaskGroup::<u32>::builder("fetch").start(&manager).await.unwrap();
    assert_eq!(group.path(), Some("root/fetch"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    group
        .spawn("waiting", async move {
            let _ = rx.await;
            R::Ok(1)
        })
        .unwrap();
    tokio::task::yield_now().await;
    let tree = manager.tree();
    let node = tree.find("root/fetch").unwrap();
    assert_eq!(node.kind, NodeKind::TaskGroup);
    let leaf = tree.find("root/fetch/waiting").unwrap();
    assert_eq!(leaf.kind, NodeKind::Task);
    tx.send(()).unwrap();
    assert_eq!(group.join().await.unwrap(), [1]);
    assert!(
        manager.tree().find("root/fetch").is_none(),
        "joined group leaves the tree"
    );
    assert!(manager.shutdown(Duration::from_secs(5)).await.is_clean());
}

#[tokio::test]
async fn a_manager_shutdown_cancels_the_group() {
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let mut group = TaskGroup::<u32>::builder("g").start(&manager).await.unwrap();
    group
        .spawn("forever", async {
            std::future::pending::<()>().await;
            R::Ok(1)
        })
        .unwrap();
    manager.shutdown(Duration::from_secs(5)).await;
    let err = group.join().await.unwrap_err();
    assert!(
        matches!(err, TaskError::Group { ref first, .. } if first.is_cancelled()),
        "{err}"
    );
}

#[test]
fn a_zero_limit_is_a_typed_error() {
    let err = TaskGroup::<u32>::builder("z").limit(0).detached::<u32>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the concurrency limit of \"z\" must be at least 1 (got 0)"
    );
}
