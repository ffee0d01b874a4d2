//! The `Db` facade over the runtime's cache and batcher: [`Db::query_cached`],
//! [`Db::invalidate_cached`] and [`Db::insert_batched`].
//!
//! `query_cached` goes through an [`AsyncCache`] (one per TTL, refresh-ahead in the last fifth
//! of the TTL, single-flight loads); keys start with the SQL text, so invalidating by a prefix
//! of it drops every cached result of those statements. `insert_batched` goes through an
//! [`AsyncBatcher`] per table and column list: a batch is one multi-row
//! `INSERT .. VALUES (..), (..) RETURNING *` in one transaction, and each caller gets the row
//! of its own `VALUES` tuple (PostgreSQL inserts a `VALUES` list in order and `RETURNING`
//! emits rows as they are inserted; a count mismatch fails the batch). A failing row fails
//! only its batch, with the server's error.
//!
//! ```no_run
//! use std::time::Duration;
//! use uno_runtime::actors::{AsyncManager, ManagerConfig};
//! use uno_runtime::db::{Db, DbConfig, InsertRow, Param};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncManager::start(ManagerConfig::default()).await?;
//! let db = Db::start(&manager, "db", DbConfig::from_url("postgres://postgres@127.0.0.1/test")?).await?;
//! db.session().await?.batch_execute("CREATE TABLE IF NOT EXISTS events (id serial, kind text)").await?;
//! let row = db.insert_batched("events", InsertRow::new().set("kind", "signup")).await?;
//! let id: i32 = row.get("id");
//! let params: Vec<Param> = vec![Box::new(id)];
//! let rows = db.query_cached("SELECT kind FROM events WHERE id = $1", params, Duration::from_secs(30)).await?;
//! assert_eq!(rows[0].get::<_, String>(0), "signup");
//! db.invalidate_cached("SELECT kind FROM events");
//! # manager.shutdown(Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::db::Db;
use super::error::DbError;
use crate::batch::{AsyncBatcher, BatchError};
use crate::cache::{AsyncCache, CacheError};

/// An owned statement parameter.
pub type Param = Box<dyn ToSql + Send + Sync>;

/// Rows shared by every reader of a cached result.
pub type CachedRows = Arc<Vec<Row>>;

type InsertBatcher = AsyncBatcher<Vec<Param>, Row, DbError>;

/// Most parameters one statement may carry (the protocol's limit).
const MAX_PARAMS: usize = 65_535;

/// One row to insert: column names and their values.
#[derive(Debug, Default)]
pub struct InsertRow {
    columns: Vec<String>,
    values: Vec<Param>,
}

impl InsertRow {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `column` to `value`.
    pub fn set(mut self, column: &str, value: impl ToSql + Send + Sync + 'static) -> Self {
        self.columns.push(column.to_string());
        self.values.push(Box::new(value));
        self
    }
}

/// The caches and batchers of one `Db` handle family.
#[derive(Default)]
pub(crate) struct Facade {
    caches: DashMap<Duration, AsyncCache<String, CachedRows>>,
    batchers: DashMap<String, InsertBatcher>,
}

impl Facade {
    /// Flushes queued inserts.
    pub(crate) async fn shutdown(&self) {
        let batchers: Vec<InsertBatcher> = self.batchers.iter().map(|b| b.value().clone()).collect();
        for b in batchers {
            b.shutdown().await;
        }
    }
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        })
}

fn from_cache(e: CacheError<DbError>) -> DbError {
    match e {
        CacheError::Load { cache, source } => DbError::Shared {
            context: format!("cache {cache}: load"),
            source,
        },
        other => DbError::Component {
            component: "cache".into(),
            message: other.to_string(),
        },
    }
}

fn from_batch(e: BatchError<DbError>) -> DbError {
    match e {
        BatchError::Batch {
            batcher,
            batch_size,
            source,
        } => DbError::Shared {
            context: format!("batcher {batcher}: batch of {batch_size} rows"),
            source,
        },
        other => DbError::Component {
            component: "batcher".into(),
            message: other.to_string(),
        },
    }
}

impl Db {
    /// Runs a read-only statement through a cache: a hit is a map read; a miss runs the
    /// statement once however many callers miss together; within the last fifth of `ttl` a hit
    /// also refreshes the entry in the background. The key is the SQL text and the parameters'
    /// `Debug` rendering.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops waiting; a load in flight carries on and fills
    /// the cache.
    ///
    /// # Errors
    /// The statement's [`DbError`] (shared by every waiter of that load, as
    /// [`DbError::Shared`]), or [`DbError::Config`] for a zero `ttl`.
    pub async fn query_cached(&self, sql: &str, params: Vec<Param>, ttl: Duration) -> Result<CachedRows, DbError> {
        let cache = self.cache_for(ttl).await?;
        let mut key = sql.to_string();
        let _ = write!(key, "\u{1f}{params:?}");
        let db = self.clone();
        let sql = sql.to_string();
        cache
            .get_with(key, move || async move {
                let mut session = db.session().await?;
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                let rows = session.query(&sql, &refs).await?;
                Ok::<_, DbError>(Arc::new(rows))
            })
            .await
            .map_err(from_cache)
    }

    /// Drops every cached result whose statement starts with `sql_prefix`; returns how many.
    pub fn invalidate_cached(&self, sql_prefix: &str) -> usize {
        self.facade()
            .caches
            .iter()
            .map(|c| c.value().invalidate_if(|k| k.starts_with(sql_prefix)))
            .sum()
    }

    async fn cache_for(&self, ttl: Duration) -> Result<AsyncCache<String, CachedRows>, DbError> {
        if ttl.is_zero() {
            return Err(DbError::Config("query_cached needs a positive ttl".into()));
        }
        if let Some(c) = self.facade().caches.get(&ttl) {
            return Ok(c.clone());
        }
        let mut created = false;
        let cache = self
            .facade()
            .caches
            .entry(ttl)
            .or_try_insert_with(|| {
                created = true;
                AsyncCache::builder(format!("cache-{}ms", ttl.as_millis()))
                    .ttl(ttl)
                    .max_capacity(10_000)
                    .refresh_before(ttl / 5)
                    .max_stale(ttl)
                    .build()
                    .map_err(|e| DbError::Config(format!("query cache: {e}")))
            })?
            .clone();
        if created {
            let purge_every = ttl.clamp(Duration::from_millis(100), Duration::from_secs(60));
            self.add_node(cache.worker_spec(purge_every).into()).await;
        }
        Ok(cache)
    }

    /// Shows a facade component as a child of the subtree's supervisor. The component works
    /// without its node, so a failure here (the subtree stopping) is only logged.
    async fn add_node(&self, spec: uno_actors::ChildSpec) {
        if let Err(e) = self.node().start_child(spec).await {
            tracing::debug!(db = %self.path(), error = %e, "could not add a facade node to the tree");
        }
    }

    /// Inserts one row through a batcher for `table` and the row's columns: concurrent calls
    /// become one multi-row `INSERT .. RETURNING *` per batch, in one transaction, and each
    /// caller gets its own inserted row.
    ///
    /// # Cancel safety
    /// Dropping the future before its batch took the row withdraws the row; afterwards the row
    /// is inserted (or not) with its batch.
    ///
    /// # Errors
    /// [`DbError::Config`] for an invalid table or column name or an empty row; the batch's
    /// [`DbError`] (as [`DbError::Shared`], with the server's SQLSTATE and message) when any
    /// row of the batch fails: then no row of that batch is inserted.
    pub async fn insert_batched(&self, table: &str, row: InsertRow) -> Result<Row, DbError> {
        if !valid_identifier(table) || row.columns.is_empty() || !row.columns.iter().all(|c| valid_identifier(c)) {
            return Err(DbError::Config(format!(
                "insert_batched: invalid table or columns ({table}: {:?})",
                row.columns
            )));
        }
        let key = format!("{table}({})", row.columns.join(","));
        let existing = self.facade().batchers.get(&key).map(|b| b.clone());
        let batcher = match existing {
            Some(b) => b,
            None => {
                let mut created = false;
                let b = self
                    .facade()
                    .batchers
                    .entry(key.clone())
                    .or_try_insert_with(|| {
                        created = true;
                        self.build_batcher(&key, table, &row.columns)
                    })?
                    .clone();
                if created {
                    self.add_node(b.worker_spec().into()).await;
                }
                b
            }
        };
        batcher.submit(row.values).await.map_err(from_batch)
    }

    fn build_batcher(&self, key: &str, table: &str, columns: &[String]) -> Result<InsertBatcher, DbError> {
        let max_rows = (MAX_PARAMS / columns.len()).clamp(1, 1000);
        let head = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let width = columns.len();
        let db = self.clone();
        AsyncBatcher::builder(format!("insert {key}"))
            .max_batch_size(max_rows)
            .max_wait(Duration::from_millis(2))
            .max_concurrent(4)
            .build(move |rows: Vec<Vec<Param>>| {
                let db = db.clone();
                let head = head.clone();
                async move {
                    let mut sql = head;
                    let mut n = 0usize;
                    for (i, _) in rows.iter().enumerate() {
                        sql.push_str(if i == 0 { "(" } else { ", (" });
                        for c in 0..width {
                            n += 1;
                            let _ = write!(sql, "{}${n}", if c == 0 { "" } else { ", " });
                        }
                        sql.push(')');
                    }
                    sql.push_str(" RETURNING *");
                    let params: Vec<&(dyn ToSql + Sync)> = rows
                        .iter()
                        .flat_map(|r| r.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)))
                        .collect();
                    let mut session = db.session().await?;
                    let mut tx = session.begin().await?;
                    let inserted = tx.query(&sql, &params).await?;
                    tx.commit().await?;
                    Ok::<_, DbError>(inserted)
                }
            })
            .map_err(|e| DbError::Config(format!("insert batcher: {e}")))
    }
}
