//! docs/CONFIGURATION.md is generated from the loaders' own key tables and defaults, so it
//! cannot drift: this test fails when the file is not what the code says.
//! `BACKUP_UPDATE_DOCS=1 cargo test -p backup-e2e --test e2e reference` rewrites it.

use backup_agent::{AgentConfig, REPOSITORY_KEYS};
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
         | key | default | what |\n|---|---|---|\n{}",
        ServerConfig::reference(),
        AgentConfig::reference(),
        REPOSITORY_KEYS
            .iter()
            .map(|(key, default, what)| format!(
                "| `repositories.<name>.{key}` | {default} | {what} |\n"
            ))
            .collect::<String>(),
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
