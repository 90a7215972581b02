//! `backup-server`: the orchestrator binary. Parses arguments, loads configuration, starts
//! tracing and calls the library.

use backup_server::Configuration as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "The restic fleet orchestrator: HTTP API and scheduler"
)]
struct Cli {
    /// YAML configuration file (environment variables BACKUP_SERVER_* override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the scheduler (the default).
    Serve,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id and token as JSON.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = backup_server::ServerConfig::load(cli.config.as_deref())?;
    backup_config::init_tracing();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => backup_server::serve(config).await?,
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let tenant = backup_server::create_tenant(&config, &name).await?;
            #[allow(clippy::print_stdout)]
            {
                println!("{}", serde_json::to_string_pretty(&tenant)?);
            }
        }
    }
    Ok(())
}
