//! `backup-agent`: runs restic for the orchestrator. Parses arguments, loads configuration,
//! starts tracing and calls the library.

use std::{path::PathBuf, sync::Arc};

use backup_agent::{Agent, AgentConfig, AgentOptions, HttpClient, TokioProcessRunner};
use backup_core::SystemClock;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(Cmd::Diagnostics) = cli.command {
        #[allow(clippy::print_stdout)]
        {
            println!("{}", backup_agent::read_diagnostics(&config).await?);
        }
        return Ok(());
    }
    let client = HttpClient::new(
        &config.orchestrator_url,
        config.resolve_agent_id()?,
        config.resolve_token()?,
    )?;
    let runner = Arc::new(TokioProcessRunner::new());
    let agent = Agent::start(
        config,
        AgentOptions::default(),
        runner,
        Arc::new(client),
        Arc::new(SystemClock),
    )
    .await?;
    agent.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
