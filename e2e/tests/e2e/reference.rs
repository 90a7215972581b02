//! docs/CONFIGURATION.md is generated from the loaders' own key tables and defaults, so it
//! cannot drift: this test fails when the file is not what the code says.
//! `BACKUP_UPDATE_DOCS=1 cargo test -p backup-e2e --test e2e reference` rewrites it.

use backup_agent::AgentConfig;
use backup_config::Configuration;
use backup_server::ServerConfig;

fn reference() -> String {
    format!(
        "# Configuration reference\n\n\
         Generated from the code by the test `reference::the_configuration_reference_is_current`\n\
         (`BACKUP_UPDATE_DOCS=1 cargo test -p backup-e2e --test e2e reference` rewrites it).\n\n\
         Both binaries read a YAML file (`--config PATH`), then environment variables, then\n\
         defaults. An environment variable is the prefix plus the key in upper snake case,\n\
         nested keys joined by `__`. A bad value is refused at start with the key, the value,\n\
         the allowed range and where it came from.\n\n\
         ## backup-server\n\n{}\n\
         ## backup-agent\n\n{}\n\
         ### `repositories` (in the file only: named maps with secrets beside them)\n\n\
         | key | default | what |\n|---|---|---|\n\
         | `repositories.<name>.url` | (required) | restic's repository (`/srv/restic`, `rest:https://...`, `s3:...`, `sftp:...`) |\n\
         | `repositories.<name>.passwordFile` | (required) | a file holding the repository's password |\n\
         | `repositories.<name>.env` | none | backend credentials and other environment for restic (`AWS_ACCESS_KEY_ID`: ...) |\n\
         | `repositories.<name>.envFile` | none | a file of `KEY=value` lines (the .env format: a `$` outside single quotes expands) |\n\
         | `repositories.<name>.initIfMissing` | `false` | create the repository (`restic init`) when it does not exist |\n",
        ServerConfig::reference(),
        AgentConfig::reference(),
    )
}

#[test]
fn the_configuration_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIGURATION.md");
    let wanted = reference();
    if std::env::var_os("BACKUP_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &wanted).expect("write the reference");
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == wanted,
        "docs/CONFIGURATION.md is not what the code says; regenerate it with \
         BACKUP_UPDATE_DOCS=1 cargo test -p backup-e2e --test e2e reference"
    );
    for key in [
        "scheduler.tickSeconds",
        "BACKUP_AGENT_MAX_CONCURRENT_TASKS",
        "tokenFile",
    ] {
        assert!(wanted.contains(key), "{key}");
    }
}
