//! The database layer in one run: sessions, a transaction rolled back on error, batched
//! inserts, a cached query, and the tree with its database nodes.
//!
//! cargo run --example db   (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)

use std::time::Duration;

use uno_runtime::actors::{AsyncManager, ManagerConfig};
use uno_runtime::db::{Db, DbConfig, DbError, InsertRow, Param};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let manager = AsyncManager::start(ManagerConfig::default()).await?;
    let config = DbConfig::from_url(&url)?
        .application_name("uno-example")
        .connect_attempts(1);
    let db = match Db::start(&manager, "db", config).await {
        Ok(db) => db,
        Err(e) => {
            println!(
                "no database answers at {}: {e}\nskipping the database example.",
                DbConfig::from_url(&url)?
            );
            manager.shutdown(Duration::from_secs(5)).await;
            return Ok(());
        }
    };
    let table = format!("uno_example_{}", std::process::id());

    // A session, visible in the tree while it is open.
    let mut session = db.session().await?;
    session
        .batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)"
        ))
        .await?;
    println!("while a session is open:\n{}", manager.tree());

    // A transaction rolled back on error: the insert does not survive.
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
    println!(
        "transaction: {}",
        outcome.err().map_or("committed".to_string(), |e| e.to_string())
    );
    let n: i64 = session
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    println!("rows after the rollback: {n}");
    drop(session);

    // Batched inserts: concurrent callers, one INSERT .. RETURNING per batch.
    let names = ["grace", "edsger", "barbara", "tony", "leslie"];
    let rows = futures::future::join_all(
        names
            .iter()
            .map(|name| db.insert_batched(&table, InsertRow::new().set("name", name.to_string()))),
    )
    .await;
    for (name, row) in names.iter().zip(rows) {
        println!("inserted {name} as id {}", row?.get::<_, i32>("id"));
    }

    // A cached query: the second read is a map read.
    let sql = format!("SELECT count(*) FROM {table}");
    for _ in 0..2 {
        let params: Vec<Param> = Vec::new();
        let rows = db.query_cached(&sql, params, Duration::from_secs(30)).await?;
        println!("cached count: {}", rows[0].get::<_, i64>(0));
    }

    println!("\nthe tree:\n{}", manager.tree());
    db.session()
        .await?
        .batch_execute(&format!("DROP TABLE {table}"))
        .await?;
    db.flush().await;
    let report = manager.shutdown(Duration::from_secs(5)).await;
    println!("shutdown clean: {}", report.is_clean());
    Ok(())
}
