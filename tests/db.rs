//! The database layer against a real PostgreSQL (see tests/support/db.rs for skipping).

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::db::{self as tdb, Schema};
use uno_runtime::actors::backoff::Backoff;
use uno_runtime::actors::{AsyncManager, ManagerConfig};
use uno_runtime::db::{connect, Db, DbConfig, DbError, DbOp, InsertRow, IsolationLevel, Param, TxOp, TxOptions};
use uno_runtime::resilience::RetryPolicy;

async fn manager() -> AsyncManager {
    AsyncManager::start(ManagerConfig::default()).await.expect("manager")
}

fn config(app: &str) -> DbConfig {
    DbConfig::from_url(&tdb::url()).expect("url").application_name(app)
}

/// Whether the connection handed out now is outside any transaction, and its backend pid.
async fn clean_connection(db: &Db) -> (bool, i32) {
    let mut s = db.session().await.expect("session");
    // SAVEPOINT fails with 25P01 outside a transaction block, with 25P02 inside an aborted
    // one, and succeeds inside an open one.
    let probe = s.raw_client().unwrap().batch_execute("SAVEPOINT uno_probe").await;
    let outside = probe.is_err_and(|e| e.code().map(|c| c.code()) == Some("25P01"));
    let pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
    (outside, pid)
}

#[tokio::test]
async fn connect_retries_until_a_connection_slot_frees() {
    let Some(schema) = Schema::create("connect_retries").await else {
        return;
    };
    let role = tdb::unique("uno_role");
    schema
        .admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
        .await
        .unwrap();
    let cfg = config("uno-retry").user(&role).connect_attempts(1);
    let holder = connect(&cfg).await.expect("first connection of the role");

    // No retries: the role's limit is a transient failure, reported with its SQLSTATE.
    let err = connect(&cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Connect {
                transient: true,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some("53300"), "{err}");

    // With retries: freed while retrying.
    let cfg = cfg
        .connect_attempts(50)
        .connect_backoff(Backoff::constant(Duration::from_millis(50)).unwrap());
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(holder);
    });
    let conn = connect(&cfg).await.expect("connects once the slot is free");
    assert!(started.elapsed() >= Duration::from_millis(250));
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = schema.admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn permanent_failures_fail_at_once_with_the_servers_message() {
    // The local server trusts every connection from 127.0.0.1 and the Unix socket
    // (pg_hba.conf: `host all all 127.0.0.1/32 trust`, `local all all trust`), so a wrong
    // password is accepted there and 28P01 cannot be produced; the unknown database (3D000) and
    // unknown role (28000) take the same permanent path.
    let Some(admin) = tdb::admin("permanent_failures").await else {
        return;
    };
    drop(admin);
    let slow_retries = |c: DbConfig| {
        c.connect_attempts(10)
            .connect_backoff(Backoff::constant(Duration::from_secs(1)).unwrap())
    };
    let started = Instant::now();
    let err = connect(&slow_retries(config("uno-perm").dbname("uno_no_such_db")))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "not retried");
    assert!(
        matches!(
            err,
            DbError::Connect {
                transient: false,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some("3D000"));
    assert!(err.to_string().contains("uno_no_such_db"), "{err}");

    let err = connect(&slow_retries(config("uno-perm").user("uno_no_such_role")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("28000"), "{err}");
    assert!(err.to_string().contains("uno_no_such_role"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "not retried");

    // A Db node's start fails the same way.
    let manager = manager().await;
    let err = Db::start(&manager, "db", config("uno-perm").dbname("uno_no_such_db"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("3D000"), "{err}");
    manager.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_password_never_shows() {
    let Some(schema) = Schema::create("password").await else {
        return;
    };
    let password = "S3cret-Pa55word";
    let url = tdb::url().replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1);
    let cfg = DbConfig::from_url(&url).unwrap().application_name("uno-pw");
    assert_eq!(cfg.password().map(|p| p.expose()), Some(password));
    assert!(!format!("{cfg:?} {cfg}").contains(password));
    assert!(!format!("{:?}", cfg.password()).contains(password));
    let err = connect(&cfg.clone().dbname("uno_no_such_db")).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains(password), "{err:?}");
    let err = DbConfig::from_url(&format!("postgres://u:{password}@h:notaport/db")).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(password), "{err:?}");

    let manager = manager().await;
    let db = Db::start(&manager, "db", cfg.clone()).await.unwrap();
    let mut s = db.session().await.unwrap();
    let err = s.query("SELECT * FROM uno_missing_table", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("42P01"));
    let tree = manager.tree();
    let everything = format!(
        "{tree} {} {tree:?} {db:?} {s:?} {err:?} {:?}",
        serde_json::to_string(&tree).unwrap(),
        db.factory().unwrap()
    );
    assert!(!everything.contains(password));
    drop(s);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn commit_and_rollback_paths() {
    let Some(schema) = Schema::create("commit_rollback").await else {
        return;
    };
    let t = schema.t("items");
    schema
        .admin
        .batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-tx")).await.unwrap();
    let mut s = db.session().await.unwrap();
    let insert = format!("INSERT INTO {t} VALUES ($1)");

    // Closure form: Ok commits, Err rolls back.
    let sql = insert.clone();
    s.transaction(|tx| Box::pin(async move { tx.execute(&sql, &[&1]).await }))
        .await
        .unwrap();
    let sql = insert.clone();
    let err = s
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute(&sql, &[&2]).await?;
                tx.execute(&sql, &[&1]).await // duplicate key
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("23505"), "{err}");
    assert!(err.to_string().contains(&format!("session #{}", s.id())), "{err}");
    // Guard form.
    let mut tx = s.begin().await.unwrap();
    tx.execute(&insert, &[&3]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.execute(&insert, &[&4]).await.unwrap();
    tx.rollback().await.unwrap();
    // Options: read only refuses writes.
    let mut tx = s.begin_with(TxOptions::new().read_only(true)).await.unwrap();
    let err = tx.execute(&insert, &[&5]).await.unwrap_err();
    assert_eq!(err.code(), Some("25006"), "{err}");
    drop(tx);
    // Options: a statement timeout inside the transaction.
    let mut tx = s
        .begin_with(
            TxOptions::new()
                .isolation(IsolationLevel::RepeatableRead)
                .statement_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let err = tx.execute("SELECT pg_sleep(2)", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("57014"), "{err}");
    tx.rollback().await.unwrap();

    let ids: Vec<i32> = s
        .query(&format!("SELECT id FROM {t} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3]);
    assert!(!s.in_transaction());
    drop(s);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn rollback_on_drop_panic_and_cancellation_then_a_clean_connection() {
    let Some(schema) = Schema::create("rollback_paths").await else {
        return;
    };
    let t = schema.t("items");
    schema
        .admin
        .batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let manager = manager().await;
    // One connection: the next session gets the very connection the last one left.
    let db = Db::start(&manager, "db", config("uno-rb").max_connections(1))
        .await
        .unwrap();
    let insert = format!("INSERT INTO {t} VALUES ($1)");
    let (clean, pid0) = clean_connection(&db).await;
    assert!(clean);

    // Dropped guard and session: a tracked cleanup rolls back before the connection returns.
    {
        let mut s = db.session().await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.execute(&insert, &[&1]).await.unwrap();
        drop(tx);
        drop(s);
    }
    let (clean, pid) = clean_connection(&db).await;
    assert!(clean, "after drop");
    assert_eq!(pid, pid0, "rolled back and reused, not discarded");

    // Dropped guard, session reused: its next statement rolls back first.
    {
        let mut s = db.session().await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.execute(&insert, &[&2]).await.unwrap();
        drop(tx);
        // Had the transaction still been open, this would be rolled back with it.
        s.execute(&insert, &[&20]).await.unwrap();
        s.execute(&format!("DELETE FROM {t} WHERE id = 20"), &[]).await.unwrap();
        assert!(!s.in_transaction());
    }

    // Panic inside a transaction.
    let db2 = db.clone();
    let sql = insert.clone();
    let joined = tokio::spawn(async move {
        let mut s = db2.session().await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.execute(&sql, &[&3]).await.unwrap();
        panic!("boom inside a transaction");
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let (clean, pid) = clean_connection(&db).await;
    assert!(clean, "after panic");
    assert_eq!(pid, pid0);

    // Cancellation: the task is aborted while a statement of its transaction runs.
    let db2 = db.clone();
    let sql = insert.clone();
    let task = tokio::spawn(async move {
        let mut s = db2.session().await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.execute(&sql, &[&4]).await.unwrap();
        tx.execute("SELECT pg_sleep(30)", &[]).await.unwrap();
    });
    wait_for_active(&schema, "uno-rb", "pg_sleep(30)").await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (clean, pid) = clean_connection(&db).await;
    assert!(clean, "after cancellation");
    assert_ne!(pid, pid0, "a connection abandoned mid-statement is discarded");
    wait_until_no_active(&schema, "uno-rb", "pg_sleep(30)").await;

    let n: i64 = schema
        .admin
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing of the four transactions was committed");
    let report = manager.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    schema.drop_now().await;
}

async fn wait_for_active(schema: &Schema, app: &str, needle: &str) {
    for _ in 0..200 {
        if schema.active_queries(app).await.iter().any(|q| q.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{needle} never showed as active for {app}");
}

async fn wait_until_no_active(schema: &Schema, app: &str, needle: &str) {
    for _ in 0..250 {
        if !schema.active_queries(app).await.iter().any(|q| q.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{needle} still active for {app} on the server");
}

#[tokio::test]
async fn a_serialization_failure_is_retried() {
    let Some(schema) = Schema::create("serialization").await else {
        return;
    };
    let t = schema.t("doctors");
    schema
        .admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (name text PRIMARY KEY, on_call bool); INSERT INTO {t} VALUES ('a', true), ('b', true)"
        ))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-ser")).await.unwrap();
    let policy = RetryPolicy::<DbError>::builder()
        .max_attempts(10)
        .backoff(Backoff::constant(Duration::from_millis(10)).unwrap())
        .build()
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for me in ["a", "b"] {
        let (db, policy, barrier, attempts, t) =
            (db.clone(), policy.clone(), barrier.clone(), attempts.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = db.session().await.unwrap();
            let first = Arc::new(AtomicU32::new(0));
            s.retry_transaction_with(
                &policy,
                TxOptions::new().isolation(IsolationLevel::Serializable),
                |tx| {
                    let (barrier, attempts, first, t) = (barrier.clone(), attempts.clone(), first.clone(), t.clone());
                    Box::pin(async move {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        // Write skew: both read "two on call", then each goes off call.
                        let n: i64 = tx
                            .query_one(&format!("SELECT count(*) FROM {t} WHERE on_call"), &[])
                            .await?
                            .get(0);
                        if first.fetch_add(1, Ordering::SeqCst) == 0 {
                            barrier.wait().await;
                        }
                        if n >= 2 {
                            tx.execute(&format!("UPDATE {t} SET on_call = false WHERE name = $1"), &[&me])
                                .await?;
                        }
                        Ok(n)
                    })
                },
            )
            .await
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().expect("both succeed, one after a retry"));
    }
    seen.sort();
    assert_eq!(seen, vec![1, 2], "the retried one saw the other's commit");
    assert!(attempts.load(Ordering::SeqCst) >= 3);
    let on_call: i64 = schema
        .admin
        .query_one(&format!("SELECT count(*) FROM {t} WHERE on_call"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_call, 1);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn retry_transaction_commits_and_does_not_retry_other_errors() {
    let Some(schema) = Schema::create("retry_tx").await else {
        return;
    };
    let t = schema.t("counters");
    schema
        .admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, n int); INSERT INTO {t} VALUES (1, 0)"
        ))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-retry-tx")).await.unwrap();
    let policy = RetryPolicy::<DbError>::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::from_millis(5)).unwrap())
        .build()
        .unwrap();
    let mut s = db.session().await.unwrap();
    let n: i32 = s
        .retry_transaction(&policy, |tx| {
            let t = t.clone();
            Box::pin(async move {
                tx.execute(&format!("UPDATE {t} SET n = n + 1 WHERE id = 1"), &[])
                    .await?;
                Ok(tx
                    .query_one(&format!("SELECT n FROM {t} WHERE id = 1"), &[])
                    .await?
                    .get(0))
            })
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let attempts = AtomicU32::new(0);
    let err = s
        .retry_transaction(&policy, |tx| {
            attempts.fetch_add(1, Ordering::SeqCst);
            let t = t.clone();
            Box::pin(async move {
                tx.execute(&format!("UPDATE {t} SET n = n + 1 WHERE id = 1"), &[])
                    .await?;
                tx.execute("SELECT 1/0", &[]).await
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("22012"), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "a division by zero is not retried");
    assert!(!s.in_transaction());
    let n: i32 = s
        .query_one(&format!("SELECT n FROM {t} WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the failed attempt was rolled back");
    drop(s);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn cancelling_a_session_cancels_its_query_on_the_server() {
    let Some(schema) = Schema::create("server_cancel").await else {
        return;
    };
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-cancel")).await.unwrap();
    let mut s = db.session().await.unwrap();
    let token = s.cancel_token().clone();
    let (pid,): (i32,) = (s.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0),);
    let task = tokio::spawn(async move {
        let r = s.query("SELECT pg_sleep(30)", &[]).await;
        (r.map(|_| ()), s)
    });
    wait_for_active(&schema, "uno-cancel", "pg_sleep(30)").await;
    let started = Instant::now();
    token.cancel();
    let (result, s) = task.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(err.to_string().contains("pg_sleep(30)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server confirms: that backend is no longer running it.
    let state: Option<String> = schema
        .admin
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state.as_deref(), Some("idle"));
    drop(s);

    // Stopping the node cancels running statements the same way.
    let db2 = db.clone();
    let task = tokio::spawn(async move {
        let mut s = db2.session().await.unwrap();
        s.query("SELECT pg_sleep(31)", &[]).await.map(|_| ())
    });
    wait_for_active(&schema, "uno-cancel", "pg_sleep(31)").await;
    manager.shutdown(Duration::from_secs(5)).await;
    assert!(task.await.unwrap().unwrap_err().is_cancelled());
    wait_until_no_active(&schema, "uno-cancel", "pg_sleep(31)").await;
    assert!(matches!(db.session().await, Err(DbError::Closed { .. })));
    schema.drop_now().await;
}

#[tokio::test]
async fn a_terminated_backend_loses_nothing_and_the_pool_recovers() {
    let Some(schema) = Schema::create("terminate").await else {
        return;
    };
    let t = schema.t("items");
    schema
        .admin
        .batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-term").max_connections(1))
        .await
        .unwrap();
    let mut s = db.session().await.unwrap();
    let pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let mut tx = s.begin().await.unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[]).await.unwrap();
    let killed: bool = schema
        .admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let err = tx
        .execute(&format!("INSERT INTO {t} VALUES (2)"), &[])
        .await
        .unwrap_err();
    assert!(err.is_connection_lost() || err.code() == Some("57P01"), "{err:?}");
    assert!(tx.commit().await.is_err());
    drop(s);
    let (clean, new_pid) = clean_connection(&db).await;
    assert!(clean);
    assert_ne!(new_pid, pid, "the broken connection was replaced");
    let n: i64 = schema
        .admin
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no partial write");
    let node = manager.tree().find("root/db/pool").cloned().unwrap();
    assert!(node.stats["closed_broken"].as_u64().unwrap() >= 1, "{:?}", node.stats);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn an_operation_group_fails_fast_and_cancels_the_rest_on_the_server() {
    let Some(schema) = Schema::create("group_fail_fast").await else {
        return;
    };
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-group")).await.unwrap();
    let ok: Vec<DbOp<i32>> = (0..6)
        .map(|i| -> DbOp<i32> {
            Box::new(move |s| Box::pin(async move { Ok(s.query_one("SELECT $1::int4", &[&i]).await?.get(0)) }))
        })
        .collect();
    assert_eq!(
        db.group().unwrap().limit(3).run(ok).await.unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );

    let ops: Vec<DbOp<i32>> = vec![
        Box::new(|s| Box::pin(async move { Ok(s.query_one("SELECT 1 FROM pg_sleep(30)", &[]).await?.get(0)) })),
        Box::new(|s| Box::pin(async move { Ok(s.query_one("SELECT 1 FROM pg_sleep(30)", &[]).await?.get(0)) })),
        Box::new(|s| {
            Box::pin(async move {
                s.execute("SELECT pg_sleep(0.3)", &[]).await?;
                Ok(s.query_one("SELECT 1 / 0", &[]).await?.get(0))
            })
        }),
    ];
    let started = Instant::now();
    let err = db.group().unwrap().run(ops).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some("22012"),
        "the first error, not the cancellations: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until_no_active(&schema, "uno-group", "pg_sleep(30)").await;
    assert!(db.factory().unwrap().sessions().is_empty(), "every session closed");
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn in_transaction_is_all_or_nothing() {
    let Some(schema) = Schema::create("group_tx").await else {
        return;
    };
    let t = schema.t("items");
    schema
        .admin
        .batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-gtx")).await.unwrap();
    let ops = |ids: Vec<i32>| -> Vec<TxOp<u64>> {
        ids.into_iter()
            .map(|id| -> TxOp<u64> {
                let sql = format!("INSERT INTO {t} VALUES ($1)");
                Box::new(move |tx| Box::pin(async move { tx.execute(&sql, &[&id]).await }))
            })
            .collect()
    };
    let err = db.execute_in_transaction(ops(vec![1, 2, 1])).await.unwrap_err();
    assert_eq!(err.code(), Some("23505"));
    let count = || async {
        let n: i64 = schema
            .admin
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        n
    };
    assert_eq!(count().await, 0);
    assert_eq!(
        db.execute_in_transaction(ops(vec![1, 2, 3])).await.unwrap(),
        vec![1, 1, 1]
    );
    assert_eq!(count().await, 3);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn sessions_are_tracked_in_the_tree_and_leaks_reported() {
    let Some(schema) = Schema::create("leaks").await else {
        return;
    };
    let manager = manager().await;
    let cfg = config("uno-leak")
        .leak_threshold(Duration::from_millis(100))
        .max_sessions(2)
        .session_timeout(Duration::from_millis(100));
    let db = Db::start(&manager, "db", cfg).await.unwrap();
    let leaked = db.session().await.unwrap();
    let line = line!() - 1;
    let path = format!("root/db/sessions/session-{}", leaked.id());
    let node = manager
        .tree()
        .find(&path)
        .cloned()
        .expect("a live session is a leaf of its node");
    assert_eq!(node.kind.to_string(), "session");
    assert!(node.stats["opened_where"]
        .as_str()
        .unwrap()
        .ends_with(&format!("tests/db.rs:{line}")));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let report = db.factory().unwrap().leak_report(Duration::from_millis(100));
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].id, leaked.id());
    assert!(report[0].opened_where.ends_with(&format!("tests/db.rs:{line}")));
    let stats = manager.tree().find("root/db/sessions").cloned().unwrap().stats;
    assert_eq!(stats["sessions.leaked"], 1, "{stats:?}");
    assert_eq!(stats["sessions.open"], 1);

    // The session limit, named in the timeout error.
    let _second = db.session().await.unwrap();
    let err = db.session().await.unwrap_err();
    assert!(matches!(err, DbError::SessionLimit { limit: 2, .. }), "{err}");
    assert!(err.to_string().contains("limit of 2 open sessions"), "{err}");

    drop(leaked);
    assert!(manager.tree().find(&path).is_none(), "a closed session leaves the tree");
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn prepared_statements_are_cached_per_connection() {
    let Some(schema) = Schema::create("statement_cache").await else {
        return;
    };
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-stmt").max_connections(1))
        .await
        .unwrap();
    let mut s = db.session().await.unwrap();
    let count = "SELECT count(*) FROM pg_prepared_statements";
    let a = s.prepare("SELECT $1::int4 + 1").await.unwrap();
    let n1: i64 = s.query_one(count, &[]).await.unwrap().get(0);
    let _b = s.prepare("SELECT $1::int4 + 1").await.unwrap();
    let n2: i64 = s.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!(n1, n2, "the second prepare came from the cache");
    let rows = s.query_prepared(&a, &[&41]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    let none = s.query_opt("SELECT 1 WHERE false", &[]).await.unwrap();
    assert!(none.is_none());
    assert!(s.query_one("SELECT 1 WHERE false", &[]).await.is_err());
    drop(s);
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn batched_inserts_map_rows_to_callers_in_input_order() {
    let Some(schema) = Schema::create("insert_batched").await else {
        return;
    };
    let t = schema.t("events");
    schema
        .admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id serial PRIMARY KEY, n int NOT NULL CHECK (n >= 0))"
        ))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-batch")).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..500i32 {
        let (db, t) = (db.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let row = db.insert_batched(&t, InsertRow::new().set("n", n)).await?;
            Ok::<_, DbError>((n, row.get::<_, i32>("n"), row.get::<_, i32>("id")))
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (sent, got, id) = task.await.unwrap().unwrap();
        assert_eq!(sent, got, "each caller gets its own row");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    let batches: i64 = schema
        .admin
        .query_one(&format!("SELECT count(DISTINCT xmin::text) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(batches < 500, "rows were inserted in batches ({batches} transactions)");

    // A failing row fails its batch (all of it) with the server's error; later batches work.
    let (bad, good) = tokio::join!(
        db.insert_batched(&t, InsertRow::new().set("n", -1)),
        db.insert_batched(&t, InsertRow::new().set("n", 1000)),
    );
    let err = bad.unwrap_err();
    assert_eq!(err.code(), Some("23514"), "{err}");
    if let Err(e) = good {
        assert_eq!(e.code(), Some("23514"), "failed only as part of the same batch: {e}");
    }
    let later = db.insert_batched(&t, InsertRow::new().set("n", 7)).await.unwrap();
    assert_eq!(later.get::<_, i32>("n"), 7);
    let err = db
        .insert_batched("bad name;", InsertRow::new().set("n", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Config(_)));
    db.flush().await;
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn cached_queries_hit_refresh_and_invalidate() {
    let Some(schema) = Schema::create("query_cached").await else {
        return;
    };
    let t = schema.t("settings");
    schema
        .admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (k text PRIMARY KEY, v int); INSERT INTO {t} VALUES ('a', 1)"
        ))
        .await
        .unwrap();
    let manager = manager().await;
    let db = Db::start(&manager, "db", config("uno-cache")).await.unwrap();
    let sql = format!("SELECT v FROM {t} WHERE k = $1");
    let read = |ttl: Duration| {
        let (db, sql) = (db.clone(), sql.clone());
        async move {
            let params: Vec<Param> = vec![Box::new("a")];
            let rows = db.query_cached(&sql, params, ttl).await.unwrap();
            rows[0].get::<_, i32>(0)
        }
    };
    let ttl = Duration::from_millis(500);
    assert_eq!(read(ttl).await, 1);
    schema
        .admin
        .batch_execute(&format!("UPDATE {t} SET v = 2"))
        .await
        .unwrap();
    assert_eq!(read(ttl).await, 1, "a hit serves the cached rows");
    // Within the last fifth of the TTL a hit refreshes in the background.
    tokio::time::sleep(Duration::from_millis(420)).await;
    let _ = read(ttl).await;
    let mut refreshed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if read(ttl).await == 2 {
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "refresh-ahead loaded the new value");
    schema
        .admin
        .batch_execute(&format!("UPDATE {t} SET v = 3"))
        .await
        .unwrap();
    assert_eq!(db.invalidate_cached(&format!("SELECT v FROM {t}")), 1);
    assert_eq!(read(ttl).await, 3, "invalidated by prefix");
    manager.shutdown(Duration::from_secs(5)).await;
    schema.drop_now().await;
}
