use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use backup_core::{ConcurrencyGate, GateLimits, PerKind, TaskKind};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn kind_of(i: u8) -> TaskKind {
    TaskKind::ALL[usize::from(i) % TaskKind::ALL.len()]
}

/// Counts what the test itself sees running, and checks it against the limits in force at the
/// moment of each admission (a current-thread runtime makes "the moment" exact).
#[derive(Default)]
struct Observed {
    running: usize,
    by_kind: PerKind<usize>,
    max_over_limit: Option<String>,
}

impl Observed {
    fn admit(&mut self, gate: &ConcurrencyGate, kind: TaskKind) {
        self.running += 1;
        *self.by_kind.get_mut(kind) += 1;
        let limits = gate.limits();
        if self.running > limits.total as usize {
            self.max_over_limit =
                Some(format!("{} running > total {}", self.running, limits.total));
        }
        if self.by_kind.get(kind) > limits.per_kind.get(kind) as usize {
            self.max_over_limit = Some(format!(
                "{} {kind:?} running > {}",
                self.by_kind.get(kind),
                limits.per_kind.get(kind)
            ));
        }
    }

    fn release(&mut self, kind: TaskKind) {
        self.running -= 1;
        *self.by_kind.get_mut(kind) -= 1;
    }
}

fn limits_strategy() -> impl Strategy<Value = GateLimits> {
    (1u32..=8, 1u32..=8, 1u32..=8, 1u32..=8, 1u32..=8, 1u32..=8).prop_map(
        |(total, backup, check, prune, restore, ls)| GateLimits {
            total,
            per_kind: PerKind {
                backup,
                check,
                prune,
                restore,
                ls,
            },
        },
    )
}

/// Runs `tasks` (kind, hold ms) through the gate while `resizes` (at ms, limits) are applied;
/// returns how many ran and the first limit violation seen.
fn run_workload(
    initial: GateLimits,
    tasks: Vec<(u8, u64)>,
    resizes: Vec<(u64, GateLimits)>,
) -> (usize, Option<String>, ConcurrencyGate) {
    runtime().block_on(async move {
        let gate = ConcurrencyGate::new(initial);
        let observed = Arc::new(Mutex::new(Observed::default()));
        let mut handles = Vec::new();
        for (kind, hold) in tasks {
            let (gate, observed) = (gate.clone(), Arc::clone(&observed));
            handles.push(tokio::spawn(async move {
                let kind = kind_of(kind);
                let guard = gate.acquire(kind).await;
                observed.lock().expect("lock").admit(&gate, kind);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                observed.lock().expect("lock").release(kind);
                drop(guard);
            }));
        }
        let resizer = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut elapsed = 0;
                for (at, limits) in resizes {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(elapsed))).await;
                    elapsed = elapsed.max(at);
                    gate.set_limits(limits);
                }
            })
        };
        let mut ran = 0;
        for h in handles {
            h.await.expect("task finished");
            ran += 1;
        }
        resizer.await.expect("resizer finished");
        let violation = observed.lock().expect("lock").max_over_limit.clone();
        (ran, violation, gate)
    })
}

/// After everything finished: exactly `min(kind limit, total)` slots of each kind can be taken,
/// and exactly `total` slots across kinds.
fn assert_no_leak(gate: &ConcurrencyGate) {
    let limits = gate.limits();
    let snap = gate.snapshot();
    assert_eq!((snap.running, snap.waiting), (0, 0), "{snap:?}");
    for kind in TaskKind::ALL {
        let mut held = Vec::new();
        while let Some(g) = gate.try_acquire(kind) {
            held.push(g);
            assert!(held.len() <= 64, "runaway admission");
        }
        assert_eq!(
            held.len(),
            limits.per_kind.get(kind).min(limits.total) as usize,
            "{kind:?} slots after the run, limits {limits:?}"
        );
    }
    let mut held = Vec::new();
    'fill: loop {
        let mut any = false;
        for kind in TaskKind::ALL {
            if let Some(g) = gate.try_acquire(kind) {
                held.push(g);
                any = true;
            }
            if held.len() > 200 {
                break 'fill;
            }
        }
        if !any {
            break;
        }
    }
    let per_kind_sum: u32 = TaskKind::ALL.iter().map(|&k| limits.per_kind.get(k)).sum();
    assert_eq!(held.len(), limits.total.min(per_kind_sum) as usize);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Never more running than the total or a kind's limit, and every attempt eventually runs.
    #[test]
    fn never_over_the_limits_and_everyone_runs(
        limits in limits_strategy(),
        tasks in proptest::collection::vec((0u8..3, 0u64..50), 100),
    ) {
        let (ran, violation, gate) = run_workload(limits, tasks, Vec::new());
        prop_assert_eq!(ran, 100);
        prop_assert_eq!(violation, None);
        assert_no_leak(&gate);
    }

    /// Live resizes: admissions respect the limit in force at that moment, and when the dust
    /// settles the gate has exactly its final limits' worth of slots (no permit leaked or lost).
    #[test]
    fn live_resizes_never_leak_or_lose_permits(
        limits in limits_strategy(),
        tasks in proptest::collection::vec((0u8..3, 0u64..50), 100),
        resizes in proptest::collection::vec((0u64..300, limits_strategy()), 1..20),
    ) {
        let mut resizes = resizes;
        resizes.sort_by_key(|(at, _)| *at);
        let (ran, violation, gate) = run_workload(limits, tasks, resizes);
        prop_assert_eq!(ran, 100);
        prop_assert_eq!(violation, None);
        assert_no_leak(&gate);
    }
}

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn dropping_a_waiting_acquire_leaves_the_gate_consistent() {
    runtime().block_on(async {
        let gate = ConcurrencyGate::new(GateLimits {
            total: 1,
            per_kind: PerKind::splat(1),
        });
        // Waiting on its own kind.
        let held = gate.acquire(TaskKind::Backup).await;
        {
            let mut waiting = pin!(gate.acquire(TaskKind::Backup));
            assert!(poll_once(waiting.as_mut()).is_pending());
            assert_eq!(gate.snapshot().waiting_by_kind.backup, 1);
        }
        assert_eq!(gate.snapshot().waiting, 0);
        drop(held);

        // Waiting on the total while already holding its kind's permit.
        let check = gate.acquire(TaskKind::Check).await;
        {
            let mut waiting = pin!(gate.acquire(TaskKind::Backup));
            assert!(poll_once(waiting.as_mut()).is_pending());
            assert_eq!(gate.snapshot().waiting, 1);
        }
        assert_eq!(gate.snapshot().waiting, 0);
        drop(check);
        let backup = gate.try_acquire(TaskKind::Backup);
        assert!(
            backup.is_some(),
            "the dropped waiter gave its backup permit back"
        );
        drop(backup);
        assert_no_leak(&gate);
    });
}

#[test]
fn a_panicking_task_releases_its_slot() {
    runtime().block_on(async {
        let gate = ConcurrencyGate::new(GateLimits::uniform(1));
        let g = gate.clone();
        let result = tokio::spawn(async move {
            let _guard = g.acquire(TaskKind::Prune).await;
            panic!("restic wrapper blew up");
        })
        .await;
        assert!(result.is_err());
        assert_eq!(gate.snapshot().running, 0);
        assert!(gate.try_acquire(TaskKind::Prune).is_some());
    });
}

#[test]
fn lowering_a_limit_lets_running_tasks_finish_and_admits_none_until_under_it() {
    runtime().block_on(async {
        let gate = ConcurrencyGate::new(GateLimits::uniform(3));
        let guards: Vec<_> = (0..3)
            .map(|_| gate.try_acquire(TaskKind::Backup).expect("slot"))
            .collect();
        gate.set_limits(GateLimits::uniform(1));
        assert_eq!(gate.snapshot().running, 3, "running tasks are not stopped");
        let mut guards = guards.into_iter();
        drop(guards.next());
        assert!(
            gate.try_acquire(TaskKind::Backup).is_none(),
            "2 running, limit 1"
        );
        drop(guards.next());
        assert!(
            gate.try_acquire(TaskKind::Backup).is_none(),
            "1 running, limit 1"
        );
        drop(guards.next());
        let one = gate
            .try_acquire(TaskKind::Backup)
            .expect("0 running, limit 1");
        assert!(gate.try_acquire(TaskKind::Backup).is_none());
        drop(one);
        gate.set_limits(GateLimits::uniform(2));
        assert_no_leak(&gate);
    });
}

#[test]
fn raising_a_limit_wakes_waiters_at_once() {
    runtime().block_on(async {
        let gate = ConcurrencyGate::new(GateLimits::uniform(1));
        let _held = gate.acquire(TaskKind::Backup).await;
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            let _guard = g.acquire(TaskKind::Backup).await;
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.snapshot().waiting, 1);
        gate.set_limits(GateLimits::uniform(2));
        waiter.await.expect("admitted after the raise");
    });
}

#[test]
fn waiting_emits_concurrency_limit_reached() {
    let logs = backup_testkit::capture_logs(|| {
        runtime().block_on(async {
            let gate = ConcurrencyGate::new(GateLimits::uniform(1));
            let held = gate.acquire(TaskKind::Backup).await;
            let g = gate.clone();
            let waiter = tokio::spawn(async move { drop(g.acquire(TaskKind::Backup).await) });
            tokio::task::yield_now().await;
            drop(held);
            waiter.await.expect("ran");
            drop(gate.acquire(TaskKind::Backup).await); // uncontended: no event
        })
    });
    assert_eq!(
        logs.matches("Concurrency limit reached").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("kind=\"backup\""), "{logs}");
}
