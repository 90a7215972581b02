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
        command: backup_server::TenantCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = backup_server::ServerConfig::load(cli.config.as_deref())?;
    backup_config::init_tracing();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => backup_server::serve(config).await?,
        Command::Tenant { command } => {
            let out = backup_server::run_tenant_command(&config, command).await?;
            #[allow(clippy::print_stdout)]
            {
                println!("{out}");
            }
        }
    }
    Ok(())
}
