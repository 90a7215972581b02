//! Running an external program (restic) behind a trait, so the agent's logic is testable
//! without processes and an embedder can wrap or replace the real runner.
//!
//! The contract every runner keeps: the child gets its own process group; a timeout or a stop
//! request sends SIGINT to that group, waits [`ProcessSpec::grace`], then SIGKILLs it; stdout and
//! stderr are kept as bounded tails, and each complete line is streamed as it arrives.

use std::{path::PathBuf, time::Duration};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::Error;

/// The I/O scheduling class a child runs under (Linux `ionice`), best effort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoClass {
    /// Only when no other process wants the disk (check and prune use it).
    Idle,
    /// Normal best-effort class with a priority from 0 (high) to 7 (low).
    BestEffort(u8),
}

/// What to run and how. Its `Debug` shows the environment's names, never their values (they
/// hold backend credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program (a path, or a name looked up on `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables for the child: added to the inherited environment, or, with
    /// `clear_env`, the child's whole environment.
    pub env: Vec<(String, String)>,
    /// Start the child from an empty environment (it sees only `env`): the agent's own
    /// environment (its token, say) never reaches restic.
    pub clear_env: bool,
    /// Working directory; the runner's own when `None`.
    pub cwd: Option<PathBuf>,
    /// Niceness for the child only (0-19); `None` inherits.
    pub nice: Option<i32>,
    /// I/O class; `None` inherits.
    pub io_class: Option<IoClass>,
    /// Wall-clock limit; on expiry the runner stops the child (SIGINT, grace, SIGKILL).
    pub timeout: Option<Duration>,
    /// Time between SIGINT and SIGKILL when stopping.
    pub grace: Duration,
    /// Bytes of stdout and of stderr kept in the outcome's tails.
    pub tail_bytes: usize,
}

impl std::fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env (values hidden)", &env)
            .field("clear_env", &self.clear_env)
            .field("cwd", &self.cwd)
            .field("nice", &self.nice)
            .field("io_class", &self.io_class)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl ProcessSpec {
    /// A spec for `program` with no arguments, a 10 s grace and 64 KiB tails.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            nice: None,
            io_class: None,
            timeout: None,
            grace: Duration::from_secs(10),
            tail_bytes: 64 * 1024,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub const fn success(self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if it exited.
    pub const fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }
}

/// Why the runner stopped the child, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Termination {
    /// [`ProcessSpec::timeout`] expired.
    TimedOut,
    /// The [`StopSignal`] fired.
    Stopped,
}

/// What a finished run left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// Exit code or signal.
    pub status: ExitStatus,
    /// Set when the runner stopped the child itself.
    pub terminated: Option<Termination>,
    /// The last [`ProcessSpec::tail_bytes`] of stdout.
    pub stdout_tail: String,
    /// The last [`ProcessSpec::tail_bytes`] of stderr.
    pub stderr_tail: String,
    /// Wall-clock run time.
    pub duration: Duration,
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Something that happened while the child ran.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessEvent {
    /// The child started; `pgid` is its process group (equal to its pid), to record for cleanup.
    Started {
        /// Process id.
        pid: u32,
        /// Process group id.
        pgid: u32,
    },
    /// One complete line of output, without its newline.
    Line {
        /// Where it came from.
        stream: Stream,
        /// The text (lossy UTF-8).
        line: String,
    },
}

/// Asks a running child to stop (SIGINT, grace, SIGKILL). Made with [`StopSignal::pair`].
#[derive(Debug, Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Requests the stop. Idempotent.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// The receiving side of a [`Stopper`]; [`StopSignal::never`] for a run nobody stops.
#[derive(Debug, Clone)]
pub struct StopSignal(Option<watch::Receiver<bool>>);

impl StopSignal {
    /// A connected stopper and signal.
    pub fn pair() -> (Stopper, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (Stopper(tx), StopSignal(Some(rx)))
    }

    /// A signal that never fires.
    pub const fn never() -> Self {
        StopSignal(None)
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when a stop is requested; never, if the stopper is gone without stopping.
    pub async fn stopped(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                if rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// Where a run reports its events, and how it can be stopped.
#[derive(Debug)]
pub struct ProcessControl {
    /// Receives [`ProcessEvent`]s; `None` to ignore them.
    pub events: Option<mpsc::UnboundedSender<ProcessEvent>>,
    /// Fires to stop the child early.
    pub stop: StopSignal,
}

impl ProcessControl {
    /// No events, no stop.
    pub const fn none() -> Self {
        Self {
            events: None,
            stop: StopSignal::never(),
        }
    }
}

/// Runs a process to completion. Object-safe: agents hold an `Arc<dyn ProcessRunner>`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProcessRunner: Send + Sync {
    /// Runs `spec` and waits for the child (and, after a stop, its whole process group).
    ///
    /// A non-zero exit is an `Ok` outcome; classifying it is the caller's business.
    ///
    /// # Errors
    /// [`Error::Process`] when the child cannot be started or its output cannot be read. A
    /// missing binary is retriable: an operator can install it, and the agent backs off meanwhile.
    async fn run(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> Result<ProcessOutcome, Error>;
}
