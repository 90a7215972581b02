//! `backup-agent`: runs restic for the orchestrator. Parses arguments, loads configuration,
//! starts tracing and calls the library.

use backup_agent::Configuration as _;
use std::path::PathBuf;

use backup_agent::AgentConfig;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Runs restic backups, checks and prunes for the orchestrator"
)]
struct Cli {
    /// YAML configuration (BACKUP_AGENT_* environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (the default).
    Run,
    /// Print the running agent's live metrics and state as JSON.
    Diagnostics,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = AgentConfig::load(cli.config.as_deref())?;
    backup_config::init_tracing();
    if let Some(Cmd::Diagnostics) = cli.command {
        #[allow(clippy::print_stdout)]
        {
            let reading = backup_agent::read_diagnostics(&config).await?;
            if let Some(note) = &reading.note {
                eprintln!("{note}");
            }
            println!("{}", reading.json);
        }
        return Ok(());
    }
    backup_agent::run_until_signal(config).await?;
    Ok(())
}
