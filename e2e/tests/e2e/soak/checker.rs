//! The invariants, checked at the end over the whole history: what the database recorded (through
//! the API), the repositories' snapshots, the agents' state files and logs, the servers' logs,
//! and the observer's record of restic processes.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use backup_agent::state::{STATE_FILE, parse};
use serde_json::Value;

use super::{OFFLINE_AFTER_SECONDS, Soak, observer::Record};
use crate::harness::snapshots;

/// How long a new `maxConcurrentTasks` may take to reach the agent (the next heartbeat answer,
/// with the network cut or the servers down in between).
const PROPAGATION: Duration = Duration::from_secs(30);

pub(crate) struct Report {
    pub(crate) violations: Vec<String>,
    /// (invariant, how many things it looked at).
    checked: Vec<(&'static str, usize)>,
    tasks: usize,
    runs: usize,
    succeeded: usize,
    processes: usize,
    samples: u64,
    /// Attempts that ran restic more than once, one after the other (not yet an invariant: see
    /// docs/RELIABILITY.md).
    pub(crate) rerun: Vec<String>,
}

impl Report {
    fn checked(&mut self, what: &'static str, n: usize) {
        self.checked.push((what, n));
    }

    /// The figures of the run, for the log and docs/RELIABILITY.md.
    pub(crate) fn summary(&self, soak: &Soak, took: Duration) -> String {
        let mut s = format!(
            "soak: seed {}, {:.0} s in all\nfaults injected:\n",
            soak.seed,
            took.as_secs_f64()
        );
        for (kind, n) in &soak.faults {
            let _ = writeln!(s, "  {n:>5}  {kind}");
        }
        let _ = writeln!(
            s,
            "tasks {}, attempts recorded {}, succeeded {}, restic processes of tasks seen {} ({} samples of the process table)",
            self.tasks, self.runs, self.succeeded, self.processes, self.samples
        );
        s.push_str("invariants checked:\n");
        for (what, n) in &self.checked {
            let _ = writeln!(s, "  {what}: {n} checked");
        }
        let _ = writeln!(
            s,
            "attempts that ran restic more than once (one after the other): {} {:?}",
            self.rerun.len(),
            self.rerun
        );
        let _ = write!(s, "violations: {}", self.violations.len());
        s
    }
}

pub(crate) async fn check(soak: &Soak, record: &Record) -> Report {
    let api = soak.api();
    let tasks = api.all("/tasks").await;
    let runs = api.all("/backup-runs").await;
    let mut report = Report {
        violations: Vec::new(),
        checked: Vec::new(),
        tasks: tasks.len(),
        runs: runs.len(),
        succeeded: runs.iter().filter(|r| r["status"] == "succeeded").count(),
        processes: record.processes.len(),
        samples: record.samples,
        rerun: Vec::new(),
    };
    let mut per_attempt: BTreeMap<(&str, u32), Vec<u32>> = BTreeMap::new();
    for p in record.processes.values() {
        per_attempt
            .entry((p.task.as_str(), p.attempt))
            .or_default()
            .push(p.pid);
    }
    report.rerun = per_attempt
        .into_iter()
        .filter(|(_, pids)| pids.len() > 1)
        .map(|((task, attempt), pids)| format!("{task}#{attempt} pids {pids:?}"))
        .collect();
    snapshots_recorded_once(soak, &runs, &mut report);
    report.checked(
        "no task had two restic processes at once",
        record.processes.len(),
    );
    report.violations.extend(record.doubles.iter().cloned());
    attempts_recorded_once(&runs, record, &mut report);
    limits_held(soak, record, &mut report);
    outboxes_empty(soak, &mut report);
    offline_events_match(soak, &mut report).await;
    no_panics(soak, &mut report);
    report
}

/// Every snapshot in the repositories is the `snapshotId` of exactly one succeeded run.
fn snapshots_recorded_once(soak: &Soak, runs: &[Value], report: &mut Report) {
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| r["status"] == "succeeded") {
        if let Some(id) = r["snapshotId"].as_str() {
            *recorded.entry(id.to_owned()).or_default() += 1;
        }
    }
    let mut n = 0;
    for (repo, password) in &soak.repositories {
        for s in snapshots(repo, password, &soak.world.path("cache")) {
            n += 1;
            let id = s["id"].as_str().unwrap_or_default();
            let short = s["short_id"].as_str().unwrap_or_default();
            let times = recorded
                .get(id)
                .or_else(|| recorded.get(short))
                .copied()
                .unwrap_or(0);
            if times != 1 {
                report.violations.push(format!(
                    "snapshot {short} in {} (tags {}) is recorded by {times} succeeded runs",
                    repo.display(),
                    s["tags"]
                ));
            }
        }
    }
    report.checked("every snapshot recorded by exactly one succeeded run", n);
}

/// No (task, attempt) has two runs, and every attempt whose restic ran has one.
fn attempts_recorded_once(runs: &[Value], record: &Record, report: &mut Report) {
    let mut per_attempt: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for r in runs {
        let key = (
            r["taskId"].as_str().unwrap_or_default().to_owned(),
            r["attempt"].as_u64().unwrap_or(0),
        );
        *per_attempt.entry(key).or_default() += 1;
    }
    for ((task, attempt), n) in &per_attempt {
        if *n > 1 {
            report.violations.push(format!(
                "task {task} attempt {attempt} is recorded {n} times"
            ));
        }
    }
    for seen in record.processes.values() {
        let key = (seen.task.clone(), u64::from(seen.attempt));
        if !per_attempt.contains_key(&key) {
            report.violations.push(format!(
                "task {} attempt {} ran restic {} (pid {}, {}) but no run records it",
                seen.task, seen.attempt, seen.operation, seen.pid, seen.agent
            ));
        }
    }
    report.checked("every attempt recorded once", per_attempt.len());
}

/// When a task's restic started, the agent's restic processes (that one included) were no more
/// than its `maxConcurrentTasks`: the highest value it had in the `PROPAGATION` before.
fn limits_held(soak: &Soak, record: &Record, report: &mut Report) {
    let all: Vec<_> = record.processes.values().collect();
    for p in &all {
        let Some(agent) = soak.agents.iter().find(|a| a.name == p.agent) else {
            continue;
        };
        let limit = limit_around(&agent.limits, p.first);
        let alive: Vec<u32> = all
            .iter()
            .filter(|o| o.agent == p.agent && o.first <= p.first && p.first <= o.last)
            .map(|o| o.pid)
            .collect();
        if alive.len() as u32 > limit {
            report.violations.push(format!(
                "{} ran {} restic processes {alive:?} with maxConcurrentTasks at most {limit} (task {} attempt {})",
                p.agent,
                alive.len(),
                p.task,
                p.attempt
            ));
        }
    }
    report.checked(
        "no agent ran more restic processes than its limit",
        all.len(),
    );
}

/// The highest limit in force at some moment in [at - PROPAGATION, at].
fn limit_around(history: &[(Instant, u32)], at: Instant) -> u32 {
    let from = at.checked_sub(PROPAGATION).unwrap_or(at);
    let before = history
        .iter()
        .rev()
        .find(|(t, _)| *t <= from)
        .map_or(0, |(_, l)| *l);
    history
        .iter()
        .filter(|(t, _)| *t > from && *t <= at)
        .map(|(_, l)| *l)
        .fold(before, u32::max)
}

/// Every agent's outbox is empty after its clean stop.
fn outboxes_empty(soak: &Soak, report: &mut Report) {
    for a in &soak.agents {
        let path = a.state_dir().join(STATE_FILE);
        match std::fs::read(&path).ok().and_then(|b| parse(&b)) {
            Some(state) if state.outbox.is_empty() => {}
            Some(state) => report.violations.push(format!(
                "{}'s outbox still holds {} results: {:?}",
                a.name,
                state.outbox.len(),
                state
                    .outbox
                    .iter()
                    .map(|e| format!("{}#{}", e.task_id, e.report.attempt))
                    .collect::<Vec<_>>()
            )),
            None => report.violations.push(format!(
                "{}'s state file {} is unreadable",
                a.name,
                path.display()
            )),
        }
    }
    report.checked("no outbox entry remains", soak.agents.len());
}

/// `agent.offline` events per agent: at least the outages that lasted well past
/// `offlineAfterSeconds`, at most those that came near it.
async fn offline_events_match(soak: &Soak, report: &mut Report) {
    let events = soak.api().all("/events?type=agent.offline").await;
    let offline = OFFLINE_AFTER_SECONDS as f64;
    for (i, a) in soak.agents.iter().enumerate() {
        let id = a.creds.id.to_string();
        let got = events
            .iter()
            .filter(|e| e["subjectId"].as_str() == Some(id.as_str()))
            .count();
        let lengths: Vec<f64> = soak
            .outages
            .iter()
            .filter(|(agent, _, _)| *agent == i)
            .map(|(_, from, to)| (*to - *from).as_secs_f64())
            .collect();
        let surely = lengths.iter().filter(|l| **l >= offline + 3.0).count();
        let maybe = lengths.iter().filter(|l| **l >= offline - 4.0).count() + soak.blackouts.len();
        if got < surely || got > maybe {
            report.violations.push(format!(
                "{} has {got} agent.offline events; its outages (s) {lengths:.1?} call for {surely} to {maybe}",
                a.name
            ));
        }
    }
    report.checked(
        "agent.offline events match the outages past offlineAfterSeconds",
        soak.agents.len(),
    );
}

/// No process panicked.
fn no_panics(soak: &Soak, report: &mut Report) {
    let mut logs = vec![("replica-a".to_owned(), soak.servers[0].process.log())];
    logs.push(("replica-b".to_owned(), soak.servers[1].process.log()));
    for a in &soak.agents {
        logs.push((a.name.clone(), a.process.log()));
    }
    for (name, log) in &logs {
        for line in log.lines().filter(|l| l.contains("panicked")) {
            report.violations.push(format!("{name} panicked: {line}"));
        }
    }
    report.checked("no process panicked", logs.len());
}
