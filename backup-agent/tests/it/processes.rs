//! The real runner on real processes: niceness, process groups, timeouts, stops, tails.

use std::time::Duration;

use backup_agent::TokioProcessRunner;

use crate::harness::run_to_end;
use backup_core::{
    ExitStatus, ProcessControl, ProcessEvent, ProcessRunner, ProcessSpec, StopSignal, Stream,
    Termination,
};

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new("/bin/sh").args(["-c", script])
}

fn alive(pid: u32) -> bool {
    // A zombie (reaped later by init) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s[s.rfind(')').unwrap_or(0)..]
                .trim_start_matches(") ")
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn the_child_runs_with_the_requested_niceness() {
    let runner = TokioProcessRunner::new();
    if !runner.can_nice() {
        backup_testkit::skip("nice", "no nice binary on PATH");
        return;
    }
    let mut spec = sh("cat /proc/self/stat");
    spec.nice = Some(7);
    let out = runner
        .run(spec, ProcessControl::none())
        .await
        .expect("runs");
    assert_eq!(niceness(&out.stdout_tail), 7, "the child's own niceness");
    let own = std::fs::read_to_string("/proc/self/stat").expect("own stat");
    assert_eq!(niceness(&own), 0, "the agent's is untouched");
}

#[tokio::test]
async fn a_timeout_kills_the_child_and_its_children() {
    // The shell ignores SIGINT, so only the SIGKILL after the grace period ends it. The timeout
    // leaves the shell ample time to set its trap and start both children on a loaded machine.
    let mut spec = sh("trap '' INT; sleep 300 & echo child $!; sleep 300 & echo child $!; wait");
    spec.timeout = Some(Duration::from_secs(3));
    spec.grace = Duration::from_millis(300);
    let (out, events) = run_to_end(spec).await;
    assert_eq!(out.terminated, Some(Termination::TimedOut));
    assert!(
        matches!(out.status, ExitStatus::Signal(9)),
        "{:?}",
        out.status
    );
    let mut children = Vec::new();
    let mut leader = None;
    for event in events {
        match event {
            ProcessEvent::Started { pid, pgid } => {
                assert_eq!(pid, pgid, "the child leads its own process group");
                leader = Some(pid);
            }
            ProcessEvent::Line {
                stream: Stream::Stdout,
                line,
            } => {
                children.push(
                    line.trim_start_matches("child ")
                        .parse::<u32>()
                        .expect("pid"),
                );
            }
            _ => {}
        }
    }
    assert!(leader.is_some());
    assert_eq!(children.len(), 2);
    // SIGKILL went to the group; the kernel reaps the grandchildren soon after.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while children.iter().any(|pid| alive(*pid)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in children {
        assert!(!alive(pid), "grandchild {pid} outlived the timeout");
    }
}

/// Whether this process ignores SIGINT (as anything started in the background by a
/// non-interactive shell does): its children inherit that, and a shell cannot trap a signal
/// ignored on entry.
fn sigint_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
}

#[tokio::test]
async fn a_stop_sends_sigint_first_and_waits_for_a_clean_exit() {
    if sigint_ignored() {
        backup_testkit::skip(
            "sigint",
            "the tests were started with SIGINT ignored, so a child shell cannot trap it",
        );
        return;
    }
    let runner = TokioProcessRunner::new();
    let (stopper, stop) = StopSignal::pair();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A loop of short foreground sleeps, not `wait`: dash loses a trapped SIGINT that arrives
    // between `echo ready` and entering `wait` (seen on a loaded CI run), and then only SIGKILL
    // after the grace ends it.
    let spec = sh("trap 'echo cleaned up; exit 130' INT; echo ready; while :; do sleep 0.1; done");
    let run = tokio::spawn(async move {
        runner
            .run(
                spec,
                ProcessControl {
                    events: Some(tx),
                    stop,
                },
            )
            .await
    });
    // Stop only once the shell has set its trap (it says so).
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = rx.recv().await {
            if matches!(&event, ProcessEvent::Line { line, .. } if line == "ready") {
                return;
            }
        }
    })
    .await
    .expect("the shell got ready");
    stopper.stop();
    let out = run.await.expect("joined").expect("runs");
    assert_eq!(out.terminated, Some(Termination::Stopped));
    assert_eq!(
        out.status,
        ExitStatus::Code(130),
        "it exited by itself on SIGINT"
    );
    assert!(out.stdout_tail.contains("cleaned up"));
}

#[tokio::test]
async fn output_tails_are_bounded_and_lines_streamed() {
    let mut spec =
        sh("i=0; while [ $i -lt 5000 ]; do echo line-$i; i=$((i+1)); done; echo oops >&2; exit 4");
    spec.tail_bytes = 1000;
    let (out, events) = run_to_end(spec).await;
    assert_eq!(out.status, ExitStatus::Code(4));
    assert!(out.stdout_tail.len() <= 1000);
    assert!(
        out.stdout_tail.ends_with("line-4999\n"),
        "the tail is the end"
    );
    assert_eq!(out.stderr_tail, "oops\n");
    let lines = events
        .iter()
        .filter(|event| {
            matches!(
                event,
                ProcessEvent::Line {
                    stream: Stream::Stdout,
                    ..
                }
            )
        })
        .count();
    assert_eq!(lines, 5000, "every line streamed");
}

#[tokio::test]
async fn a_missing_binary_is_an_error_not_a_panic() {
    let runner = TokioProcessRunner::new();
    let err = runner
        .run(ProcessSpec::new("/no/such/restic"), ProcessControl::none())
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("/no/such/restic"), "{err}");
}

/// Field 19 of a `/proc/<pid>/stat` line: the niceness.
fn niceness(stat: &str) -> i32 {
    stat[stat.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .nth(16)
        .expect("field 19")
        .parse()
        .expect("number")
}

#[tokio::test]
async fn a_cleared_environment_holds_only_what_the_spec_gives() {
    let mut spec = ProcessSpec::new("/usr/bin/env");
    spec.clear_env = true;
    spec.env.push(("ONLY".into(), "this".into()));
    spec.nice = Some(5);
    let (out, _) = run_to_end(spec).await;
    assert_eq!(out.status, ExitStatus::Code(0), "{}", out.stderr_tail);
    assert_eq!(out.stdout_tail, "ONLY=this\n");
    let (inherited, _) = run_to_end(ProcessSpec::new("/usr/bin/env")).await;
    assert!(
        inherited.stdout_tail.contains("PATH="),
        "without clear_env the environment is inherited"
    );
}
