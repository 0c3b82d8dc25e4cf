//! Placeholder: being written. The interface below is what the perf runner calls.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The data sizes of the thresholds file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Medium,
    Large,
    Xlarge,
}

/// Arguments of `kerp-perf generate`.
#[derive(clap::Args, Clone, Debug)]
pub struct GenerateArgs {
    /// The data size, as in the thresholds file's `data_sizes`.
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// The seed: the same seed and size give the same books (ids, dates, amounts).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load only this many companies of the size (the first N); all of them when absent.
    #[arg(long)]
    pub companies: Option<usize>,
    /// The thresholds file whose `data_sizes` are loaded.
    #[arg(long, env = "KERP_PERF_THRESHOLDS", default_value = "perf/thresholds.yaml")]
    pub thresholds: PathBuf,
    /// Postgres, where the books are written with COPY.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// ClickHouse's HTTP URL, read to wait until the pipeline folded everything the generator wrote.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Where the manifest (companies, users, stage timings) is written.
    #[arg(long, default_value = "perf/data")]
    pub out_dir: PathBuf,
}

/// One generated company.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratedCompany {
    pub company_id: Uuid,
    pub admin_user_id: Uuid,
    pub name: String,
}

/// How long one stage took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub rows: u64,
    pub seconds: f64,
}

/// What `generate` wrote: `<out_dir>/manifest-<size>-<seed>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub size: Size,
    pub seed: u64,
    pub companies: Vec<GeneratedCompany>,
    pub vouchers: u64,
    pub lines: u64,
    pub stages: Vec<Stage>,
}

/// Generates the size unless its companies are already in Postgres; returns the manifest either way.
///
/// # Errors
/// Not written yet.
#[allow(clippy::unused_async)]
pub async fn ensure(_args: &GenerateArgs) -> anyhow::Result<Manifest> {
    anyhow::bail!("not written yet")
}

/// `kerp-perf generate`.
///
/// # Errors
/// Not written yet.
pub async fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    ensure(args).await.map(|_| ())
}
