//! The stream-workers binary: folds voucher events into ClickHouse until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "stream-workers", about = "K-ERP stream-workers: fold voucher events from Kafka into ClickHouse, exactly once")]
struct Cli {
    #[command(flatten)]
    config: kerp_stream::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kerp_core::telemetry::init_logging();
    let cli = Cli::parse();
    kerp_stream::run(cli.config, kerp_core::shutdown_on_signal()).await.context("stream-workers failed")
}
