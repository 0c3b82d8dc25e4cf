//! The query-api binary: serves reports from ClickHouse until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "query-api", about = "K-ERP query-api: trial balances, ledgers and financial statements from ClickHouse")]
struct Cli {
    #[command(flatten)]
    config: kerp_query::Config,
}

/// mimalloc instead of glibc's malloc, as in stream-workers: each request allocates and frees many small buffers
/// across the runtime's threads, which glibc's arenas serve slowly (its malloc and free were a tenth of ingest-api's
/// CPU at 1,000 posts/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kerp_core::telemetry::init_logging();
    let cli = Cli::parse();
    kerp_query::run(cli.config, kerp_core::shutdown_on_signal()).await.context("query-api failed")
}
