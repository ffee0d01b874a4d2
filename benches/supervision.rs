//! The supervision kernel beside raw ractor, in the same run.
//!
//! `cargo bench -p uno-benches --bench supervision` (add `-- --warm-up-time 1 --measurement-time 3` for a
//! quicker run). Each group has an `uno` and a `raw` case; BENCHMARKS.md keeps the ratios.

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use uno_runtime::actors::{
    AsyncManager, ChildContext, Intensity, ManagerConfig, RefError, RestartBackoff, SupervisedRef, SupervisorSpec,
    WorkerSpec,
};

struct Worker;

enum Msg {
    Bump,
    Get(RpcReplyPort<u64>),
    Fail,
}

impl Actor for Worker {
    type Msg = Msg;
    type State = (u64, u64);
    type Arguments = u64;

    async fn pre_start(&self, _: ActorRef<Msg>, incarnation: u64) -> Result<(u64, u64), ActorProcessingErr> {
        Ok((0, incarnation))
    }

    async fn handle(&self, _: ActorRef<Msg>, msg: Msg, state: &mut (u64, u64)) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Bump => state.0 += 1,
            Msg::Get(r) => {
                let _ = r.send(state.1);
            }
            Msg::Fail => return Err("asked to fail".into()),
        }
        Ok(())
    }
}

fn worker(name: &str) -> WorkerSpec<Worker> {
    WorkerSpec::new(name, |ctx: &ChildContext| (Worker, ctx.incarnation())).backoff(RestartBackoff::immediate())
}

/// A hand-written ractor parent that respawns its child in `handle_supervisor_evt` and
/// publishes the current child on a watch channel.
struct RawParent;

impl Actor for RawParent {
    type Msg = ();
    type State = (u64, watch::Sender<Option<ActorRef<Msg>>>);
    type Arguments = watch::Sender<Option<ActorRef<Msg>>>;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        tx: watch::Sender<Option<ActorRef<Msg>>>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (child, _) = Actor::spawn_linked(None, Worker, 1, myself.get_cell()).await?;
        let _ = tx.send(Some(child));
        Ok((1, tx))
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(..) = evt {
            state.0 += 1;
            let (child, _) = Actor::spawn_linked(None, Worker, state.0, myself.get_cell()).await?;
            let _ = state.1.send(Some(child));
        }
        Ok(())
    }
}

/// A parent that only holds children (for the spawn/stop and tree-walk comparisons).
struct Holder;

impl Actor for Holder {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Message paths (cast, call, restart) are measured on one thread: on two cores, cross-thread
/// wake-ups dominate and make the same case swing by 2x between runs, hiding uno's own cost.
fn single_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn manager() -> AsyncManager {
    AsyncManager::start(ManagerConfig {
        intensity: Intensity::new(u32::MAX, Duration::from_secs(1)).unwrap(),
        ..Default::default()
    })
    .await
    .unwrap()
}

const CASTS: u64 = 10_000;

fn cast_throughput(c: &mut Criterion) {
    let rt = single_thread_runtime();
    let (m, uno, raw) = rt.block_on(async {
        let m = manager().await;
        let uno = m.spawn(worker("w")).await.unwrap();
        let (raw, _) = Actor::spawn(None, Worker, 1).await.unwrap();
        (m, uno, raw)
    });
    let mut g = c.benchmark_group("cast");
    g.throughput(Throughput::Elements(CASTS));
    g.bench_function("uno SupervisedRef::cast", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..CASTS {
                uno.cast(Msg::Bump).await.map_err(|e| e.reason).unwrap();
            }
            uno.call(Msg::Get).await.unwrap();
        })
    });
    g.bench_function("raw ActorRef::cast", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..CASTS {
                raw.cast(Msg::Bump).unwrap();
            }
            ractor::call!(raw, Msg::Get).unwrap();
        })
    });
    g.finish();
    rt.block_on(m.shutdown(Duration::from_secs(5)));
    raw.stop(None);
}

fn call_round_trip(c: &mut Criterion) {
    let rt = single_thread_runtime();
    let (m, uno, raw) = rt.block_on(async {
        let m = manager().await;
        let uno = m.spawn(worker("w")).await.unwrap();
        let (raw, _) = Actor::spawn(None, Worker, 1).await.unwrap();
        (m, uno, raw)
    });
    let mut g = c.benchmark_group("call");
    g.bench_function("uno SupervisedRef::call", |b| {
        b.to_async(&rt).iter(|| async { uno.call(Msg::Get).await.unwrap() })
    });
    g.bench_function("raw ractor call", |b| {
        b.to_async(&rt).iter(|| async { ractor::call!(raw, Msg::Get).unwrap() })
    });
    g.finish();
    rt.block_on(m.shutdown(Duration::from_secs(5)));
    raw.stop(None);
}

async fn uno_restart(r: &SupervisedRef<Msg>) {
    let old = r.incarnation();
    r.cast(Msg::Fail).await.map_err(|e| e.reason).unwrap();
    loop {
        match r.call(Msg::Get).await {
            Ok(_) if r.incarnation() != old => return,
            Ok(_) | Err(RefError::NoReply { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn raw_restart(current: &watch::Receiver<Option<ActorRef<Msg>>>) {
    let Some(old) = current.borrow().clone() else { return };
    old.cast(Msg::Fail).unwrap();
    loop {
        let now = current.borrow().clone();
        if let Some(now) = now.filter(|n| n.get_id() != old.get_id()) {
            if let Ok(ractor::rpc::CallResult::Success(_)) = now.call(Msg::Get, None).await {
                return;
            }
        }
        tokio::task::yield_now().await;
    }
}

fn restart_latency(c: &mut Criterion) {
    let rt = single_thread_runtime();
    let (m, uno, raw_parent, raw_current) = rt.block_on(async {
        let m = manager().await;
        let uno = m.spawn(worker("w")).await.unwrap();
        let (tx, rx) = watch::channel(None);
        let (parent, _) = Actor::spawn(None, RawParent, tx).await.unwrap();
        (m, uno, parent, rx)
    });
    let mut g = c.benchmark_group("restart");
    g.bench_function("uno supervisor restart, then call", |b| {
        b.to_async(&rt).iter(|| uno_restart(&uno))
    });
    g.bench_function("raw respawn in handle_supervisor_evt, then call", |b| {
        b.to_async(&rt).iter(|| raw_restart(&raw_current))
    });
    g.finish();
    rt.block_on(m.shutdown(Duration::from_secs(5)));
    raw_parent.stop_children(None);
    raw_parent.stop(None);
}

const CHILDREN: usize = 10_000;

async fn uno_spawn_stop(m: &AsyncManager, n: usize) {
    let sup = m.spawn_supervisor(SupervisorSpec::new("many")).await.unwrap();
    for i in 0..n {
        sup.start_worker(worker(&format!("w{i}"))).await.unwrap();
    }
    let root = m.root().unwrap();
    root.terminate_child("many").await.unwrap();
    root.delete_child("many").await.unwrap();
}

async fn uno_spec_spawn_stop(m: &AsyncManager, n: usize) {
    let mut spec = SupervisorSpec::new("many");
    for i in 0..n {
        spec = spec.child(worker(&format!("w{i}")));
    }
    m.spawn_supervisor(spec).await.unwrap();
    let root = m.root().unwrap();
    root.terminate_child("many").await.unwrap();
    root.delete_child("many").await.unwrap();
}

async fn raw_spawn_stop(n: usize) {
    let (holder, handle) = Actor::spawn(None, Holder, ()).await.unwrap();
    for i in 0..n {
        Actor::spawn_linked(None, Worker, i as u64, holder.get_cell())
            .await
            .unwrap();
    }
    holder.stop_children_and_wait(None, None).await;
    holder.stop(None);
    handle.await.unwrap();
}

fn spawn_and_stop(c: &mut Criterion) {
    let rt = runtime();
    let m = rt.block_on(manager());
    let mut g = c.benchmark_group("spawn_stop_10k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CHILDREN as u64));
    g.bench_function("uno start_worker x10k, then stop", |b| {
        b.to_async(&rt).iter(|| uno_spawn_stop(&m, CHILDREN))
    });
    g.bench_function("uno SupervisorSpec with 10k children, then stop", |b| {
        b.to_async(&rt).iter(|| uno_spec_spawn_stop(&m, CHILDREN))
    });
    g.bench_function("raw spawn_linked x10k, then stop", |b| {
        b.to_async(&rt).iter(|| raw_spawn_stop(CHILDREN))
    });
    g.finish();
    rt.block_on(m.shutdown(Duration::from_secs(30)));
}

fn walk(cell: &ActorCell) -> usize {
    1 + cell.get_children().iter().map(walk).sum::<usize>()
}

fn tree_snapshot(c: &mut Criterion) {
    let rt = runtime();
    let (m, holder) = rt.block_on(async {
        let m = manager().await;
        // 100 supervisors × 99 workers + root + 100 = 10,001 nodes.
        for s in 0..100 {
            let mut spec = SupervisorSpec::new(format!("s{s}"));
            for w in 0..99 {
                spec = spec.child(worker(&format!("w{w}")));
            }
            m.spawn_supervisor(spec).await.unwrap();
        }
        let (holder, _) = Actor::spawn(None, Holder, ()).await.unwrap();
        for s in 0..100 {
            let (sup, _) = Actor::spawn_linked(None, Holder, (), holder.get_cell()).await.unwrap();
            for w in 0..99 {
                Actor::spawn_linked(None, Worker, w, sup.get_cell()).await.unwrap();
            }
            let _ = s;
        }
        (m, holder)
    });
    assert_eq!(m.tree().len(), 10_001);
    assert_eq!(walk(&holder.get_cell()), 10_001);
    let mut g = c.benchmark_group("tree_10k");
    g.sample_size(20);
    g.bench_function("uno AsyncManager::tree", |b| b.iter(|| m.tree().root.children.len()));
    g.bench_function("raw recursive get_children walk", |b| {
        b.iter(|| walk(&holder.get_cell()))
    });
    g.finish();
    rt.block_on(m.shutdown(Duration::from_secs(30)));
    holder.stop(None);
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Memory per idle actor: RSS delta over 10,000 actors, uno and raw, each measured from a fresh
/// baseline in the same process.
fn memory_per_actor(_: &mut Criterion) {
    let rt = runtime();
    let n = CHILDREN;
    let raw = rt.block_on(async {
        let before = rss_bytes();
        let (holder, handle) = Actor::spawn(None, Holder, ()).await.unwrap();
        for i in 0..n {
            Actor::spawn_linked(None, Worker, i as u64, holder.get_cell())
                .await
                .unwrap();
        }
        let per = (rss_bytes().saturating_sub(before)) as f64 / n as f64;
        holder.stop_children_and_wait(None, None).await;
        holder.stop(None);
        handle.await.unwrap();
        per
    });
    let uno = rt.block_on(async {
        let m = manager().await;
        let before = rss_bytes();
        let sup = m.spawn_supervisor(SupervisorSpec::new("many")).await.unwrap();
        let refs: Vec<_> = {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(sup.start_worker(worker(&format!("w{i}"))).await.unwrap());
            }
            v
        };
        let per = (rss_bytes().saturating_sub(before)) as f64 / n as f64;
        drop(refs);
        m.shutdown(Duration::from_secs(30)).await;
        per
    });
    println!(
        "memory per idle actor (RSS delta / {n}): uno {uno:.0} B, raw {raw:.0} B, ratio {:.2}",
        uno / raw.max(1.0)
    );
}

criterion_group!(
    benches,
    memory_per_actor,
    cast_throughput,
    call_round_trip,
    restart_latency,
    spawn_and_stop,
    tree_snapshot
);
criterion::criterion_main!(benches);
