//! Persisting the agent's state (serialize + temp + fsync + rename + fsync dir) beside a bare
//! write + fsync + rename of the same bytes, in the same directory, in the same run.
//!
//! `cargo bench -p backup-agent --bench state`

use std::{fs::File, io::Write};

use backup_agent::state::{AgentState, OutboxEntry, ProcessRecord, Scope, StateFile};
use backup_core::{AttemptOutcome, AttemptReport, Settings, SplitMix64, TaskId, TaskKind};
use criterion::{Criterion, criterion_group, criterion_main};

/// A busy agent's state: 10 repositories with failure counts, 4 running restic processes, 20
/// undelivered results.
fn busy_state() -> AgentState {
    let mut state = AgentState::default();
    let now = chrono::Utc::now();
    let mut rng = SplitMix64::new(1);
    let settings = Settings {
        backoff_failure_threshold: 2,
        ..Settings::default()
    };
    for i in 0..10 {
        for _ in 0..3 {
            state.backoff.record_failure(
                Scope::Repository(format!("repository-{i}")),
                &settings,
                now,
                &mut rng,
            );
        }
    }
    for i in 0..4 {
        state.processes.push(ProcessRecord {
            pgid: 1000 + i,
            start_ticks: Some(123_456),
            task_id: TaskId::new(),
            attempt: 1,
            kind: TaskKind::Backup,
            repository: "repository-1".into(),
        });
    }
    for _ in 0..20 {
        let mut report = AttemptReport::new(2, AttemptOutcome::Failed);
        report.error = Some("restic exited with code 1: Fatal: unable to create lock in backend: repository is already locked".into());
        report.started_at = Some(now);
        report.finished_at = Some(now);
        state.outbox.push(OutboxEntry {
            task_id: TaskId::new(),
            report,
            tries: 3,
            next_try_at: Some(now),
            refused_since: None,
        });
    }
    state.counters.retries_total = 42;
    state
}

fn persist(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let state = busy_state();
    let file = StateFile::new(dir.path()).expect("state file");
    let bytes = backup_agent::state::encode(&state).expect("json");
    eprintln!("state file size: {} bytes", bytes.len());
    let mut group = c.benchmark_group("state persistence with fsync");
    group.bench_function("bare write + fsync + rename (baseline)", |b| {
        let tmp = dir.path().join("bare.tmp");
        let target = dir.path().join("bare.json");
        b.iter(|| {
            let mut f = File::create(&tmp).expect("create");
            f.write_all(&bytes).expect("write");
            f.sync_all().expect("fsync");
            std::fs::rename(&tmp, &target).expect("rename");
        })
    });
    group.bench_function(
        "bare write + fsync + rename + fsync dir (the same durable sequence)",
        |b| {
            let tmp = dir.path().join("bare2.tmp");
            let target = dir.path().join("bare2.json");
            b.iter(|| {
                let mut f = File::create(&tmp).expect("create");
                f.write_all(&bytes).expect("write");
                f.sync_all().expect("fsync");
                std::fs::rename(&tmp, &target).expect("rename");
                File::open(dir.path())
                    .expect("dir")
                    .sync_all()
                    .expect("fsync dir");
            })
        },
    );
    group.bench_function(
        "StateFile::save (serialize, temp, fsync, rename, fsync dir)",
        |b| b.iter(|| file.save(&state).expect("save")),
    );
    group.finish();
}

criterion_group!(benches, persist);
criterion_main!(benches);
