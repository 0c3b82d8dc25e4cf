//! kerp-perf: K-ERP's data generator, load tools, perf runner and fault-suite checker.
//!
//! - `generate` loads the thresholds file's data sizes into Postgres with COPY and feeds ClickHouse through the real
//!   pipeline (outbox → relay → Kafka → stream-workers); `export` writes the accounts and partners the k6 scripts read.
//! - `grpc-load` drives `VoucherService` and `ReportService`; `run` is the perf runner that does the whole job and
//!   writes `perf/results/<timestamp>/`.
//! - `companies`, `load` and `check` are the fault suite's (`compose/dev faults`): fresh companies, a steady voucher
//!   load that records every request, and a check that nothing acknowledged was lost. `demo` fills the dev stack's
//!   demo company with two years of books.

mod check;
mod demo;
mod export;
mod generate;
mod grpc_load;
mod load;
mod record;
mod run;
mod thresholds;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kerp-perf", about = "K-ERP data generator, load tools, perf runner and fault-suite checker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create fresh companies with `ingest-api create-company` and write their ids and tokens as JSON.
    Companies(load::CompaniesArgs),
    /// Post vouchers (with some bad requests mixed in) at a steady rate until SIGTERM; write every request's record.
    Load(load::LoadArgs),
    /// Check a load's records against Postgres and reconcile; print the scenario's table; exit 1 on any failure.
    Check(check::CheckArgs),
    /// Fill a company with two fiscal years of demo books through the API (`compose/dev up` runs it once).
    Demo(demo::DemoArgs),
    /// Load a data size of the thresholds file into Postgres (COPY) and, through the pipeline, into ClickHouse.
    Generate(generate::GenerateArgs),
    /// Write `data/accounts.json` and `data/partners.json` for the k6 scripts, read from the API.
    Export(export::ExportArgs),
    /// Drive the gRPC VoucherService (unary and the bulk stream) and ReportService; report p50/p95/p99 and RPS.
    GrpcLoad(grpc_load::GrpcLoadArgs),
    /// The perf runner: data, scenarios, metrics, resources, baseline, thresholds; writes perf/results/<timestamp>/.
    Run(Box<run::RunArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Companies(args) => load::companies(&args),
        Command::Load(args) => load::run(&args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Generate(args) => generate::run(&args).await,
        Command::Export(args) => export::run(&args).await,
        Command::GrpcLoad(args) => grpc_load::run(&args).await,
        Command::Run(args) => {
            if !run::run(&args).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check(args) => {
            if !check::run(&args).await? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
