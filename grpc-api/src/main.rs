//! The grpc-api binary: serves VoucherService, ReportService and TaxScraperService on `GRPC_LISTEN` and
//! InsuranceEDIService on `GRPC_EDI_LISTEN` until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "grpc-api", about = "K-ERP grpc-api: vouchers and reports over gRPC, plus the tax-scraper and insurance-EDI contracts")]
struct Cli {
    #[command(flatten)]
    config: kerp_grpc::Config,
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
    kerp_grpc::run(cli.config, kerp_core::shutdown_on_signal()).await.context("grpc-api failed")
}
