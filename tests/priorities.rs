//! Concurrency caps: priority order, aging, no starvation; TaskManager groups and listing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};
use uno_runtime::actors::{AsyncManager, ManagerConfig, NodeKind};
use uno_runtime::task::{Priority, TaskError, TaskGroup, TaskManager, TaskManagerConfig, TaskStatus};

type R<T> = Result<T, std::io::Error>;
type Log = Arc<Mutex<Vec<&'static str>>>;

fn logged(log: &Log, name: &'static str) -> impl std::future::Future<Output = R<()>> {
    let log = log.clone();
    async move {
        log.lock().unwrap().push(name);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_tasks_start_by_priority() {
    let log: Log = Arc::default();
    let mut group = TaskGroup::<()>::builder("cap").limit(1).detached().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    group
        .spawn("blocker", async move {
            let _ = rx.await;
            R::Ok(())
        })
        .unwrap();
    tokio::task::yield_now().await;
    group
        .spawn_with_priority("low", Priority::LOW, logged(&log, "low"))
        .unwrap();
    group
        .spawn_with_priority("normal", Priority::NORMAL, logged(&log, "normal"))
        .unwrap();
    group
        .spawn_with_priority("high", Priority::HIGH, logged(&log, "high"))
        .unwrap();
    group
        .spawn_with_priority("critical", Priority::CRITICAL, logged(&log, "critical"))
        .unwrap();
    tokio::task::yield_now().await;
    tx.send(()).unwrap();
    group.join().await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["critical", "high", "normal", "low"]);
}

#[tokio::test(start_paused = true)]
async fn aging_lets_a_long_waiting_low_priority_task_go_first() {
    let log: Log = Arc::default();
    let mut group = TaskGroup::<()>::builder("aging")
        .limit(1)
        .aging(Duration::from_millis(100))
        .detached()
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    group
        .spawn("blocker", async move {
            let _ = rx.await;
            R::Ok(())
        })
        .unwrap();
    tokio::task::yield_now().await;
    group
        .spawn_with_priority("low", Priority::LOW, logged(&log, "low"))
        .unwrap();
    tokio::task::yield_now().await;
    // LOW (0) waits 2.5 s = 25 levels: it now outranks a fresh HIGH (20), not a CRITICAL (30).
    sleep(Duration::from_millis(2_500)).await;
    group
        .spawn_with_priority("high", Priority::HIGH, logged(&log, "high"))
        .unwrap();
    group
        .spawn_with_priority("critical", Priority::CRITICAL, logged(&log, "critical"))
        .unwrap();
    tokio::task::yield_now().await;
    tx.send(()).unwrap();
    group.join().await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["critical", "low", "high"]);
}

#[tokio::test(start_paused = true)]
async fn a_low_priority_task_never_starves() {
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let tasks = TaskManager::start(
        &manager,
        TaskManagerConfig {
            limit: Some(1),
            aging: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    let work = || async {
        sleep(Duration::from_millis(50)).await;
        R::Ok(())
    };
    tasks.spawn_in("default", "h0", Priority::HIGH, work()).unwrap();
    tokio::task::yield_now().await;
    let started = Instant::now();
    let low = tasks
        .spawn_in("default", "low", Priority::LOW, async move { R::Ok(Instant::now()) })
        .unwrap();
    // A steady stream of high-priority work, one new task every 25 ms (twice the capacity).
    let stream = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                let _ = tasks.spawn_in("default", &format!("h{}", i + 1), Priority::HIGH, work());
                sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let ran_at = low.await.unwrap();
    // 20 levels behind at 100 ms a level: only high tasks that arrived less than 2 s after it
    // go first. 80 arrive in those 2 s, served at 50 ms each: it runs after about 4 s, while
    // without aging it would wait for the whole stream (10 s and more).
    let waited = ran_at - started;
    assert!(waited <= Duration::from_millis(4_200), "waited {waited:?}");
    assert!(
        waited >= Duration::from_millis(2_000),
        "priority had no effect: {waited:?}"
    );
    stream.abort();
    tasks.cancel_all();
    manager.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn task_manager_groups_listing_and_cancel_all() {
    let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
    let tasks = TaskManager::start(&manager, TaskManagerConfig::default())
        .await
        .unwrap();
    tasks.create_group("io").await.unwrap();
    let dup = tasks.create_group("io").await.unwrap_err();
    assert!(matches!(dup, TaskError::DuplicateGroup { ref group } if group == "io"));
    assert_eq!(dup.to_string(), "a task group named \"io\" already exists");
    let missing = tasks
        .spawn_in("nope", "x", Priority::NORMAL, async { R::Ok(()) })
        .unwrap_err();
    assert!(matches!(missing, TaskError::NoSuchGroup { ref group } if group == "nope"));
    assert_eq!(tasks.group_names(), ["default", "io"]);

    let a = tasks.spawn("a", std::future::pending::<R<()>>()).unwrap();
    sleep(Duration::from_secs(5)).await;
    let b = tasks
        .spawn_in("io", "b", Priority::HIGH, std::future::pending::<R<()>>())
        .unwrap();
    tokio::task::yield_now().await;
    let listing = tasks.tasks();
    assert_eq!(listing.len(), 2);
    assert_eq!((listing[0].name.as_str(), listing[0].group.as_str()), ("a", "default"));
    assert_eq!(listing[0].age, Duration::from_secs(5));
    assert_eq!(listing[0].status, TaskStatus::Running);
    assert_eq!((listing[1].name.as_str(), listing[1].group.as_str()), ("b", "io"));
    assert_eq!(listing[1].priority, Priority::HIGH);

    let tree = manager.tree();
    assert_eq!(tree.find("root/io").unwrap().kind, NodeKind::TaskGroup);
    assert_eq!(tree.find("root/io/b").unwrap().kind, NodeKind::Task);

    tasks.cancel_all();
    assert!(a.await.unwrap_err().is_cancelled());
    assert!(b.await.unwrap_err().is_cancelled());
    assert!(tasks.tasks().is_empty());
    assert!(manager.tree().find("root/io/b").is_none());
    // Still usable after cancel_all.
    assert_eq!(tasks.spawn("c", async { R::Ok(3) }).unwrap().await.unwrap(), 3);
    assert!(manager.shutdown(Duration::from_secs(5)).await.is_clean());
}
