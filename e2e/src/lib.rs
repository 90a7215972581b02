//! End-to-end tests live in `tests/e2e`. This library holds only what the tests share with the
//! helper binary `state-writer` (the crash-consistency test of the agent's state file).
#![deny(missing_docs)]

use backup_agent::state::{AgentState, ProcessRecord};
use backup_core::{TaskId, TaskKind};

/// The `n`th state of the crash-consistency test: distinct for every `n`, and large enough
/// (about 64 KiB) that writing it takes a while to land a kill in.
#[must_use]
pub fn crash_state(n: u64) -> AgentState {
    let mut state = AgentState {
        version: 1,
        ..AgentState::default()
    };
    state.counters.retries_total = n;
    state
        .counters
        .tasks_total
        .insert("backup/succeeded".into(), n * 3);
    state.processes = (0..200u64)
        .map(|i| ProcessRecord {
            pgid: u32::try_from(i).unwrap_or(0) + 1000,
            start_ticks: Some(n),
            task_id: format!("00000000-0000-4000-8000-{i:012x}")
                .parse::<TaskId>()
                .unwrap_or_default(),
            attempt: u32::try_from(n % 1000).unwrap_or(0),
            kind: TaskKind::Backup,
            repository: format!("repository-{n}-{i}-{}", "x".repeat(200)),
        })
        .collect();
    state
}
