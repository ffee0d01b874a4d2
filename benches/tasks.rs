//! Tasks beside the raw tokio/ractor thing they wrap, in the same run.
//!
//! cargo bench --bench tasks -- --warm-up-time 1 --measurement-time 3

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use uno_runtime::actors::{AsyncManager, ManagerConfig, Restart};
use uno_runtime::task::{as_task, run_task, spawn_task, TaskGroup};

type R = Result<(), std::io::Error>;

const N: usize = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn group_join(c: &mut Criterion) {
    let rt = runtime();
    let manager = rt
        .block_on(AsyncManager::start(ManagerConfig::default()))
        .expect("manager");
    let mut g = c.benchmark_group("tasks/group_10k");
    g.bench_function("uno TaskGroup (in the tree)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut group = TaskGroup::<()>::builder("bench").start(&manager).await.expect("group");
            for _ in 0..N {
                group.spawn("t", async { R::Ok(()) }).expect("spawn");
            }
            group.join().await.expect("join")
        })
    });
    g.bench_function("uno TaskGroup (detached)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut group = TaskGroup::<()>::new("bench");
            for _ in 0..N {
                group.spawn("t", async { R::Ok(()) }).expect("spawn");
            }
            group.join().await.expect("join")
        })
    });
    g.bench_function("raw tokio JoinSet", |b| {
        b.to_async(&rt).iter(|| async {
            let mut set = JoinSet::new();
            for _ in 0..N {
                set.spawn(async { R::Ok(()) });
            }
            set.join_all().await
        })
    });
    g.finish();
}

fn run_one(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tasks/run_task");
    g.bench_function("uno run_task", |b| {
        b.to_async(&rt).iter(|| async {
            run_task("t", async { R::Ok(()) }, Some(Duration::from_secs(5)))
                .await
                .expect("run")
        })
    });
    g.bench_function("raw tokio::spawn + await", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::spawn(async { R::Ok(()) }).await.expect("join").expect("ok") })
    });
    g.finish();
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn supervised(c: &mut Criterion) {
    let rt = runtime();
    let manager = rt
        .block_on(AsyncManager::start(ManagerConfig::default()))
        .expect("manager");
    let root = manager.root().expect("root");
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group("tasks/supervised_start_stop");
    g.bench_function("uno spawn_task + terminate", |b| {
        b.to_async(&rt).iter(|| async {
            let name = format!("t{}", next.fetch_add(1, Ordering::Relaxed));
            let spec = as_task(name.clone(), |ctx| async move {
                ctx.cancelled().await;
                R::Ok(())
            })
            .restart(Restart::Temporary);
            spawn_task(&manager, spec).await.expect("spawn");
            root.terminate_child(&name).await.expect("terminate");
        })
    });
    g.bench_function("kernel worker spawn + terminate (no task)", |b| {
        b.to_async(&rt).iter(|| async {
            let name = format!("w{}", next.fetch_add(1, Ordering::Relaxed));
            let spec = uno_runtime::actors::WorkerSpec::new(name.clone(), |_| (Idle, ())).restart(Restart::Temporary);
            manager.spawn(spec).await.expect("spawn");
            root.terminate_child(&name).await.expect("terminate");
        })
    });
    g.bench_function("raw ractor spawn + stop", |b| {
        b.to_async(&rt).iter(|| async {
            let (actor, join) = Actor::spawn(None, Idle, ()).await.expect("spawn");
            actor.stop(None);
            join.await.expect("join");
        })
    });
    g.finish();
}

criterion_group!(benches, group_join, run_one, supervised);
criterion_main!(benches);
