//! The database layer beside raw tokio-postgres and bb8-postgres, against the server at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); skipped with a message
//! when none answers.
//!
//! cargo bench --bench db -- --warm-up-time 1 --measurement-time 3

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::join_all;
use tokio::runtime::Runtime;
use tokio_postgres::NoTls;
use uno_runtime::actors::{AsyncManager, ManagerConfig};
use uno_runtime::db::{Db, DbConfig, InsertRow, Param};

fn url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

async fn raw_client() -> Option<tokio_postgres::Client> {
    let url = url();
    let connect = tokio_postgres::connect(&url, NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(3), connect).await.ok()?.ok()?;
    tokio::spawn(conn);
    Some(client)
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    if rt.block_on(raw_client()).is_none() {
        eprintln!("*** benches/db.rs: no PostgreSQL at DATABASE_URL; skipped ***");
        return;
    }
    let (manager, db, raw, raws, bb8pool, table) = rt.block_on(async {
        let manager = AsyncManager::start(ManagerConfig::default()).await.expect("manager");
        let config = DbConfig::from_url(&url())
            .expect("url")
            .application_name("uno-bench")
            .max_connections(20);
        let db = Db::start(&manager, "db", config).await.expect("db");
        let raw = raw_client().await.expect("raw");
        let mut raws = Vec::new();
        for _ in 0..16 {
            raws.push(raw_client().await.expect("raw"));
        }
        let bb8pool = bb8::Pool::builder()
            .max_size(20)
            .build(bb8_postgres::PostgresConnectionManager::new(
                url().parse().expect("url"),
                NoTls,
            ))
            .await
            .expect("bb8");
        let table = format!("uno_bench_{}", std::process::id());
        raw.batch_execute(&format!("CREATE TABLE {table} (id serial PRIMARY KEY, n int)"))
            .await
            .expect("table");
        (manager, db, raw, raws, bb8pool, table)
    });

    let mut g = c.benchmark_group("db/select1");
    let session = std::sync::Arc::new(tokio::sync::Mutex::new(rt.block_on(db.session()).expect("session")));
    g.bench_function("uno_session", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let session = session.clone();
            async move {
                let mut s = session.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    s.query_one("SELECT 1", &[]).await.expect("q");
                }
                start.elapsed()
            }
        })
    });
    let stmt = rt.block_on(raw.prepare("SELECT 1")).expect("prepare");
    g.bench_function("raw_client", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (raw, stmt) = (&raw, &stmt);
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    raw.query_one(stmt, &[]).await.expect("q");
                }
                start.elapsed()
            }
        })
    });
    g.bench_function("uno_session_per_query", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = db.session().await.expect("session");
            s.query_one("SELECT 1", &[]).await.expect("q")
        })
    });
    g.bench_function("bb8_postgres_defaults", |b| {
        b.to_async(&rt).iter(|| async {
            let conn = bb8pool.get().await.expect("get");
            conn.query_typed("SELECT 1", &[]).await.expect("q")
        })
    });
    g.finish();
    drop(session);

    let mut g = c.benchmark_group("db/select1_x16");
    let stmts: Vec<_> = rt.block_on(join_all(raws.iter().map(|r| r.prepare("SELECT 1"))));
    g.bench_function("uno_16_sessions", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let db = db.clone();
            async move {
                let per = iters.div_ceil(16);
                let mut sessions = Vec::new();
                for _ in 0..16 {
                    sessions.push(db.session().await.expect("session"));
                }
                let start = Instant::now();
                let tasks: Vec<_> = sessions
                    .into_iter()
                    .map(|mut s| {
                        tokio::spawn(async move {
                            for _ in 0..per {
                                s.query_one("SELECT 1", &[]).await.expect("q");
                            }
                        })
                    })
                    .collect();
                join_all(tasks).await;
                start.elapsed()
            }
        })
    });
    g.bench_function("raw_16_clients", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let per = iters.div_ceil(16);
            let work: Vec<_> = raws
                .iter()
                .zip(&stmts)
                .map(|(r, s)| {
                    let s = s.as_ref().expect("prepare").clone();
                    async move {
                        for _ in 0..per {
                            r.query_one(&s, &[]).await.expect("q");
                        }
                    }
                })
                .collect();
            async move {
                let start = Instant::now();
                join_all(work).await;
                start.elapsed()
            }
        })
    });
    g.finish();

    // One INSERT per row is 10,000 round trips per iteration (about a second): flat sampling
    // with 10 samples keeps this group to a few dozen iterations in all.
    let mut g = c.benchmark_group("db/insert_10k");
    g.sample_size(10).sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("uno_insert_batched", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (db, table) = (db.clone(), table.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let inserts = (0..10_000i32).map(|n| db.insert_batched(&table, InsertRow::new().set("n", n)));
                    for r in join_all(inserts).await {
                        r.expect("insert");
                    }
                }
                start.elapsed()
            }
        })
    });
    // One autocommitted INSERT per row costs a WAL flush each (about 1 ms on a loaded
    // machine): this case inserts 1,000 rows per iteration; multiply by 10 to compare with the
    // 10,000 rows of `uno_insert_batched`.
    g.bench_function("one_insert_per_row_same_pool_1k_rows", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (db, table) = (db.clone(), table.clone());
            async move {
                let sql = format!("INSERT INTO {table} (n) VALUES ($1) RETURNING *");
                let mut s = db.session().await.expect("session");
                let start = Instant::now();
                for _ in 0..iters {
                    for n in 0..1_000i32 {
                        s.query_one(&sql, &[&n]).await.expect("insert");
                    }
                }
                start.elapsed()
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("db/cached");
    let ttl = Duration::from_secs(600);
    let sql = "SELECT $1::int4 + 1";
    g.bench_function("uno_query_cached_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let params: Vec<Param> = vec![Box::new(1i32)];
            db.query_cached(sql, params, ttl).await.expect("cached")
        })
    });
    let stmt = rt.block_on(raw.prepare(sql)).expect("prepare");
    g.bench_function("raw_select_round_trip", |b| {
        b.to_async(&rt)
            .iter(|| async { raw.query(&stmt, &[&1i32]).await.expect("q") })
    });
    g.finish();

    rt.block_on(async {
        db.flush().await;
        let _ = raw.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await;
        manager.shutdown(Duration::from_secs(5)).await;
    });
}

criterion_group!(db_benches, benches);
criterion_main!(db_benches);
