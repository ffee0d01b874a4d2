//! Resources beside the raw things they wrap: AsyncCache vs DashMap and moka,
//! AsyncBatcher throughput per batch size.
//!
//! cargo bench --bench resources -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use uno_runtime::batch::AsyncBatcher;
use uno_runtime::cache::AsyncCache;

const KEYS: u64 = 100_000;

fn rt() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

fn cache_hit(c: &mut Criterion) {
    let rt = rt();
    let _guard = rt.enter();
    let value = Arc::new(String::from("value"));

    let raw: DashMap<u64, Arc<String>> = DashMap::new();
    let uno: AsyncCache<u64, Arc<String>> = match AsyncCache::builder("bench")
        .ttl(Duration::from_secs(3600))
        .max_capacity(2 * KEYS as usize)
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let coarse: AsyncCache<u64, Arc<String>> = match AsyncCache::builder("bench-coarse")
        .ttl(Duration::from_secs(3600))
        .max_capacity(2 * KEYS as usize)
        .coarse_clock(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let moka: moka::future::Cache<u64, Arc<String>> = moka::future::Cache::builder()
        .max_capacity(2 * KEYS)
        .time_to_live(Duration::from_secs(3600))
        .build();
    rt.block_on(async {
        for k in 0..KEYS {
            raw.insert(k, value.clone());
            uno.insert(k, value.clone());
            coarse.insert(k, value.clone());
            moka.insert(k, value.clone()).await;
        }
    });

    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(1));
    let mut k = 0u64;
    let mut next = move || {
        k = (k + 7919) % KEYS;
        k
    };
    g.bench_function("raw_dashmap_get", |b| {
        b.iter(|| black_box(raw.get(&next()).map(|v| v.clone())))
    });
    g.bench_function("uno_cache_get", |b| b.iter(|| black_box(uno.get(&next()))));
    g.bench_function("uno_cache_get_coarse_clock", |b| {
        b.iter(|| black_box(coarse.get(&next())))
    });
    g.bench_function("moka_future_get", |b| {
        b.to_async(&rt).iter(|| {
            let k = next();
            let moka = &moka;
            async move { black_box(moka.get(&k).await) }
        })
    });
    g.finish();
}

fn cache_miss(c: &mut Criterion) {
    const PER_ITER: u64 = 100;
    let rt = rt();
    let mut g = c.benchmark_group("cache_miss_load");
    g.throughput(Throughput::Elements(PER_ITER));
    // Every iteration loads 100 fresh keys through the loader, from a task running on a
    // runtime worker (as a server's handlers do); big capacity, so no eviction.
    let uno: Arc<AsyncCache<u64, u64>> = match AsyncCache::builder("bench-miss")
        .ttl(Duration::from_secs(3600))
        .max_capacity(100_000_000)
        .build()
    {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("{e}"),
    };
    let moka: Arc<moka::future::Cache<u64, u64>> = Arc::new(
        moka::future::Cache::builder()
            .max_capacity(100_000_000)
            .time_to_live(Duration::from_secs(3600))
            .build(),
    );
    let mut n = 0u64;
    g.bench_function("uno_get_with", |b| {
        b.to_async(&rt).iter(|| {
            n += PER_ITER;
            let (uno, base) = (uno.clone(), n);
            async move {
                let t = tokio::spawn(async move {
                    for k in base..base + PER_ITER {
                        let r = uno.get_with(k, move || async move { Ok::<_, std::io::Error>(k) }).await;
                        black_box(r.ok());
                    }
                });
                black_box(t.await.is_ok())
            }
        })
    });
    let mut m = 0u64;
    g.bench_function("moka_get_with", |b| {
        b.to_async(&rt).iter(|| {
            m += PER_ITER;
            let (moka, base) = (moka.clone(), m);
            async move {
                let t = tokio::spawn(async move {
                    for k in base..base + PER_ITER {
                        black_box(moka.get_with(k, async move { k }).await);
                    }
                });
                black_box(t.await.is_ok())
            }
        })
    });
    g.finish();
}

fn batcher(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("batcher_items");
    for size in [1usize, 10, 100] {
        let items = 10 * size as u64;
        g.throughput(Throughput::Elements(items));
        g.bench_with_input(BenchmarkId::new("uno_batcher", size), &size, |b, &size| {
            let batcher = {
                let _guard = rt.enter();
                match AsyncBatcher::builder("bench")
                    .max_batch_size(size)
                    .max_wait(Duration::from_millis(1))
                    .max_concurrent(2)
                    .build(|v: Vec<u64>| async move { Ok::<_, std::io::Error>(v) })
                {
                    Ok(b) => b,
                    Err(e) => panic!("{e}"),
                }
            };
            b.to_async(&rt).iter(|| {
                let batcher = &batcher;
                async move {
                    let all = futures::future::join_all((0..items).map(|i| batcher.submit(i))).await;
                    black_box(all.len())
                }
            })
        });
        // The raw thing: the same no-op function called directly on whole batches.
        g.bench_with_input(BenchmarkId::new("raw_direct_call", size), &size, |b, &size| {
            let f = |v: Vec<u64>| async move { Ok::<_, std::io::Error>(v) };
            b.to_async(&rt).iter(|| async move {
                let mut n = 0usize;
                for chunk in (0..items).collect::<Vec<_>>().chunks(size) {
                    n += f(chunk.to_vec()).await.map(|v| v.len()).unwrap_or(0);
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cache_hit, cache_miss, batcher);
criterion_main!(benches);
