//! Pool checkout and resource calls through uno, beside the raw thing each wraps.
//!
//! - `pool/acquire_release`: `AsyncResourcePool::acquire` + drop vs raw bb8 `Pool::get` + drop,
//!   same manager, same settings (max 10, min idle 1, no checkout test).
//! - `resource/call`: `ResourceHandle::call` round trip vs a raw ractor call to an actor owning
//!   the same value.
//!
//! Run: `cargo bench -p uno-runtime --bench resources_pool -- --warm-up-time 1 --measurement-time 3`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uno_runtime::actors::{AsyncManager, ManagerConfig};
use uno_runtime::resource::{AsyncResource, AsyncResourcePool, PoolConfig, ResourceHandle, ResourceOptions};

/// An in-memory bb8 manager: the cost measured is the pool's, not a connection's.
struct Numbers(AtomicU64);

impl bb8::ManageConnection for Numbers {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed))
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// An in-memory resource.
struct Cell(u64);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl AsyncResource for Cell {
    type Config = ();
    type Error = Never;
    async fn open(_: &()) -> Result<Self, Never> {
        Ok(Cell(0))
    }
    async fn close(self) {}
    async fn health_check(&mut self) -> Result<(), Never> {
        Ok(())
    }
}

/// The raw ractor actor owning the same value.
struct RawCell;

impl Actor for RawCell {
    type Msg = RpcReplyPort<u64>;
    type State = u64;
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(&self, _: ActorRef<Self::Msg>, reply: Self::Msg, n: &mut u64) -> Result<(), ActorProcessingErr> {
        *n += 1;
        let _ = reply.send(*n);
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    }
}

fn pool(c: &mut Criterion) {
    let rt = runtime();
    let config = PoolConfig {
        max_size: 10,
        min_idle: Some(1),
        ..PoolConfig::default()
    };
    let (manager, uno, raw) = rt.block_on(async {
        let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
        let uno = AsyncResourcePool::spawn(&manager, "pool", |_| Numbers(AtomicU64::new(0)), config)
            .await
            .unwrap();
        let raw = bb8::Pool::builder()
            .max_size(config.max_size)
            .min_idle(config.min_idle)
            .max_lifetime(config.max_lifetime)
            .idle_timeout(config.idle_timeout)
            .connection_timeout(config.acquire_timeout)
            .test_on_check_out(false)
            .reaper_rate(config.reaper_rate)
            .build(Numbers(AtomicU64::new(0)))
            .await
            .unwrap();
        (manager, uno, raw)
    });
    let mut g = c.benchmark_group("pool/acquire_release");
    g.bench_function("uno", |b| {
        b.to_async(&rt).iter(|| async {
            let conn = uno.acquire().await.unwrap();
            std::hint::black_box(*conn);
        })
    });
    g.bench_function("raw_bb8", |b| {
        b.to_async(&rt).iter(|| async {
            let conn = raw.get().await.unwrap();
            std::hint::black_box(*conn);
        })
    });
    g.finish();
    rt.block_on(manager.shutdown(Duration::from_secs(1)));
}

fn resource(c: &mut Criterion) {
    let rt = runtime();
    let (manager, uno, raw) = rt.block_on(async {
        let manager = AsyncManager::start(ManagerConfig::default()).await.unwrap();
        let uno = ResourceHandle::<Cell>::spawn(&manager, "cell", (), ResourceOptions::default())
            .await
            .unwrap();
        let (raw, _) = Actor::spawn(None, RawCell, ()).await.unwrap();
        (manager, uno, raw)
    });
    let mut g = c.benchmark_group("resource/call");
    g.bench_function("uno", |b| {
        b.to_async(&rt).iter(|| async {
            let n = uno
                .call(|cell| {
                    Box::pin(async move {
                        cell.0 += 1;
                        cell.0
                    })
                })
                .await
                .unwrap();
            std::hint::black_box(n);
        })
    });
    g.bench_function("raw_ractor", |b| {
        b.to_async(&rt).iter(|| async {
            let n = raw.call(|reply| reply, None).await.unwrap();
            std::hint::black_box(n);
        })
    });
    g.finish();
    raw.stop(None);
    rt.block_on(manager.shutdown(Duration::from_secs(1)));
}

criterion_group!(benches, pool, resource);
criterion_main!(benches);
