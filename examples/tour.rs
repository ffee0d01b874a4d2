//! A tour of uno: a supervision tree with every strategy, a worker that panics and comes back
//! after a backoff while its callers keep using the same address, the live tree before and
//! after, a cache, a batcher and a resource pool under load with their stats in the tree, and
//! an orderly shutdown with its report.
//!
//! Run it with `cargo run --example tour`. It ends by itself in a few seconds.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uno_runtime::actors::{
    AsyncManager, ChildContext, Intensity, ManagerConfig, NodeStatus, RestartBackoff, Strategy, SupervisorSpec,
    WorkerSpec,
};
use uno_runtime::batch::AsyncBatcher;
use uno_runtime::cache::AsyncCache;
use uno_runtime::resource::{AsyncResource, PoolConfig, ResourcePool};
use uno_runtime::task::{as_task, spawn_task, TaskGroup};

/// A counter that panics when asked to add 13.
struct Counter;

enum CounterMsg {
    Add(u64),
    Get(RpcReplyPort<(u64, u64)>),
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = (u64, u64);
    type Arguments = u64;

    async fn pre_start(&self, _: ActorRef<CounterMsg>, incarnation: u64) -> Result<(u64, u64), ActorProcessingErr> {
        Ok((0, incarnation))
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        (total, incarnation): &mut (u64, u64),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(13) => panic!("13 is unlucky"),
            CounterMsg::Add(n) => *total += n,
            CounterMsg::Get(reply) => {
                let _ = reply.send((*total, *incarnation));
            }
        }
        Ok(())
    }
}

/// A worker that does nothing but publish a stat; stands in for real services in the tree.
struct Service;

impl Actor for Service {
    type Msg = ();
    type State = ();
    type Arguments = ChildContext;

    async fn pre_start(&self, _: ActorRef<()>, ctx: ChildContext) -> Result<(), ActorProcessingErr> {
        ctx.stats().set("incarnation", ctx.incarnation());
        Ok(())
    }
}

/// Prints when the task holding it is dropped: how a cancelled task shows itself.
struct SaysWhenDropped(&'static str);

impl Drop for SaysWhenDropped {
    fn drop(&mut self) {
        println!("  task {:?} was cancelled (its future was dropped)", self.0);
    }
}

async fn tasks(manager: &AsyncManager) -> Result<(), Box<dyn std::error::Error>> {
    // A fail-fast group: the first failure cancels the siblings still running.
    let mut group = TaskGroup::<u32>::builder("fetch").start(manager).await?;
    group.spawn("fast", async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::io::Error>(1)
    })?;
    group.spawn("broken", async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Err(std::io::Error::other("upstream refused the request"))
    })?;
    group.spawn("slow", async {
        let _guard = SaysWhenDropped("slow");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, std::io::Error>(3)
    })?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("the group in the tree while it runs:\n{}", manager.tree());
    match group.join().await {
        Ok(v) => println!("group finished: {v:?}"),
        Err(e) => println!("group failed fast: {e}"),
    }

    // A supervised background task: it fails twice, is restarted with backoff, then runs
    // until it is cancelled by the shutdown.
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let backoff = RestartBackoff::exponential(
        Duration::from_millis(50),
        Duration::from_secs(1),
        0.0,
        Duration::from_secs(30),
    )?;
    let heartbeat = as_task("heartbeat", move |ctx: ChildContext| {
        let attempt = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if attempt <= 2 {
                return Err(format!("heartbeat attempt {attempt} could not reach its peer"));
            }
            ctx.cancelled().await;
            Ok::<(), String>(())
        }
    })
    .backoff(backoff);
    spawn_task(manager, heartbeat).await?;
    while attempts.load(Ordering::SeqCst) < 3
        || !manager
            .tree()
            .find("root/heartbeat")
            .is_some_and(|n| n.status == NodeStatus::Running)
    {
        if manager.is_shutting_down() {
            return Err("the manager stopped while the heartbeat was restarting".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "\nthe heartbeat task after two failures and two restarts (50 ms, then 100 ms):\n{}",
        manager.tree()
    );
    Ok(())
}
/// A small in-process resource for the pool of section 4b: a numbered channel.
struct Channel {
    id: u64,
}

/// Opening a channel never fails in the tour; a real resource has its own error type.
#[derive(Debug, thiserror::Error)]
#[error("channel error")]
struct ChannelError;

static NEXT_CHANNEL: AtomicU64 = AtomicU64::new(0);

impl AsyncResource for Channel {
    type Config = ();
    type Error = ChannelError;

    async fn open(_: &()) -> Result<Self, ChannelError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(Channel {
            id: NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed),
        })
    }

    async fn close(self) {}

    async fn health_check(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// Section 4b: a cache, a batcher and a pool, each a node of the tree, under load.
async fn resources_under_load(manager: &AsyncManager) -> Result<(), Box<dyn std::error::Error>> {
    // A cache read by 32 tasks over 8 keys: the first read of a key loads it (once, however
    // many tasks miss it together), every later read is a hit.
    let cache: AsyncCache<u32, String> = AsyncCache::builder("profiles")
        .ttl(Duration::from_secs(60))
        .max_capacity(1_000)
        .build()?;
    manager.spawn(cache.worker_spec(Duration::from_secs(1))).await?;
    let readers = (0..32u32).map(|task| {
        let cache = cache.clone();
        tokio::spawn(async move {
            for i in 0..50u32 {
                let key = (task + i) % 8;
                let _ = cache
                    .get_with(key, move || async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok::<_, std::io::Error>(format!("profile {key}"))
                    })
                    .await;
            }
        })
    });
    futures::future::join_all(readers).await;
    let s = cache.stats();
    println!(
        "cache: {} hits, {} misses, {} loads (hit ratio {:.3})",
        s.hits,
        s.misses,
        s.loads,
        s.hit_ratio()
    );

    // A batcher: 100 concurrent submits reach the batch function in batches of up to 16.
    let batcher = AsyncBatcher::builder("lookups")
        .max_batch_size(16)
        .max_wait(Duration::from_millis(2))
        .max_concurrent(2)
        .build(|ids: Vec<u32>| async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok::<_, std::io::Error>(ids.iter().map(|id| id * 10).collect())
        })?;
    manager.spawn(batcher.worker_spec()).await?;
    let results = futures::future::join_all((0..100u32).map(|id| batcher.submit(id))).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    let s = batcher.stats();
    println!(
        "batcher: {served} of 100 submits served in {} batches (mean size {:.1})",
        s.batches,
        s.mean_batch_size()
    );

    // A pool of 4 channels (2 pre-warmed) shared by 24 tasks: acquire, use, release.
    let config = PoolConfig {
        max_size: 4,
        min_idle: Some(2),
        acquire_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let pool = ResourcePool::<Channel>::spawn_resources(manager, "channels", (), config).await?;
    let users = (0..24).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                if let Ok(channel) = pool.acquire().await {
                    let _ = channel.id;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    });
    futures::future::join_all(users).await;
    println!("pool: 120 checkouts by 24 tasks over at most 4 channels\n");

    println!("the tree, with the stats each node publishes:\n");
    let tree = manager.tree();
    println!("{tree}");
    Ok(())
}

fn service(name: &str) -> WorkerSpec<Service> {
    WorkerSpec::new(name, |ctx: &ChildContext| (Service, ctx.clone()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    // The counter panics on purpose: print one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(panic in a supervised actor: {info})")));
    // The root gives up after more than 10 restarts of its own children within 10 s.
    let manager = AsyncManager::start(ManagerConfig {
        intensity: Intensity::new(10, Duration::from_secs(10))?,
        ..ManagerConfig::default()
    })
    .await?;

    println!("== 1. a supervision tree with every strategy\n");
    let backoff = RestartBackoff::exponential(
        Duration::from_millis(200),
        Duration::from_secs(2),
        0.1,
        Duration::from_secs(30),
    )?;
    let counter = WorkerSpec::new("counter", |ctx: &ChildContext| (Counter, ctx.incarnation())).backoff(backoff);
    let counter_ref = counter.reference();
    manager
        .spawn_supervisor(
            SupervisorSpec::new("app")
                .strategy(Strategy::OneForOne)
                .intensity(Intensity::new(5, Duration::from_secs(10))?)
                .child(
                    SupervisorSpec::new("storage")
                        .strategy(Strategy::RestForOne)
                        .child(service("connection"))
                        .child(service("cache")),
                )
                .child(
                    SupervisorSpec::new("web")
                        .strategy(Strategy::OneForAll)
                        .child(service("listener"))
                        .child(counter),
                ),
        )
        .await?;
    println!("{}", manager.tree());

    println!("== 2. messages through a SupervisedRef, across a panic and a restart with backoff\n");
    for n in [1, 2, 3] {
        counter_ref.cast(CounterMsg::Add(n)).await.map_err(|e| e.to_string())?;
    }
    let (total, incarnation) = counter_ref.call(CounterMsg::Get).await?;
    println!("counter = {total} (incarnation {incarnation})");
    println!("sending 13: the counter panics; its OneForAll supervisor restarts the listener too");
    counter_ref.cast(CounterMsg::Add(13)).await.map_err(|e| e.to_string())?;
    // Messages already in the mailbox of an incarnation that is failing die with it (as in
    // Erlang), so wait until the supervisor has seen the failure before sending more.
    while counter_ref.is_running() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let tree = manager.tree();
    if let Some(node) = tree.find("root/app/web/counter") {
        if let NodeStatus::Backoff { next_start_in_ms } = node.status {
            println!("counter is in backoff; next start in {next_start_in_ms} ms");
        }
    }
    println!("{tree}");
    // Sent while the counter is down: the ref waits for the new incarnation instead of failing.
    counter_ref.cast(CounterMsg::Add(40)).await.map_err(|e| e.to_string())?;
    let (total, incarnation) = counter_ref.call(CounterMsg::Get).await?;
    println!(
        "counter = {total} (incarnation {incarnation}): the new incarnation got the message sent during the restart\n"
    );
    println!("{}", manager.tree());

    println!("== 3. the tree as JSON (first lines) and Graphviz DOT\n");
    let json = serde_json::to_string_pretty(&manager.tree())?;
    for line in json.lines().take(12) {
        println!("{line}");
    }
    println!("...\n");
    println!("{}", manager.tree().to_dot());

    println!("== 4. tasks: a fail-fast group and a supervised background task\n");
    tasks(&manager).await?;

    println!("== 4b. a cache, a batcher and a pool under load, with their stats in the tree\n");
    resources_under_load(&manager).await?;

    database(&manager).await?;

    println!("== 5. orderly shutdown: reverse start order, depth first\n");
    let report = manager.shutdown(Duration::from_secs(5)).await;
    print!("{report}");
    println!("manager exit: {:?}", manager.wait().await);
    Ok(())
}

/// The database layer, when a PostgreSQL answers at `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`): a session, a transaction rolled back on error,
/// batched inserts, a cached query and the database subtree. Skipped, saying so, otherwise.
async fn database(manager: &AsyncManager) -> Result<(), Box<dyn std::error::Error>> {
    use uno_runtime::db::{Db, DbConfig, DbError, InsertRow, Param};

    println!("== the database: sessions, transactions, batched inserts, cached queries\n");
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let config = DbConfig::from_url(&url)?
        .application_name("uno-tour")
        .connect_timeout(Duration::from_secs(2))
        .connect_attempts(1);
    let target = config.to_string();
    let db = match Db::start(manager, "db", config).await {
        Ok(db) => db,
        Err(e) => {
            println!("no database answers at {target} ({e}): skipped the database part of the tour\n");
            return Ok(());
        }
    };
    let table = format!(
        "uno_tour_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let mut session = db.session().await?;
    session
        .batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)"
        ))
        .await?;
    let version: String = session.query_one("SELECT version()", &[]).await?.get(0);
    println!(
        "session #{} query: {}",
        session.id(),
        version.split(',').next().unwrap_or("")
    );

    let insert = format!("INSERT INTO {table} (name) VALUES ($1)");
    let outcome: Result<(), DbError> = session
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute(&insert, &[&"ada"]).await?;
                tx.execute("SELECT 1 / 0", &[]).await?;
                Ok(())
            })
        })
        .await;
    let count = format!("SELECT count(*) FROM {table}");
    let n: i64 = session.query_one(&count, &[]).await?.get(0);
    if let Err(e) = outcome {
        println!("transaction failed ({e}), rolled back: {n} rows");
    }
    drop(session);

    let names = ["grace", "edsger", "barbara", "tony", "leslie"];
    let rows = futures::future::join_all(
        names
            .iter()
            .map(|name| db.insert_batched(&table, InsertRow::new().set("name", name.to_string()))),
    )
    .await;
    let mut ids = Vec::new();
    for (name, row) in names.iter().zip(rows) {
        ids.push(format!("{name}={}", row?.get::<_, i32>("id")));
    }
    println!("batched inserts, each caller got its own row: {}", ids.join(" "));

    for attempt in ["miss", "hit"] {
        let params: Vec<Param> = Vec::new();
        let rows = db.query_cached(&count, params, Duration::from_secs(30)).await?;
        println!("cached query ({attempt}): {} rows", rows[0].get::<_, i64>(0));
    }

    println!("\nthe database subtree:");
    let tree = manager.tree();
    if let Some(node) = tree.find(db.path()) {
        let keep = [
            "size",
            "idle",
            "in_use",
            "sessions.open",
            "sessions.opened",
            "hits",
            "misses",
            "batches",
            "submitted",
        ];
        for n in node.iter() {
            let depth = n.path.matches('/').count().saturating_sub(1);
            let stats: Vec<String> = n
                .stats
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("{}{} [{}] {}", "  ".repeat(depth), n.path, n.kind, stats.join(" "));
        }
    }
    db.session()
        .await?
        .batch_execute(&format!("DROP TABLE {table}"))
        .await?;
    db.flush().await;
    println!();
    Ok(())
}
