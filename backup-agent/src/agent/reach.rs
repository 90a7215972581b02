//! Has restic reached its repository? restic 0.17 and later retry a backend that does not
//! answer by themselves, for about a quarter of an hour (0.14 fails at once): left alone, one
//! dead remote holds a slot that long per attempt, and neither the retry budget nor the
//! repository's backoff ever sees a failure. `repositoryTimeoutSeconds` bounds it: an attempt
//! still retrying the repository's opening (its config or keys) when that time has passed, with
//! nothing on its standard output, is stopped and reported as a retriable failure of the
//! repository (counted toward its backoff).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use backup_core::{Stopper, Stream};

/// What restic has shown so far of its way to the repository.
#[derive(Debug, Default)]
pub(super) struct Reach {
    /// A line on standard output: restic is past the repository's opening.
    opened: AtomicBool,
    /// The last line in which restic retried the opening, and when.
    retrying: Mutex<Option<(String, tokio::time::Instant)>>,
    /// The watchdog stopped restic.
    fired: AtomicBool,
}

/// Whether `line` (of standard error) is restic retrying the repository's opening: its config
/// or its keys (`Stat(<config/>) returned error, retrying after 2.4s: ...`).
pub(crate) fn retries_opening(line: &str) -> bool {
    line.contains("returned error, retrying after")
        && ["<config/>", "<key/", "List(key"]
            .iter()
            .any(|what| line.contains(what))
}

impl Reach {
    pub(super) fn note(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => self.opened.store(true, Ordering::Relaxed),
            _ if retries_opening(line) => {
                if let Ok(mut last) = self.retrying.lock() {
                    *last = Some((line.trim().to_owned(), tokio::time::Instant::now()));
                }
            }
            _ => {}
        }
    }

    /// Whether the watchdog stopped restic, and restic's last words about the repository.
    pub(super) fn fired(&self) -> Option<String> {
        self.fired.load(Ordering::Relaxed).then(|| {
            self.retrying
                .lock()
                .ok()
                .and_then(|l| l.as_ref().map(|(line, _)| line.clone()))
                .unwrap_or_default()
        })
    }

    /// After `after`, stops restic through `stopper` if it is still retrying the opening: a
    /// retry seen within the last `after` (at most 3 minutes: restic's waits between retries
    /// grow past a minute), and nothing on standard output. A retry at the start followed by
    /// minutes of silence is a repository that opened (a long backup of restic 0.18 prints
    /// nothing on stdout before its summary).
    pub(super) fn watch(
        self: &Arc<Self>,
        after: Duration,
        stopper: Stopper,
    ) -> tokio::task::JoinHandle<()> {
        let reach = self.clone();
        let window = (after + Duration::from_secs(1)).min(Duration::from_secs(180));
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let recent = reach
                .retrying
                .lock()
                .is_ok_and(|l| l.as_ref().is_some_and(|(_, at)| at.elapsed() <= window));
            let stuck = !reach.opened.load(Ordering::Relaxed) && recent;
            if stuck {
                reach.fired.store(true, Ordering::Relaxed);
                stopper.stop();
            }
        })
    }
}

impl super::Agent {
    /// Runs a short restic command that only reads the repository (a listing of snapshots):
    /// stopped when the agent shuts down, and when it is still retrying the repository's
    /// opening after `repositoryTimeoutSeconds`. Returns the outcome and, if the watchdog
    /// stopped it, restic's last words about the repository.
    pub(super) async fn run_reaching(
        &self,
        spec: backup_core::ProcessSpec,
    ) -> (
        Result<backup_core::ProcessOutcome, backup_core::Error>,
        Option<String>,
    ) {
        let (stopper, stop) = backup_core::StopSignal::pair();
        let reach = Arc::new(Reach::default());
        let watchdog = (self.inner.config.repository_timeout_seconds > 0).then(|| {
            reach.watch(
                Duration::from_secs(u64::from(self.inner.config.repository_timeout_seconds)),
                stopper.clone(),
            )
        });
        let on_shutdown = {
            let shutdown = self.inner.shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopper.stop();
            })
        };
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let noter = {
            let reach = reach.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if let backup_core::ProcessEvent::Line { stream, line } = event {
                        reach.note(stream, &line);
                    }
                }
            })
        };
        let outcome = self
            .inner
            .runner
            .run(
                spec,
                backup_core::ProcessControl {
                    events: Some(events),
                    stop,
                },
            )
            .await;
        on_shutdown.abort();
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let _ = noter.await;
        (outcome, reach.fired())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_018_retrying_an_unreachable_backend_is_recognised() {
        let recorded = include_str!("../../tests/fixtures/restic-0.18/backup_unreachable.stderr");
        let retries: Vec<&str> = recorded.lines().filter(|l| retries_opening(l)).collect();
        assert_eq!(retries.len(), 5, "{recorded}");
        assert!(!retries_opening(
            "Save(<data/1234>) returned error, retrying after 1s: EOF"
        ));
        assert!(!retries_opening(
            "repo already locked, waiting up to 2m0s for the lock"
        ));
    }

    /// A retry of the opening at the start, then minutes of silence on stdout: a repository
    /// that opened (restic 0.18's backup prints nothing before its summary), left running.
    #[tokio::test(start_paused = true)]
    async fn an_early_retry_then_silence_is_not_stuck() {
        let reach = Arc::new(Reach::default());
        reach.note(
            Stream::Stderr,
            "Stat(<config/>) returned error, retrying after 1s: EOF",
        );
        let (stopper, signal) = backup_core::StopSignal::pair();
        let watched = reach.watch(Duration::from_secs(300), stopper);
        tokio::time::sleep(Duration::from_secs(301)).await;
        watched.await.expect("watchdog");
        assert!(!signal.is_stopped() && reach.fired().is_none());
        // Still retrying at the deadline: stopped.
        let reach = Arc::new(Reach::default());
        let (stopper, signal) = backup_core::StopSignal::pair();
        let watched = reach.watch(Duration::from_secs(300), stopper);
        tokio::time::sleep(Duration::from_secs(250)).await;
        reach.note(
            Stream::Stderr,
            "Stat(<config/>) returned error, retrying after 64s: refused",
        );
        watched.await.expect("watchdog");
        assert!(signal.is_stopped() && reach.fired().is_some());
    }

    #[tokio::test]
    async fn the_watchdog_stops_only_an_attempt_stuck_at_the_opening() {
        for (lines, stops) in [
            (
                vec![(
                    Stream::Stderr,
                    "Stat(<config/>) returned error, retrying after 1s: refused",
                )],
                true,
            ),
            (
                vec![
                    (
                        Stream::Stderr,
                        "Stat(<config/>) returned error, retrying after 1s: refused",
                    ),
                    (Stream::Stdout, "{\"message_type\":\"status\"}"),
                ],
                false,
            ),
            (vec![], false),
        ] {
            let reach = Arc::new(Reach::default());
            for (stream, line) in &lines {
                reach.note(*stream, line);
            }
            let (stopper, signal) = backup_core::StopSignal::pair();
            reach
                .watch(Duration::from_millis(10), stopper)
                .await
                .expect("watchdog");
            assert_eq!(signal.is_stopped(), stops, "{lines:?}");
            assert_eq!(reach.fired().is_some(), stops);
        }
    }
}
