//! [`DbConfig`]: where the database is and how the layer around it behaves; [`Secret`]: a
//! password that never prints.
//!
//! ```
//! use std::time::Duration;
//! use uno_runtime::db::DbConfig;
//!
//! # fn main() -> Result<(), uno_runtime::db::DbError> {
//! let config = DbConfig::from_url("postgres://app:hunter2@db.internal:5433/orders?application_name=api")?
//!     .max_connections(16)
//!     .max_sessions(64)
//!     .statement_timeout(Some(Duration::from_secs(5)));
//! assert_eq!(config.target(), "app@db.internal:5433/orders");
//! assert!(!format!("{config:?}").contains("hunter2"));
//! assert_eq!(config.password().map(|p| p.expose()), Some("hunter2"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use uno_actors::backoff::Backoff;

use super::error::DbError;

/// A secret string (a password). `Debug` and `Display` print `***`; only
/// [`expose`](Self::expose) gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to reach PostgreSQL and how the pool, the sessions and connection retries behave.
///
/// Build it from a URL ([`from_url`](Self::from_url)) or from fields ([`new`](Self::new) and
/// the setters); it is validated when a [`Db`](super::Db) starts.
#[derive(Clone)]
pub struct DbConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<Secret>,
    pub(crate) dbname: String,
    pub(crate) application_name: Option<String>,
    pub(crate) max_connections: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) max_sessions: usize,
    pub(crate) session_timeout: Duration,
    pub(crate) leak_threshold: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) connect_attempts: u32,
    pub(crate) connect_backoff: Backoff,
    pub(crate) statement_cache: usize,
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("target", &self.target())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("application_name", &self.application_name)
            .field("max_connections", &self.max_connections)
            .field("min_idle", &self.min_idle)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_sessions", &self.max_sessions)
            .field("session_timeout", &self.session_timeout)
            .field("leak_threshold", &self.leak_threshold)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_attempts", &self.connect_attempts)
            .field("connect_backoff", &self.connect_backoff)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target())
    }
}

impl Default for DbConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DbConfig {
    /// `postgres@127.0.0.1:5432/postgres`, 10 connections, 100 sessions, 5 s timeouts,
    /// 5 connection attempts with exponential backoff from 50 ms to 2 s.
    pub fn new() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            application_name: None,
            max_connections: 10,
            min_idle: None,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            max_sessions: 100,
            session_timeout: Duration::from_secs(5),
            leak_threshold: Duration::from_secs(60),
            statement_timeout: None,
            connect_attempts: 5,
            connect_backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2))
                .unwrap_or_else(|_| Backoff::none()),
            statement_cache: 256,
        }
    }

    /// Parses a `postgres://user:password@host:port/dbname?application_name=..` URL (or a
    /// `key=value` connection string). The error never repeats the input, which may hold the
    /// password.
    ///
    /// # Errors
    /// [`DbError::Config`] when the string does not parse or names several hosts.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        let parsed = tokio_postgres::Config::from_str(url).map_err(|e| {
            // tokio-postgres' parse errors name the offending key, not the value; still, keep
            // only the kind of problem.
            let reason = e.to_string();
            let reason = if reason.contains(url) {
                "malformed connection string".to_string()
            } else {
                reason
            };
            DbError::Config(format!("cannot parse the connection string: {reason}"))
        })?;
        let mut config = Self::new();
        match parsed.get_hosts() {
            [] => {}
            [tokio_postgres::config::Host::Tcp(h)] => config.host = h.clone(),
            #[cfg(unix)]
            [tokio_postgres::config::Host::Unix(p)] => config.host = p.to_string_lossy().into_owned(),
            _ => return Err(DbError::Config("exactly one host is supported".into())),
        }
        match parsed.get_ports() {
            [] => {}
            [p] => config.port = *p,
            _ => return Err(DbError::Config("exactly one port is supported".into())),
        }
        if let Some(user) = parsed.get_user() {
            config.user = user.to_string();
        }
        if let Some(pw) = parsed.get_password() {
            config.password = Some(Secret::new(String::from_utf8_lossy(pw).into_owned()));
        }
        config.dbname = parsed.get_dbname().map_or_else(|| config.user.clone(), str::to_string);
        config.application_name = parsed.get_application_name().map(str::to_string);
        if let Some(t) = parsed.get_connect_timeout() {
            config.connect_timeout = *t;
        }
        Ok(config)
    }

    /// The host name, IP address or Unix socket directory.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The role to connect as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The password.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Sets the password.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    /// The database name.
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }

    /// `application_name`, shown in `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Most connections the pool opens (at least 1).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Idle connections kept open (pre-warmed when the node starts).
    pub fn min_idle(mut self, n: Option<u32>) -> Self {
        self.min_idle = n;
        self
    }

    /// Limit on one connection attempt.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// How long a session waits for a pooled connection.
    pub fn acquire_timeout(mut self, limit: Duration) -> Self {
        self.acquire_timeout = limit;
        self
    }

    /// Idle connections are closed after this long (`None`: never).
    pub fn idle_timeout(mut self, limit: Option<Duration>) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// Connections are closed after this long (`None`: never).
    pub fn max_lifetime(mut self, limit: Option<Duration>) -> Self {
        self.max_lifetime = limit;
        self
    }

    /// Most sessions open at once (at least 1).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// How long opening a session waits when [`max_sessions`](Self::max_sessions) are open.
    pub fn session_timeout(mut self, limit: Duration) -> Self {
        self.session_timeout = limit;
        self
    }

    /// A session open longer than this is reported as a leak, with where it was opened.
    pub fn leak_threshold(mut self, limit: Duration) -> Self {
        self.leak_threshold = limit;
        self
    }

    /// `statement_timeout` of every connection (`None`: the server's default).
    pub fn statement_timeout(mut self, limit: Option<Duration>) -> Self {
        self.statement_timeout = limit;
        self
    }

    /// Connection attempts, the first included (at least 1), for transient failures.
    pub fn connect_attempts(mut self, n: u32) -> Self {
        self.connect_attempts = n;
        self
    }

    /// Backoff between connection attempts.
    pub fn connect_backoff(mut self, backoff: Backoff) -> Self {
        self.connect_backoff = backoff;
        self
    }

    /// Prepared statements cached per connection (0 disables the cache).
    pub fn statement_cache(mut self, n: usize) -> Self {
        self.statement_cache = n;
        self
    }

    /// `user@host:port/dbname`: where this configuration connects, without the password.
    pub fn target(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`DbError::Config`] naming the first invalid value.
    pub fn validate(&self) -> Result<(), DbError> {
        let bad = |what: &str| Err(DbError::Config(what.to_string()));
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.min_idle.is_some_and(|m| m > self.max_connections) {
            return bad("min_idle must not exceed max_connections");
        }
        if self.max_sessions == 0 {
            return bad("max_sessions must be at least 1");
        }
        if self.connect_attempts == 0 {
            return bad("connect_attempts must be at least 1");
        }
        if self.connect_timeout.is_zero() || self.acquire_timeout.is_zero() || self.session_timeout.is_zero() {
            return bad("connect_timeout, acquire_timeout and session_timeout must be positive");
        }
        if self.host.is_empty() || self.user.is_empty() || self.dbname.is_empty() {
            return bad("host, user and dbname must not be empty");
        }
        Ok(())
    }

    /// The tokio-postgres configuration (holds the password: never print it).
    pub(crate) fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.connect_timeout);
        if let Some(pw) = &self.password {
            c.password(pw.expose());
        }
        if let Some(app) = &self.application_name {
            c.application_name(app);
        }
        if let Some(t) = self.statement_timeout {
            c.options(format!("-c statement_timeout={}", t.as_millis()));
        }
        c
    }
}
