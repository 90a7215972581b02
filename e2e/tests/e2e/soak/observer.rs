//! An observer outside the system: it reads the process table every 50 ms and records every
//! restic process a task started (the agent names the task and attempt in the process's
//! environment, `BACKUP_AGENT_TASK`), which agent's it is (from its cache directory, under the
//! agent's state directory), and when it was first and last seen.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use backup_agent::{TASK_ENV, state::process_start_ticks};

use crate::harness::{environment, restic_pids};

/// One restic process of a task.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) pid: u32,
    /// The task id and attempt, as the agent wrote them.
    pub(crate) task: String,
    pub(crate) attempt: u32,
    /// The agent's name (its state directory is `<name>-state`).
    pub(crate) agent: String,
    pub(crate) operation: String,
    pub(crate) first: Instant,
    pub(crate) last: Instant,
}

/// What the observer saw.
#[derive(Default)]
pub(crate) struct Record {
    /// Every task process, by (pid, start ticks).
    pub(crate) processes: BTreeMap<(u32, u64), Seen>,
    /// Moments when one task had two restic processes alive.
    pub(crate) doubles: Vec<String>,
    /// Samples taken.
    pub(crate) samples: u64,
}

pub(crate) struct Observer {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    /// Watches the restic processes whose cache directory is under `marker`.
    pub(crate) fn start(marker: String) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let (flag, into) = (stop.clone(), record.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                let alive = task_processes(&marker);
                let mut r = into.lock().expect("record");
                r.samples += 1;
                let mut per_task: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for (key, p) in &alive {
                    per_task.entry(&p.task).or_default().push(key.0);
                    r.processes
                        .entry(*key)
                        .and_modify(|s| s.last = now)
                        .or_insert_with(|| Seen {
                            first: now,
                            last: now,
                            ..p.clone()
                        });
                }
                for (task, pids) in per_task {
                    if pids.len() > 1 {
                        r.doubles
                            .push(format!("task {task} had restic processes {pids:?} at once"));
                    }
                }
                drop(r);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Observer {
            stop,
            record,
            thread: Some(thread),
        }
    }

    /// Stops watching; what was seen.
    pub(crate) fn finish(mut self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the observer");
        }
        std::mem::take(&mut *self.record.lock().expect("record"))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The live restic processes of tasks whose cache directory is under `marker`.
fn task_processes(marker: &str) -> Vec<((u32, u64), Seen)> {
    let now = Instant::now();
    let mut found = Vec::new();
    for (pid, args) in restic_pids() {
        let Some(env) = environment(pid) else {
            continue;
        };
        let (Some(task), Some(cache)) = (env.get(TASK_ENV), env.get("RESTIC_CACHE_DIR")) else {
            continue;
        };
        if !cache.contains(marker) {
            continue;
        }
        let Some((task, attempt)) = task.split_once('/') else {
            continue;
        };
        // `<world>/<agent>-state/cache`
        let agent = std::path::Path::new(cache)
            .parent()
            .and_then(std::path::Path::file_name)
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix("-state"))
            .unwrap_or("?")
            .to_owned();
        let (Some(ticks), Ok(attempt)) = (process_start_ticks(pid), attempt.parse()) else {
            continue;
        };
        found.push((
            (pid, ticks),
            Seen {
                pid,
                task: task.to_owned(),
                attempt,
                agent,
                operation: args.get(1).cloned().unwrap_or_default(),
                first: now,
                last: now,
            },
        ));
    }
    found
}
