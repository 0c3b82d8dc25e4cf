//! How K-ERP services connect to ClickHouse. Shared so that the writer (stream-workers) and the reader (query-api)
//! use the same settings, including the two that ClickHouse 18.16 needs.
//!
//! They connect as different users: stream-workers writes as [`ClickHouseConfig`]'s `CLICKHOUSE_USER`, and query-api
//! reads as [`ClickHouseReaderConfig`]'s `QUERY_CLICKHOUSE_USER`, by default [`CLICKHOUSE_READER_USER`], whose
//! profile (`compose/clickhouse-users.xml`) allows no writes and bounds each query's time and rows read.

use clickhouse::{Client, Compression};

/// ClickHouse connection settings, as flags or environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Database holding the K-ERP aggregates.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "kerp")]
    pub clickhouse_database: String,
    /// ClickHouse user.
    #[arg(long, env = "CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// ClickHouse password.
    #[arg(long, env = "CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
}

impl ClickHouseConfig {
    /// The settings from the environment alone, with the same defaults as the flags (for tests and tools that have
    /// no command line of their own).
    ///
    /// # Panics
    /// If an environment variable holds a value clap rejects, which for these string settings cannot happen.
    #[must_use]
    pub fn from_env() -> Self {
        #[derive(clap::Parser)]
        struct EnvOnly {
            #[command(flatten)]
            clickhouse: ClickHouseConfig,
        }
        <EnvOnly as clap::Parser>::try_parse_from(["env"]).expect("ClickHouse settings from the environment").clickhouse
    }

    /// A client for the configured database.
    #[must_use]
    pub fn client(&self) -> Client {
        self.server_client().with_database(&self.clickhouse_database)
    }

    /// A client with no default database, for creating it.
    #[must_use]
    pub fn server_client(&self) -> Client {
        Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            // 18.16 rejects the RowBinaryWithNamesAndTypes format that validation asks for.
            .with_validation(false)
            // With LZ4 on, 18.16 answers SELECTs with no rows and no error.
            .with_compression(Compression::None)
    }
}

/// The read-only ClickHouse user of query-api (`compose/clickhouse-users.xml`): `readonly = 1`, the `kerp` database
/// only, and per-query `max_execution_time` and `max_rows_to_read`.
pub const CLICKHOUSE_READER_USER: &str = "kerp_reader";

/// How query-api connects to ClickHouse: the same server and database as [`ClickHouseConfig`], but its own user, so
/// that the writer's credentials (`CLICKHOUSE_USER`, which stream-workers needs) never give the read side write access.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseReaderConfig {
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Database holding the K-ERP aggregates.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "kerp")]
    pub clickhouse_database: String,
    /// ClickHouse user that query-api reads as; read-only, with a time and a row limit per query.
    #[arg(long, env = "QUERY_CLICKHOUSE_USER", default_value = CLICKHOUSE_READER_USER)]
    pub query_clickhouse_user: String,
    /// Password of `QUERY_CLICKHOUSE_USER`.
    #[arg(long, env = "QUERY_CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub query_clickhouse_password: String,
}

impl ClickHouseReaderConfig {
    /// The settings from the environment alone, with the same defaults as the flags (for tests and tools).
    ///
    /// # Panics
    /// If an environment variable holds a value clap rejects, which for these string settings cannot happen.
    #[must_use]
    pub fn from_env() -> Self {
        #[derive(clap::Parser)]
        struct EnvOnly {
            #[command(flatten)]
            clickhouse: ClickHouseReaderConfig,
        }
        <EnvOnly as clap::Parser>::try_parse_from(["env"]).expect("ClickHouse settings from the environment").clickhouse
    }

    /// The connection settings with the reader's credentials.
    #[must_use]
    pub fn connection(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            clickhouse_url: self.clickhouse_url.clone(),
            clickhouse_database: self.clickhouse_database.clone(),
            clickhouse_user: self.query_clickhouse_user.clone(),
            clickhouse_password: self.query_clickhouse_password.clone(),
        }
    }

    /// A client for the configured database, as the reader.
    #[must_use]
    pub fn client(&self) -> Client {
        self.connection().client()
    }
}

/// Formats a UUID as a ClickHouse literal. UUIDs print as hex and dashes only, so this cannot inject SQL.
#[must_use]
pub fn uuid_literal(id: &uuid::Uuid) -> String {
    format!("toUUID('{id}')")
}
