//! Crash consistency of the agent's state file. A process writes the agent's state with the
//! agent's own `StateFile::save` (the `state-writer` helper binary) and is killed with SIGKILL
//! at a random moment of the write, 100 times in a row. After every kill the file parses and
//! holds exactly the old state or the new one; the agent's loader finds nothing to move aside.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use backup_agent::state::{STATE_FILE, StateFile, parse};
use backup_e2e::crash_state;

const WRITES: u64 = 100;
/// Where the kills never land mid-write (a very fast disk), the test goes on this far.
const AT_MOST: u64 = 1000;

/// xorshift64: the kill moments, reproducible from the printed seed.
struct Moments(u64);

impl Moments {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

/// How long one save takes here (the median of 15).
fn save_time(dir: &Path) -> Duration {
    let file = StateFile::new(dir).expect("state file");
    let mut times: Vec<Duration> = (0..15)
        .map(|_| {
            let started = Instant::now();
            file.save(&crash_state(0)).expect("save");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

#[test]
fn sigkill_during_state_writes_leaves_the_old_state_or_the_new_one() {
    let writer = env!("CARGO_BIN_EXE_state-writer");
    let dir = tempfile::tempdir().expect("dir");
    let save = save_time(dir.path());
    // Kill moments spread over about twice a save (process start-up is before `ready`).
    let window_us = u64::try_from(save.as_micros()).unwrap_or(u64::MAX).max(50) * 2;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("one save takes {save:?}; kills within {window_us} µs of the start; seed {seed}");
    let mut moments = Moments(seed);
    let path = dir.path().join(STATE_FILE);
    let tmp = dir.path().join(format!(".{STATE_FILE}.tmp"));
    let mut current = 0u64;
    let (mut old, mut new, mut torn_temp) = (0, 0, 0);
    let mut n = 0;
    while n < WRITES || (torn_temp == 0 && n < AT_MOST) {
        n += 1;
        let _ = std::fs::remove_file(&tmp);
        let mut child = Command::new(writer)
            .arg(dir.path())
            .arg(n.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("state-writer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        std::thread::sleep(Duration::from_micros(moments.next(window_us)));
        let _ = child.kill();
        let status = child.wait().expect("wait");

        let bytes = std::fs::read(&path).expect("the state file exists after every kill");
        let state = parse(&bytes).unwrap_or_else(|| {
            panic!(
                "write {n} (killed: {}): the state file does not parse",
                status.code().is_none()
            )
        });
        if state == crash_state(current) {
            old += 1;
            if tmp.exists() {
                torn_temp += 1;
            }
        } else if state == crash_state(n) {
            new += 1;
            current = n;
        } else {
            panic!(
                "write {n}: the file holds neither state {current} nor state {n} (retries_total {})",
                state.counters.retries_total
            );
        }
        let loaded = StateFile::new(dir.path())
            .expect("state file")
            .load()
            .expect("load");
        assert!(loaded.moved_aside.is_none(), "write {n}: moved aside");
        assert_eq!(loaded.state, crash_state(current));
    }
    eprintln!(
        "{n} kills: {old} left the old state ({torn_temp} of them mid-write, a temp file left behind), {new} the new one"
    );
    assert_eq!(old + new, n);
    assert!(
        torn_temp > 0,
        "no kill landed between the temp file's creation and the rename; the test proved nothing"
    );
}
