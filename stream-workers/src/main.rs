//! The stream-workers binary: folds voucher events into ClickHouse until SIGTERM or Ctrl-C (the default), and the
//! operator's tools: `reconcile` (compare the aggregates with Postgres), `rebuild` (refold the topic into a new version
//! and swap it in) and `skip` (give up on a message or a missing sequence number, with an audit record).

use anyhow::{bail, Context};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use kerp_stream::{rebuild, reconcile, sink};
use uuid::Uuid;

/// mimalloc instead of glibc's malloc: a profile of `rebuild` spent 40 % of its CPU in glibc's malloc and free
/// (decoding allocates per field, and batches are freed on another thread than the one that filled them).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "stream-workers", about = "K-ERP stream-workers: fold voucher events from Kafka into ClickHouse, exactly once")]
struct Cli {
    #[command(flatten)]
    config: kerp_stream::Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Fold the topic into ClickHouse (the default).
    Run,
    /// Compare the balances, ledger lines and newest balance snapshots of every company (those Postgres has posted
    /// vouchers of and those ClickHouse has folded) with a recomputation from Postgres; print each difference and each
    /// company still in flight; exit 1 if there is any difference.
    Reconcile {
        /// Only this company.
        #[arg(long)]
        company: Option<Uuid>,
        /// Only this month, as YYYY-MM.
        #[arg(long)]
        period: Option<String>,
    },
    /// Fold the whole topic into a new version of the aggregates, reconcile it, and swap it in atomically.
    Rebuild(rebuild::RebuildArgs),
    /// Record an operator's decision to pass over a message the fold cannot use, or a sequence number that is lost.
    Skip {
        /// The partition of the message to skip (with --offset).
        #[arg(long, requires = "offset", conflicts_with_all = ["company", "seq"])]
        partition: Option<i32>,
        /// The offset of the message to skip.
        #[arg(long, requires = "partition")]
        offset: Option<i64>,
        /// The company whose missing sequence number is given up (with --seq).
        #[arg(long, requires = "seq")]
        company: Option<Uuid>,
        /// The missing sequence number.
        #[arg(long, requires = "company")]
        seq: Option<i64>,
        /// Why; kept in the audit record.
        #[arg(long)]
        reason: String,
        /// Who decided; kept in the audit record.
        #[arg(long, env = "USER", default_value = "operator")]
        operator: String,
    },
}

fn month(text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").with_context(|| format!("--period {text}: expected YYYY-MM"))
}

async fn postgres(config: &kerp_stream::Config) -> anyhow::Result<sqlx::PgPool> {
    let url = config.database_url.as_deref().context("DATABASE_URL (or --database-url) is needed to compare with Postgres")?;
    let options = kerp_stream::reconcile_pg_options(url)?;
    sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options).await.context("connecting to Postgres")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kerp_core::telemetry::init_logging();
    let cli = Cli::parse();
    let config = cli.config;
    let shutdown = kerp_core::shutdown_on_signal();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => kerp_stream::run(config, shutdown).await.context("stream-workers failed")?,
        Command::Reconcile { company, period } => {
            let scope = reconcile::Scope { company, period: period.as_deref().map(month).transpose()?, ..reconcile::Scope::default() };
            let pg = postgres(&config).await?;
            let report = reconcile::reconcile(&pg, &config.clickhouse.client(), "", &scope).await?;
            for d in &report.differences {
                println!("DIFFERENCE {d}");
            }
            for (company, folded, latest) in &report.behind {
                // Nothing folded at all: ClickHouse has no watermark for a company Postgres has posted vouchers of.
                let none = if *folded == 0 { " (nothing of it is in ClickHouse)" } else { "" };
                println!("in flight: company {company} folded up to sequence {folded}, Postgres is at {latest}{none}");
            }
            println!(
                "reconcile: {} companies ({} in flight), {} company×account×month keys compared, {} balance snapshots \
                 checked, {} differences, {} won",
                report.companies,
                report.behind.len(),
                report.compared,
                report.snapshots,
                report.differences.len(),
                report.diff_won()
            );
            if !report.differences.is_empty() {
                std::process::exit(1);
            }
        }
        Command::Rebuild(args) => {
            let pg = postgres(&config).await?;
            let s = rebuild::rebuild(&config, &pg, &args, &shutdown).await?;
            println!(
                "rebuild: {} messages, {} ledger lines folded in {:.1} s ({:.0} lines/s); reconciled exact; {}",
                s.messages,
                s.lines,
                s.seconds,
                s.lines_per_second(),
                if s.swapped { "swapped in" } else { "left as *__rebuild (--no-swap)" }
            );
        }
        Command::Skip { partition, offset, company, seq, reason, operator } => {
            let (kind, partition, offset, company, seq) = match (partition, offset, company, seq) {
                (Some(p), Some(o), None, None) => ("message", p, o, Uuid::nil(), 0),
                (None, None, Some(c), Some(s)) => ("sequence", -1, -1, c, s),
                _ => bail!("give either --partition and --offset, or --company and --seq"),
            };
            let ch = config.clickhouse.client();
            sink::migrate(&config.clickhouse.server_client(), &config.clickhouse.clickhouse_database, "").await?;
            let row = sink::SkipRow {
                topic: config.voucher_topic.clone(),
                kind: kind.to_owned(),
                partition,
                offset,
                company_id: company,
                seq,
                reason,
                operator,
                created_at: u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0),
            };
            sink::record_skip(&ch, &row).await?;
            println!("recorded: skip {kind} on {} (a running worker picks it up within seconds)", config.voucher_topic);
        }
    }
    Ok(())
}
