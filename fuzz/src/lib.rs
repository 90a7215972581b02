//! What each fuzz target does with its input, as plain functions: the libFuzzer binaries call
//! them, and `tests/replay.rs` calls them on the checked-in corpus with the stable toolchain.
//! Each must never panic, whatever the bytes.

use backup_agent::Configuration as _;
use backup_agent::{AgentConfig, restic, state};
use backup_core::{
    AttemptReport, ExitStatus, Heartbeat, PolicySpec, Settings, SettingsPatch, TaskKind,
};

/// The agent's YAML configuration parser and validation.
pub fn agent_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = AgentConfig::parse(text, "fuzz", |_| None)
    {
        let _ = config.proposed_settings();
        let _ = config.resolve_agent_id();
    }
}

/// The state file loader.
pub fn state_file(data: &[u8]) {
    if let Some(mut loaded) = state::parse(data) {
        // What loads must save and load back to the same state (saving stamps the version).
        let bytes = state::encode(&loaded).expect("a loaded state serializes");
        let reloaded = state::parse(&bytes).expect("a saved state loads");
        loaded.version = reloaded.version;
        assert_eq!(reloaded, loaded);
    }
}

/// restic's output: the version, the JSON summary, the outcome classifier.
pub fn restic_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let version = restic::ResticVersion::parse(&text);
    let _ = restic::parse_summary(text.lines());
    let code = data.first().map_or(0, |b| i32::from(*b));
    for kind in TaskKind::ALL {
        let _ = restic::classify(version, kind, ExitStatus::Code(code), &text);
        let _ = restic::classify(version, kind, ExitStatus::Signal(code), &text);
    }
}

/// The server's request bodies, through the same parsing as its routes, then validation.
/// The first byte picks the body.
pub fn request_bodies(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(patch) = backup_server::fuzzing::parse_tenant_body::<SettingsPatch>(body)
                && let Ok(merged) = Settings::default().apply(&patch)
            {
                merged.validate().expect("an accepted merge is valid");
            }
        }
        1 => {
            let _ = backup_server::fuzzing::parse_agent_body::<Heartbeat>(body);
        }
        2 => {
            let _ = backup_server::fuzzing::parse_agent_body::<AttemptReport>(body);
        }
        _ => {
            if let Ok(policy) = backup_server::fuzzing::parse_tenant_body::<PolicySpec>(body)
                && let Ok(schedule) = policy.validate()
            {
                let now = chrono_now();
                let due = schedule.first_due(now);
                let _ = schedule.advance(due, now);
            }
        }
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    // Spring-forward night in Europe: cron schedules meet a missing hour.
    "2026-03-29T00:30:00Z".parse().expect("a fixed instant")
}
