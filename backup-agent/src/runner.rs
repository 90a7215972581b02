//! The real process runner: backup-core's `ProcessRunner` on tokio.
//!
//! Each child gets its own process group, so a stop reaches restic and anything it started.
//! Niceness and the I/O class are applied to the child only, by starting it through `nice` and
//! `ionice` (which exec into restic: same pid, no unsafe `pre_exec`). A stop or timeout sends
//! SIGINT to the group (restic removes its lock and exits), waits the grace period, then
//! SIGKILLs the group; a run whose future is dropped kills its group too.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use backup_core::{
    Error, ErrorClass, ExitStatus, IoClass, ProcessControl, ProcessEvent, ProcessOutcome,
    ProcessRunner, ProcessSpec, Stream, Termination,
};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::Command,
    sync::mpsc::UnboundedSender,
    task::JoinHandle,
};

/// Longest line kept whole; longer ones are cut (restic's status lines are ~200 bytes).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Runs processes on tokio with process groups, niceness, I/O class, bounded output.
#[derive(Debug, Clone)]
pub struct TokioProcessRunner {
    nice: Option<PathBuf>,
    ionice: Option<PathBuf>,
}

impl Default for TokioProcessRunner {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds `program` on `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

impl TokioProcessRunner {
    /// A runner using `nice` and `ionice` from `PATH` when they exist.
    pub fn new() -> Self {
        Self {
            nice: which("nice"),
            ionice: which("ionice"),
        }
    }

    /// Whether niceness can be applied.
    pub fn can_nice(&self) -> bool {
        self.nice.is_some()
    }

    /// Whether the I/O class can be applied.
    pub fn can_ionice(&self) -> bool {
        self.ionice.is_some()
    }

    fn command(&self, spec: &ProcessSpec) -> Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let (Some(n), Some(nice)) = (spec.nice, &self.nice) {
            argv.extend([
                nice.clone().into_os_string(),
                "-n".into(),
                n.clamp(0, 19).to_string().into(),
            ]);
        }
        if let (Some(class), Some(ionice)) = (spec.io_class, &self.ionice) {
            argv.push(ionice.clone().into_os_string());
            match class {
                IoClass::Idle => argv.extend(["-c".into(), "3".into()]),
                IoClass::BestEffort(level) => {
                    argv.extend([
                        "-c".into(),
                        "2".into(),
                        "-n".into(),
                        level.min(7).to_string().into(),
                    ]);
                }
                _ => {}
            }
        }
        argv.push(spec.program.clone().into_os_string());
        argv.extend(spec.args.iter().map(Into::into));
        let mut cmd = Command::new(&argv[0]);
        if spec.clear_env {
            cmd.env_clear();
        }
        cmd.args(&argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        cmd
    }
}

/// Kills a process group when dropped (a run future dropped half-way leaves nothing behind).
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Sends `signal` to a process group; a group that is gone already is fine.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> bool {
    i32::try_from(pgid).is_ok_and(|p| p > 1 && killpg(Pid::from_raw(p), signal).is_ok())
}

/// Keeps the last `cap` bytes of a stream.
#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if self.cap == 0 {
            return;
        }
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(self.cap);
        self.bytes.drain(..excess);
    }

    fn text(self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

fn pump<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    stream: Stream,
    cap: usize,
    events: Option<UnboundedSender<ProcessEvent>>,
) -> JoinHandle<Tail> {
    tokio::spawn(async move {
        let mut tail = Tail {
            bytes: VecDeque::new(),
            cap,
        };
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE_BYTES as u64)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            tail.push(&line);
            if let Some(tx) = &events {
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send(ProcessEvent::Line {
                    stream,
                    line: text.trim_end_matches(['\n', '\r']).to_owned(),
                });
            }
        }
        tail
    })
}

use tokio::io::AsyncReadExt as _;

#[async_trait]
impl ProcessRunner for TokioProcessRunner {
    async fn run(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> Result<ProcessOutcome, Error> {
        let program = spec.program.display().to_string();
        let started = Instant::now();
        let mut child = self.command(&spec).spawn().map_err(|e| Error::Process {
            program: program.clone(),
            message: e.to_string(),
            // A missing binary can be installed; the agent backs off meanwhile.
            class: ErrorClass::Retriable,
        })?;
        let pid = child.id().unwrap_or_default();
        let mut guard = GroupGuard(i32::try_from(pid).ok().map(Pid::from_raw));
        if let Some(tx) = &control.events {
            let _ = tx.send(ProcessEvent::Started { pid, pgid: pid });
        }
        let stdout = pump(
            child.stdout.take().ok_or_else(|| broken(&program))?,
            Stream::Stdout,
            spec.tail_bytes,
            control.events.clone(),
        );
        let stderr = pump(
            child.stderr.take().ok_or_else(|| broken(&program))?,
            Stream::Stderr,
            spec.tail_bytes,
            control.events.clone(),
        );

        let mut stop = control.stop;
        let timeout = async {
            match spec.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let mut terminated = None;
        let status = tokio::select! {
            status = child.wait() => status,
            () = timeout => {
                terminated = Some(Termination::TimedOut);
                terminate(&mut child, pid, spec.grace).await
            }
            () = stop.stopped() => {
                terminated = Some(Termination::Stopped);
                terminate(&mut child, pid, spec.grace).await
            }
        }
        .map_err(|e| Error::Process {
            program: program.clone(),
            message: e.to_string(),
            class: ErrorClass::Retriable,
        })?;
        // The leader is gone; nothing of its group may outlive it.
        signal_group(pid, Signal::SIGKILL);
        guard.0 = None;
        let stdout = collect(stdout).await;
        let stderr = collect(stderr).await;
        let status = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            (None, None) => ExitStatus::Code(-1),
        };
        Ok(ProcessOutcome {
            status,
            terminated,
            stdout_tail: stdout,
            stderr_tail: stderr,
            duration: started.elapsed(),
        })
    }
}

fn broken(program: &str) -> Error {
    Error::Process {
        program: program.to_owned(),
        message: "no output pipe".into(),
        class: ErrorClass::Retriable,
    }
}

/// SIGINT to the group, the grace period, then SIGKILL.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(pid, Signal::SIGINT);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// A pump's tail; a pipe held open by a stray grandchild is given up after 2 s.
async fn collect(pump: JoinHandle<Tail>) -> String {
    let abort = pump.abort_handle();
    match tokio::time::timeout(Duration::from_secs(2), pump).await {
        Ok(Ok(tail)) => tail.text(),
        _ => {
            abort.abort();
            String::new()
        }
    }
}
