//! A pipeline of its own, for tests that corrupt, rebuild or swap the ClickHouse aggregates: ingest-api, stream-workers
//! and query-api on a topic and a ClickHouse database of their own, so nothing they do can disturb the other tests.
//! Postgres is shared with every other test, so a test reconciles only its own companies ([`Pipeline::reconcile`]).
//!
//! Also the `stream-workers` binary itself ([`worker_bin`]), for tests of the command line and of a process killed
//! mid-run, and a checksum of every aggregate table ([`Pipeline::checksums`]) to show that something left a version
//! of the tables untouched.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kerp_core::auth::Role;
use kerp_stream::reconcile::{self, Report, Scope};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{eventually, SECRET};

/// Longest a test waits for its vouchers to be folded and to reconcile exact, in seconds.
pub const SETTLE_SECONDS_MAX: u64 = 120;

pub struct Pipeline {
    pub run: String,
    pub topic: String,
    /// The writer's settings, on this pipeline's own database.
    pub ch_config: kerp_core::clickhouse::ClickHouseConfig,
    /// The live worker's settings (also what an in-process rebuild runs with).
    pub worker: kerp_stream::Config,
    pub ingest_url: String,
    pub query_url: String,
    /// `http://host:port` of the worker's `/metrics`.
    pub metrics_url: String,
    pub pool: PgPool,
    shutdown: CancellationToken,
}

impl Pipeline {
    /// Starts the three services on a new topic and database named after `name`, with the worker's settings changed
    /// by `tune` first, and waits until query-api answers.
    pub async fn start(name: &str, tune: impl FnOnce(&mut kerp_stream::Config)) -> Self {
        kerp_core::telemetry::init_logging();
        let run = Uuid::new_v4().simple().to_string();
        let topic = format!("kerp.test.{name}.{run}");
        let mut ch_config = super::clickhouse();
        ch_config.clickhouse_database = format!("kerp_test_{name}_{run}");
        let shutdown = CancellationToken::new();
        let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let (ingest_l, query_l) = (bind().await, bind().await);
        let ingest_url = format!("http://{}", ingest_l.local_addr().expect("addr"));
        let query_url = format!("http://{}", query_l.local_addr().expect("addr"));
        let metrics_url = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let mut worker = super::worker_config(&topic, &format!("kerp-test-{name}-{run}"), ch_config.clone());
        worker.metrics_listen = metrics_url.trim_start_matches("http://").to_owned();
        worker.database_url = Some(super::database_url());
        tune(&mut worker);
        // The tables first, so that query-api can read them before the first event is folded.
        kerp_stream::sink::migrate(&ch_config.server_client(), &ch_config.clickhouse_database, "").await.expect("clickhouse migrate");
        tokio::spawn(kerp_ingest::serve_with_metrics(super::ingest_config(&topic), ingest_l, None, shutdown.clone()));
        tokio::spawn(kerp_stream::run(worker.clone(), shutdown.clone()));
        // query-api reads as the writer here: the read-only user may read only `kerp` and `kerp_test`.
        let reader = kerp_core::clickhouse::ClickHouseReaderConfig {
            clickhouse_url: ch_config.clickhouse_url.clone(),
            clickhouse_database: ch_config.clickhouse_database.clone(),
            query_clickhouse_user: ch_config.clickhouse_user.clone(),
            query_clickhouse_password: ch_config.clickhouse_password.clone(),
        };
        let query = kerp_query::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_listen: String::new(),
            jwt_secret: SECRET.into(),
            dev_stack: false,
            answers_poll_interval_ms: super::ANSWERS_POLL_INTERVAL_MS,
            clickhouse: reader,
        };
        tokio::spawn(kerp_query::serve_with_metrics(query, query_l, None, shutdown.clone()));
        for url in [&ingest_url, &query_url] {
            eventually(Duration::from_secs(60), &format!("{url}/health"), || async {
                super::http().get(format!("{url}/health")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
            })
            .await;
        }
        Self { run, topic, ch_config, worker, ingest_url, query_url, metrics_url, pool: super::pg().await, shutdown }
    }

    /// A writer's client on this pipeline's database.
    pub fn ch(&self) -> clickhouse::Client {
        self.ch_config.client()
    }

    /// A fresh company on this pipeline's topic, with an admin token.
    pub async fn company(&self, label: &str) -> (Uuid, String) {
        let name = format!("{label} {}", Uuid::new_v4().simple());
        let c = kerp_ingest::company::create_company(&self.pool, &name, None, &format!("{}@example.test", Uuid::new_v4()), &self.topic)
            .await
            .expect("create company");
        let token = kerp_ingest::company::token(SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).expect("token");
        (c.company_id, token)
    }

    /// Posts a voucher through this pipeline's ingest-api; it must be created.
    pub async fn post(&self, token: &str, body: &Value) {
        let r =
            super::http().post(format!("{}/api/v1/vouchers", self.ingest_url)).bearer_auth(token).json(body).send().await.expect("post");
        let status = r.status();
        assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    }

    /// GETs a path of this pipeline's query-api.
    pub async fn query(&self, token: &str, path: &str) -> (u16, Value) {
        let r = super::http().get(format!("{}{path}", self.query_url)).bearer_auth(token).send().await.expect("get");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Reconciles the live tables for these companies only: Postgres also holds every other test's companies, which
    /// this pipeline never folds.
    pub async fn reconcile(&self, companies: &[Uuid]) -> Report {
        let scope = Scope { only: Some(companies.iter().copied().collect::<HashSet<_>>()), ..Scope::default() };
        reconcile::reconcile(&self.pool, &self.ch(), "", &scope).await.expect("reconcile")
    }

    /// Waits until every voucher of these companies is folded and reconciles exact, and returns that report.
    pub async fn settled(&self, companies: &[Uuid]) -> Report {
        eventually(Duration::from_secs(SETTLE_SECONDS_MAX), "every voucher folded and reconciled", || async {
            let scope = Scope { only: Some(companies.iter().copied().collect::<HashSet<_>>()), ..Scope::default() };
            let report = reconcile::reconcile(&self.pool, &self.ch(), "", &scope).await.ok()?;
            (report.companies == companies.len() && report.settled()).then_some(report)
        })
        .await
    }

    /// Waits until the company's newest balance snapshot covers sequence `seq` (what reports read then).
    pub async fn snapshot_at(&self, company: Uuid, seq: i64) {
        let sql = format!("SELECT max(upto_seq) FROM snapshot_heads WHERE company_id = {}", kerp_core::clickhouse::uuid_literal(&company));
        eventually(Duration::from_secs(60), "the company's balance snapshot", || async {
            (self.ch().query(&sql).fetch_one::<i64>().await.ok()? >= seq).then_some(())
        })
        .await;
    }

    /// Per aggregate table of version `suffix` (empty: the live one), its rows (collapsed, as readers see them) and a
    /// checksum of their content: equal before and after means the table was left as it was.
    pub async fn checksums(&self, suffix: &str) -> BTreeMap<String, (u64, u64)> {
        let ch = self.ch();
        let mut out = BTreeMap::new();
        for table in kerp_stream::sink::AGGREGATE_TABLES {
            let table = format!("{table}{suffix}");
            let columns: Vec<String> = ch
                .query("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY name")
                .bind(&table)
                .fetch_all()
                .await
                .expect("columns");
            let hashed = columns.iter().map(|c| format!("toString(`{c}`)")).collect::<Vec<_>>().join(", ");
            // Every row's hash, summed: the same rows in any order give the same sum.
            let sql = format!("SELECT count(), sum(cityHash64({hashed})) FROM `{table}` FINAL");
            out.insert(table, ch.query(&sql).fetch_one::<(u64, u64)>().await.expect("checksum"));
        }
        out
    }

    /// The names of this pipeline's tables that contain `fragment` (such as `__old_`, `__rebuild`).
    pub async fn tables_containing(&self, fragment: &str) -> Vec<String> {
        self.tables_where("name", fragment).await
    }

    /// The names of this pipeline's tables whose engine (with its settings) mentions `fragment`.
    pub async fn tables_with_setting(&self, fragment: &str) -> Vec<String> {
        self.tables_where("engine_full", fragment).await
    }

    /// The names of this pipeline's tables whose `column` of `system.tables` contains `fragment`.
    async fn tables_where(&self, column: &str, fragment: &str) -> Vec<String> {
        self.ch()
            .query(&format!(
                "SELECT name FROM system.tables WHERE database = currentDatabase() AND position({column}, ?) > 0 ORDER BY name"
            ))
            .bind(fragment)
            .fetch_all()
            .await
            .expect("tables")
    }

    /// The `stream-workers` binary with this pipeline's settings in its environment, ready for its arguments.
    pub fn worker_command(&self) -> Command {
        let mut c = Command::new(worker_bin());
        c.env("KAFKA_BROKERS", super::kafka_brokers())
            .env("VOUCHER_TOPIC", &self.topic)
            .env("CONSUMER_GROUP", &self.worker.consumer_group)
            .env("CLICKHOUSE_URL", &self.ch_config.clickhouse_url)
            .env("CLICKHOUSE_DATABASE", &self.ch_config.clickhouse_database)
            .env("CLICKHOUSE_USER", &self.ch_config.clickhouse_user)
            .env("CLICKHOUSE_PASSWORD", &self.ch_config.clickhouse_password)
            .env("DATABASE_URL", super::database_url())
            .env("WORKER_METRICS_LISTEN", "")
            .env("RUST_LOG", "info");
        c
    }

    /// Stops the services and drops the pipeline's database, which is this run's own: every run would leave one
    /// behind otherwise.
    pub async fn finish(self) {
        self.shutdown.cancel();
        self.ch()
            .query(&format!("DROP DATABASE IF EXISTS `{}`", self.ch_config.clickhouse_database))
            .execute()
            .await
            .expect("drop database");
    }
}

/// The `stream-workers` binary of the profile these tests were built with, built (or found up to date) once per test
/// process. The e2e crate cannot name another package's binary (`CARGO_BIN_EXE_*` is for a package's own), and a
/// binary merely found in the target directory could be older than the code under test.
pub fn worker_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test> → target/<profile>
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>").to_path_buf();
        let target_dir = profile_dir.parent().expect("target").to_path_buf();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "-p", "kerp-stream", "--bin", "stream-workers", "--profile", &profile])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(super::repo_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building stream-workers failed");
        profile_dir.join("stream-workers")
    })
    .clone()
}
