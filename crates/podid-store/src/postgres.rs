//! The shared store: PostgreSQL, for several server replicas.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Postgres;

use crate::StoreError;

/// Connections unless told otherwise.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long a call waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Taken (until commit) before a change of the feed is appended: writers append in turn,
/// so their positions (a sequence) increase in commit order. The key spells "podid".
const FEED_LOCK: &str = "SELECT pg_advisory_xact_lock(482905188708)";

/// The association store in a PostgreSQL database.
///
/// Transactions run at READ COMMITTED. Rows read before a write in the same
/// transaction are locked (`FOR UPDATE`, or `FOR KEY SHARE` on the cluster a
/// create names, so that creates run side by side but a forced deregistration
/// waits for them). When two creates race on the same service account or
/// token, the unique constraint stops the later one, which then runs again
/// and answers from what the earlier one committed.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`)
    /// and runs the migrations. Replicas starting together take turns: the
    /// migrator holds an advisory lock while it works.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// As [`PostgresStore::connect`], with at most `max_connections` (at least 1).
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// Closes the connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

crate::common::association_store_impl! {
    store: PostgresStore,
    db: Postgres,
    for_update: " FOR UPDATE",
    for_key_share: " FOR KEY SHARE",
    change_lock: Some(FEED_LOCK),
    position: "strpos",
}
