//! Cache, batcher and context wired into the supervision tree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use uno_runtime::actors::{AsyncManager, ManagerConfig, NodeKind};
use uno_runtime::batch::AsyncBatcher;
use uno_runtime::cache::AsyncCache;
use uno_runtime::context::{AsyncExitStack, BoxError};

async fn manager() -> AsyncManager {
    match AsyncManager::start(ManagerConfig::default()).await {
        Ok(m) => m,
        Err(e) => panic!("manager: {e}"),
    }
}

#[tokio::test]
async fn cache_and_batcher_publish_their_stats_in_the_tree() {
    let m = manager().await;
    let cache: AsyncCache<u32, u32> = match AsyncCache::builder("users").ttl(Duration::from_secs(60)).build() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let batcher = match AsyncBatcher::builder("writes")
        .max_batch_size(4)
        .build(|v: Vec<u32>| async move { Ok::<_, std::io::Error>(v) })
    {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(m.spawn(cache.worker_spec(Duration::from_secs(1))).await.is_ok());
    assert!(m.spawn(batcher.worker_spec()).await.is_ok());

    for k in 0..4 {
        let _ = cache
            .get_with(k, move || async move { Ok::<_, std::io::Error>(k) })
            .await;
    }
    for k in 0..4 {
        assert_eq!(cache.get(&k), Some(k));
    }
    let rs = futures::future::join_all((0..4).map(|i| batcher.submit(i))).await;
    assert!(rs.iter().all(|r| r.is_ok()));

    let tree = m.tree();
    let node = match tree.find("root/users") {
        Some(n) => n,
        None => panic!("no cache node in\n{tree}"),
    };
    assert_eq!(node.kind, NodeKind::Cache);
    assert_eq!(node.stats.get("hits"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("misses"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("hit_ratio"), Some(&serde_json::json!(0.5)));
    assert_eq!(node.stats.get("size"), Some(&serde_json::json!(4)));
    let node = match tree.find("root/writes") {
        Some(n) => n,
        None => panic!("no batcher node in\n{tree}"),
    };
    assert_eq!(node.kind, NodeKind::Batcher);
    assert_eq!(node.stats.get("succeeded"), Some(&serde_json::json!(4)));
    assert_eq!(node.stats.get("batches"), Some(&serde_json::json!(1)));
    batcher.shutdown().await;
    let report = m.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn the_manager_shutdown_waits_for_the_cleanup_of_a_dropped_stack() {
    let m = manager().await;
    let log = Arc::new(Mutex::new(Vec::<&str>::new()));
    let mut stack = AsyncExitStack::new("request").manager(m.clone());
    let l = log.clone();
    stack.push_cleanup("slow close", move || async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(mut v) = l.lock() {
            v.push("closed");
        }
        Ok::<(), BoxError>(())
    });
    drop(stack);
    let _ = m.shutdown(Duration::from_secs(5)).await;
    assert_eq!(log.lock().map(|v| v.clone()).unwrap_or_default(), ["closed"]);
}
