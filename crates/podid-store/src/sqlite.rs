//! The embedded store: one SQLite file in WAL mode, writes through one connection.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;

use crate::StoreError;

/// How long SQLite waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read or write waits for its connection in this process.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read connections unless told otherwise.
const DEFAULT_READ_CONNECTIONS: u32 = 4;

/// The association store in a SQLite database file (or in memory).
///
/// Write concurrency: SQLite allows one writer at a time. Left to itself, a
/// burst of concurrent write transactions on several connections surfaces as
/// `SQLITE_BUSY` — immediately when a deferred transaction tries to upgrade a
/// read snapshot that has gone stale (the busy timeout does not help there),
/// or after the busy timeout when the busy handler's polling starves a
/// waiter. So every write goes through a pool of exactly ONE connection and
/// starts with `BEGIN IMMEDIATE`: writers queue, fairly and without polling,
/// on that pool's acquire (a generous timeout), and since no other connection
/// of this process ever writes, the write lock is always free when a
/// transaction begins. `BEGIN IMMEDIATE` (with the 5 s busy timeout) still
/// makes a write wait properly should another process hold the file. Plain
/// reads use a separate pool of several connections, which WAL lets run
/// beside the writer, each seeing the last committed state.
///
/// `:memory:` is one database per connection, so there the store uses a
/// single connection, never closed, for reads and writes alike.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection that writes.
    writer: SqlitePool,
    /// Connections for plain reads (the writer itself for `:memory:`).
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`, or an
    /// in-memory database for `:memory:`, and runs the migrations.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_READ_CONNECTIONS).await
    }

    /// As [`SqliteStore::open`], with at most `read_connections` (at least 1)
    /// connections for reads beside the one that writes.
    pub async fn open_with(path: &str, read_connections: u32) -> Result<Self, StoreError> {
        if path == ":memory:" {
            let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            return Ok(SqliteStore {
                writer: pool.clone(),
                reader: pool,
            });
        }

        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        // WAL is a property of the file now; readers need not set it (doing so
        // would want an exclusive lock).
        let reader = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base)
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    /// Closes the connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

crate::common::association_store_impl! {
    store: SqliteStore,
    db: Sqlite,
    for_update: "",
    for_key_share: "",
    // One writer at a time already: positions follow commit order.
    change_lock: None,
    position: "instr",
}
