//! Shared by the database tests: where the server is, skipping loudly when it is not there
//! (failing instead under `UNO_REQUIRE_DB=1`), unique names, an admin connection.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// `DATABASE_URL`, or the local test server.
pub fn url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A name unique to this process and call: `prefix_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// An admin connection, or `None` after a loud SKIP message (a panic under `UNO_REQUIRE_DB=1`).
pub async fn admin(test: &str) -> Option<Client> {
    let url = url();
    let attempt = async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(conn);
        Ok::<_, tokio_postgres::Error>(client)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(client)) => Some(client),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            if std::env::var("UNO_REQUIRE_DB").is_ok_and(|v| v == "1") {
                panic!("{test}: no PostgreSQL at DATABASE_URL ({why}) and UNO_REQUIRE_DB=1");
            }
            eprintln!(
                "\n*** SKIP {test}: no PostgreSQL at DATABASE_URL ({why}); set UNO_REQUIRE_DB=1 to fail instead ***\n"
            );
            None
        }
    }
}

/// A schema of its own for one test, dropped by [`Schema::drop_now`].
pub struct Schema {
    pub name: String,
    pub admin: Client,
}

impl Schema {
    pub async fn create(test: &str) -> Option<Schema> {
        let admin = admin(test).await?;
        let name = unique("uno_t");
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        Some(Schema { name, admin })
    }

    /// `schema.table`.
    pub fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }

    pub async fn drop_now(self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await;
    }

    /// Rows of `pg_stat_activity` with this application name that are running something other
    /// than idle.
    pub async fn active_queries(&self, application_name: &str) -> Vec<String> {
        self.admin
            .query(
                "SELECT query FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                &[&application_name],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}
