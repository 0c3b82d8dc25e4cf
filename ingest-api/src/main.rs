//! The ingest-api binary: serves the write API by default, and has subcommands for migrations, companies and tokens.

use anyhow::Context;
use clap::{Parser, Subcommand};
use kerp_core::auth::Role;
use kerp_ingest::{company, Config};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "ingest-api", about = "K-ERP ingest-api: vouchers into Postgres and, through the outbox, into Kafka")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run the outbox relay (the default).
    Serve,
    /// Apply the Postgres migrations and exit.
    Migrate,
    /// Create a company with the default chart of accounts and an admin user; prints JSON with their ids and a token.
    CreateCompany {
        #[arg(long)]
        name: String,
        #[arg(long)]
        business_number: Option<String>,
        #[arg(long)]
        admin_email: String,
    },
    /// Print a bearer token for a company's admin user.
    Token {
        #[arg(long)]
        company: Uuid,
        /// Lifetime in seconds, at most `TOKEN_TTL_SECONDS_MAX` (86400, one day).
        #[arg(long, default_value_t = kerp_core::auth::TOKEN_TTL_SECONDS_DEFAULT,
              value_parser = clap::value_parser!(i64).range(1..=kerp_core::auth::TOKEN_TTL_SECONDS_MAX))]
        ttl_seconds: i64,
    },
}

/// mimalloc instead of glibc's malloc, as in stream-workers: each request allocates and frees many small buffers
/// across the runtime's threads, which glibc's arenas serve slowly (its malloc and free were a tenth of ingest-api's
/// CPU at 1,000 posts/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Built by hand, not by `#[tokio::main]`, so that the thread count is a documented setting of the Config.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if cli.config.runtime_threads > 0 {
        runtime.worker_threads(usize::from(cli.config.runtime_threads));
    }
    runtime.enable_all().build().context("starting the async runtime")?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    kerp_core::telemetry::init_logging();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            kerp_ingest::run(cli.config, kerp_core::shutdown_on_signal()).await.context("ingest-api failed")?;
        }
        Command::Migrate => {
            kerp_ingest::connect(&cli.config).await.context("migrating")?;
        }
        Command::CreateCompany { name, business_number, admin_email } => {
            // Checked before the company exists, so a refused secret leaves nothing half made.
            cli.config.check_jwt_secret()?;
            let pool = kerp_ingest::connect(&cli.config).await?;
            let c = company::create_company(&pool, &name, business_number.as_deref(), &admin_email, &cli.config.voucher_topic).await?;
            let token = company::token(
                &cli.config.jwt_secret,
                c.admin_user_id,
                c.company_id,
                Role::Admin,
                kerp_core::auth::TOKEN_TTL_SECONDS_DEFAULT,
            )?;
            println!("{}", serde_json::json!({"company_id": c.company_id, "admin_user_id": c.admin_user_id, "token": token}));
        }
        Command::Token { company: company_id, ttl_seconds } => {
            cli.config.check_jwt_secret()?;
            let pool = kerp_ingest::connect(&cli.config).await?;
            let user = company::admin_of(&pool, company_id).await?.context("no such company, or it has no admin user")?;
            println!("{}", company::token(&cli.config.jwt_secret, user, company_id, Role::Admin, ttl_seconds)?);
        }
    }
    Ok(())
}
