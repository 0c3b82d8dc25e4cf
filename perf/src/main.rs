//! kerp-perf: the fault suite's load generator and checker. `companies` makes fresh companies (through
//! `ingest-api create-company`) and writes their ids and tokens to a file; `load` posts vouchers for them through the
//! public URL at a steady rate until SIGTERM and writes one record per request; `check` reads those records and the
//! scenario's fault marks, asks Postgres and `stream-workers reconcile` whether everything acknowledged arrived once,
//! prints a table and exits non-zero on any loss or difference. `compose/dev faults` runs the three in turn. `demo`
//! fills the dev stack's demo company with two years of books.

mod check;
mod demo;
mod load;
mod record;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kerp-perf", about = "K-ERP fault suite: load generator and checker")]
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Companies(args) => load::companies(&args),
        Command::Load(args) => load::run(&args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Check(args) => {
            if !check::run(&args).await? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
