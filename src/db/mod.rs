//! PostgreSQL on the supervision tree: [`connect`] with retries, a supervised [`Db`] node
//! owning the pool, [`Session`]s with tracking records, [`Transaction`]s that always end,
//! [`SessionOperationGroup`]s, and the facade's cached queries and batched inserts
//! ([`Db::query_cached`], [`Db::insert_batched`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig, DbError};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let config = DbConfig::from_url("postgres://postgres@127.0.0.1:5432/test")?.max_connections(8);
//! let db = Db::start(&manager, "db", config).await?;
//!
//! let mut session = db.session().await?;
//! session.batch_execute("CREATE TEMP TABLE notes (id serial PRIMARY KEY, body text)").await?;
//! let id: i32 = session
//!     .transaction(|tx| Box::pin(async move {
//!         Ok::<_, DbError>(tx.query_one("INSERT INTO notes (body) VALUES ($1) RETURNING id", &[&"hi"]).await?.get(0))
//!     }))
//!     .await?;
//! assert_eq!(id, 1);
//! println!("{}", manager.tree());
//! drop(session);
//! manager.shutdown(Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

mod config;
mod connect;
#[allow(clippy::module_inception)]
mod db;
mod error;
mod facade;
mod group;
mod pool;
mod session;
mod transaction;

pub use config::{DbConfig, Secret};
pub use connect::{connect, is_transient, PgConnection};
pub use db::{Db, DbNode, DbNodeArgs, DbNodeState};
pub use error::{DbError, ServerError, DEADLOCK_DETECTED, QUERY_CANCELED, SERIALIZATION_FAILURE};
pub use facade::{CachedRows, InsertRow, Param};
pub use group::{DbOp, SessionOperationGroup, TxOp};
pub use session::{Session, SessionFactory, SessionInfo};
pub use transaction::{IsolationLevel, Transaction, TxOptions};

/// Re-exported so that users name the same tokio-postgres (rows, types) the layer uses.
pub use tokio_postgres;
