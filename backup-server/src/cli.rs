//! The operator's commands besides `serve`: tenants made and listed straight in the database
//! (the way to the first tenant when no `adminToken` is set).

use std::sync::Arc;

use backup_core::SystemClock;
use backup_store::{Store, TenantListing};

use crate::{ServerConfig, ServerError, redact};

/// `backup-server tenant ...`.
#[derive(Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum TenantCommand {
    /// Create a tenant; prints its id and token as JSON (the token is shown only this once).
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// Create it even if a tenant of that name exists.
        #[arg(long)]
        allow_duplicate_name: bool,
    },
    /// List the tenants (id, name, created, agents) as JSON.
    List,
}

/// Runs a tenant command; returns what to print on stdout. What it did and where goes to the
/// log (stderr): the database, without its password.
///
/// # Errors
/// [`ServerError`] when the database is unusable, the name invalid, or taken.
pub async fn run_tenant_command(
    config: &ServerConfig,
    command: TenantCommand,
) -> Result<String, ServerError> {
    let database = redact(&config.database);
    let store = Store::open(
        &config.database,
        config.store_config(),
        Arc::new(SystemClock),
    )
    .await?;
    let out = match command {
        TenantCommand::Create {
            name,
            allow_duplicate_name,
        } => {
            let existing = store.list_tenants().await?;
            if let Some(same) = existing.iter().find(|t| t.name == name)
                && !allow_duplicate_name
            {
                store.close().await;
                return Err(ServerError::Refused(format!(
                    "a tenant named {name:?} exists already in {database} (id {}); pass --allow-duplicate-name to make another",
                    same.id
                )));
            }
            let created = store.create_tenant(&name).await?;
            tracing::info!(tenant = %created.id, %name, %database, "tenant created");
            to_json(&created)
        }
        TenantCommand::List => {
            let tenants: Vec<TenantListing> = store.list_tenants().await?;
            tracing::info!(tenants = tenants.len(), %database, "tenants listed");
            to_json(&tenants)
        }
    };
    store.close().await;
    Ok(out)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
