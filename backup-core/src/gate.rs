//! The agent's concurrency gate: a total limit and one limit per task kind.
//!
//! A task runs only while holding two permits: its kind's and one of the total. The kind's
//! permit is taken first, so a task waiting behind its own kind's limit never sits on a total
//! slot another kind could use. Both permits live in a [`GateGuard`] and go back when it drops:
//! at the end of the task, on panic (unwinding drops it), or when the [`Acquire`] future is
//! dropped half-way (whatever it already took is given back).
//!
//! All counts and both waiting stages sit behind one mutex, taken once to acquire and once to
//! release, so the counts are always exact and a limit change is a plain assignment followed by
//! the same admission pass a release runs. Lowering a limit never touches running tasks: no guard
//! is handed out while a count is at or over its limit, and a waiter that was granted permits but
//! has not taken its guard yet gives them back and queues again at the front. Waiters are served
//! first come, first served at each stage.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use crate::{PerKind, Settings, TaskKind};

/// The limits of a [`ConcurrencyGate`]. A limit of 0 admits nothing (pauses that level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateLimits {
    /// Tasks of all kinds at once.
    pub total: u32,
    /// Tasks of each kind at once.
    pub per_kind: PerKind<u32>,
}

impl GateLimits {
    /// The same limit for the total and every kind.
    pub const fn uniform(limit: u32) -> Self {
        Self {
            total: limit,
            per_kind: PerKind::splat(limit),
        }
    }
}

impl From<&Settings> for GateLimits {
    fn from(s: &Settings) -> Self {
        Self {
            total: s.max_concurrent_tasks,
            per_kind: s.per_kind_limits(),
        }
    }
}

/// Counts at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSnapshot {
    /// The limits in force.
    pub limits: GateLimits,
    /// Tasks holding both permits.
    pub running: usize,
    /// Tasks in `acquire`, not running yet.
    pub waiting: usize,
    /// `running` by kind.
    pub running_by_kind: PerKind<usize>,
    /// `waiting` by kind.
    pub waiting_by_kind: PerKind<usize>,
}

/// A total limit plus one limit per [`TaskKind`]; cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct ConcurrencyGate {
    shared: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    limits: GateLimits,
    /// Kind permits held: running tasks plus those waiting for the total.
    held: PerKind<usize>,
    /// Tasks holding both permits.
    running: PerKind<usize>,
    running_total: usize,
    /// Tasks in `acquire` at either stage.
    waiting: PerKind<usize>,
    /// Waiting for their kind's permit, first come first served.
    kind_queues: [VecDeque<usize>; TaskKind::ALL.len()],
    /// Holding their kind's permit, waiting for the total, first come first served.
    total_queue: VecDeque<usize>,
    /// Admitted (counted as running) but not yet polled to take their guard, oldest first.
    admitted: VecDeque<usize>,
    waiters: Slots,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    WaitingForKind,
    WaitingForTotal,
    Admitted,
}

#[derive(Debug)]
struct Waiter {
    kind: TaskKind,
    stage: Stage,
    waker: Option<Waker>,
}

/// A tiny slab: waiter ids stay valid until their own future frees them.
#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Waiter>>,
    free: Vec<usize>,
}

impl Slots {
    fn insert(&mut self, waiter: Waiter) -> usize {
        if let Some(id) = self.free.pop() {
            self.entries[id] = Some(waiter);
            id
        } else {
            self.entries.push(Some(waiter));
            self.entries.len() - 1
        }
    }

    fn get_mut(&mut self, id: usize) -> &mut Waiter {
        self.entries[id]
            .as_mut()
            .expect("a waiter id is freed only by its own future")
    }

    fn remove(&mut self, id: usize) -> Waiter {
        let waiter = self.entries[id]
            .take()
            .expect("a waiter id is freed only by its own future");
        self.free.push(id);
        waiter
    }
}

/// Wakers to call once the lock is released.
type Wakeups = Vec<Waker>;

impl State {
    fn kind_limit(&self, kind: TaskKind) -> usize {
        self.limits.per_kind.get(kind) as usize
    }

    fn admits_at_once(&self, kind: TaskKind) -> bool {
        self.kind_queues[kind.index()].is_empty()
            && self.held.get(kind) < self.kind_limit(kind)
            && self.total_queue.is_empty()
            && self.running_total < self.limits.total as usize
    }

    fn admit(&mut self, kind: TaskKind) {
        *self.running.get_mut(kind) += 1;
        self.running_total += 1;
    }

    fn release(&mut self, kind: TaskKind) -> Wakeups {
        *self.running.get_mut(kind) -= 1;
        self.running_total -= 1;
        *self.held.get_mut(kind) -= 1;
        self.dispatch()
    }

    /// Hands out every permit the limits allow to the queues' heads; returns whom to wake.
    fn dispatch(&mut self) -> Wakeups {
        for kind in TaskKind::ALL {
            while self.held.get(kind) < self.kind_limit(kind) {
                let Some(id) = self.kind_queues[kind.index()].pop_front() else {
                    break;
                };
                *self.held.get_mut(kind) += 1;
                self.waiters.get_mut(id).stage = Stage::WaitingForTotal;
                self.total_queue.push_back(id);
            }
        }
        let mut wake = Wakeups::new();
        while self.running_total < self.limits.total as usize {
            let Some(id) = self.total_queue.pop_front() else {
                break;
            };
            let waiter = self.waiters.get_mut(id);
            waiter.stage = Stage::Admitted;
            let (kind, waker) = (waiter.kind, waiter.waker.take());
            self.admit(kind);
            self.admitted.push_back(id);
            wake.extend(waker);
        }
        wake
    }

    /// After a limit went down, takes back what waiters hold but have not used yet, so that no
    /// guard is handed out over the new limits: admitted-but-unpolled waiters return to the
    /// front of the total queue while the total is over its limit; then, for each kind over its
    /// limit, waiters holding that kind's permit return to the front of their kind's queue
    /// (latest first, so the queue keeps its order).
    fn take_back_unused_permits(&mut self) {
        while self.running_total > self.limits.total as usize {
            let Some(id) = self.admitted.pop_back() else {
                break;
            };
            let waiter = self.waiters.get_mut(id);
            waiter.stage = Stage::WaitingForTotal;
            let kind = waiter.kind;
            *self.running.get_mut(kind) -= 1;
            self.running_total -= 1;
            self.total_queue.push_front(id);
        }
        for kind in TaskKind::ALL {
            let limit = self.kind_limit(kind);
            for from_admitted in [false, true] {
                let mut queue = std::mem::take(if from_admitted {
                    &mut self.admitted
                } else {
                    &mut self.total_queue
                });
                let mut pos = queue.len();
                while self.held.get(kind) > limit && pos > 0 {
                    pos -= 1;
                    let id = queue[pos];
                    let waiter = self.waiters.get_mut(id);
                    if waiter.kind != kind {
                        continue;
                    }
                    waiter.stage = Stage::WaitingForKind;
                    queue.remove(pos);
                    if from_admitted {
                        *self.running.get_mut(kind) -= 1;
                        self.running_total -= 1;
                    }
                    *self.held.get_mut(kind) -= 1;
                    self.kind_queues[kind.index()].push_front(id);
                }
                if from_admitted {
                    self.admitted = queue;
                } else {
                    self.total_queue = queue;
                }
            }
        }
    }

    /// Forgets a waiter whose future was dropped, giving back what it held.
    fn cancel(&mut self, id: usize) -> Wakeups {
        let waiter = self.waiters.remove(id);
        *self.waiting.get_mut(waiter.kind) -= 1;
        match waiter.stage {
            Stage::WaitingForKind => {
                self.kind_queues[waiter.kind.index()].retain(|&w| w != id);
                Wakeups::new()
            }
            Stage::WaitingForTotal => {
                self.total_queue.retain(|&w| w != id);
                *self.held.get_mut(waiter.kind) -= 1;
                self.dispatch()
            }
            // Admitted but never polled again: the guard was never handed out.
            Stage::Admitted => {
                self.admitted.retain(|&w| w != id);
                self.release(waiter.kind)
            }
        }
    }
}

fn wake_all(wakeups: Wakeups) {
    for waker in wakeups {
        waker.wake();
    }
}

/// Both permits of a running task. Dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the task's slot is released when the guard drops"]
pub struct GateGuard {
    shared: Arc<Mutex<State>>,
    kind: TaskKind,
}

impl GateGuard {
    /// The kind this guard admits.
    pub const fn kind(&self) -> TaskKind {
        self.kind
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        let wakeups = lock(&self.shared).release(self.kind);
        wake_all(wakeups);
    }
}

/// The future of [`ConcurrencyGate::acquire`]. Dropping it gives back whatever it took.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    gate: &'a ConcurrencyGate,
    kind: TaskKind,
    /// Our waiter's id once queued; `None` before the first poll and after completion.
    waiter: Option<usize>,
    done: bool,
}

impl Future for Acquire<'_> {
    type Output = GateGuard;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<GateGuard> {
        let this = self.get_mut();
        let kind = this.kind;
        let mut state = lock(&this.gate.shared);
        let Some(id) = this.waiter else {
            assert!(!this.done, "Acquire polled after completion");
            if state.admits_at_once(kind) {
                *state.held.get_mut(kind) += 1;
                state.admit(kind);
                drop(state);
                this.done = true;
                return Poll::Ready(this.gate.guard(kind));
            }
            let id = state.waiters.insert(Waiter {
                kind,
                stage: Stage::WaitingForKind,
                waker: Some(cx.waker().clone()),
            });
            state.kind_queues[kind.index()].push_back(id);
            *state.waiting.get_mut(kind) += 1;
            this.waiter = Some(id);
            let wakeups = state.dispatch();
            let snapshot = snapshot_of(&state);
            drop(state);
            wake_all(wakeups);
            tracing::info!(
                kind = kind.as_str(),
                running = snapshot.running,
                waiting = snapshot.waiting,
                limit_total = snapshot.limits.total,
                limit_kind = snapshot.limits.per_kind.get(kind),
                "Concurrency limit reached"
            );
            // `dispatch` may have admitted us already; the next poll (we woke ourselves) sees it.
            return Poll::Pending;
        };
        let waiter = state.waiters.get_mut(id);
        if waiter.stage == Stage::Admitted {
            state.waiters.remove(id);
            state.admitted.retain(|&w| w != id);
            *state.waiting.get_mut(kind) -= 1;
            drop(state);
            this.waiter = None;
            this.done = true;
            Poll::Ready(this.gate.guard(kind))
        } else {
            match &mut waiter.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => waiter.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            let wakeups = lock(&self.gate.shared).cancel(id);
            wake_all(wakeups);
        }
    }
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update of the state completes before the lock is released (no user code runs under
    // it), so a poisoned lock still holds consistent counts.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn snapshot_of(state: &State) -> GateSnapshot {
    GateSnapshot {
        limits: state.limits,
        running: state.running_total,
        waiting: TaskKind::ALL.iter().map(|&k| state.waiting.get(k)).sum(),
        running_by_kind: state.running,
        waiting_by_kind: state.waiting,
    }
}

impl ConcurrencyGate {
    /// A gate with these limits.
    pub fn new(limits: GateLimits) -> Self {
        Self {
            shared: Arc::new(Mutex::new(State {
                limits,
                held: PerKind::default(),
                running: PerKind::default(),
                running_total: 0,
                waiting: PerKind::default(),
                kind_queues: Default::default(),
                total_queue: VecDeque::new(),
                admitted: VecDeque::new(),
                waiters: Slots::default(),
            })),
        }
    }

    /// Waits for a slot for a task of `kind`: the kind's permit first, then the total's.
    ///
    /// Fair (first come, first served) at each stage. Emits the tracing event
    /// "Concurrency limit reached" when it has to wait. Cancel-safe: dropping the future gives
    /// back whatever it already took.
    pub fn acquire(&self, kind: TaskKind) -> Acquire<'_> {
        Acquire {
            gate: self,
            kind,
            waiter: None,
            done: false,
        }
    }

    /// Takes a slot for `kind` if one is free right now, without waiting or logging. Never
    /// jumps a queue: when others wait, their turn comes first.
    pub fn try_acquire(&self, kind: TaskKind) -> Option<GateGuard> {
        let mut state = lock(&self.shared);
        if !state.admits_at_once(kind) {
            return None;
        }
        *state.held.get_mut(kind) += 1;
        state.admit(kind);
        drop(state);
        Some(self.guard(kind))
    }

    /// Changes the limits live. Running tasks are never stopped; waiters are admitted as soon as
    /// the counts are under the new limits.
    pub fn set_limits(&self, limits: GateLimits) {
        let mut state = lock(&self.shared);
        state.limits = limits;
        state.take_back_unused_permits();
        let wakeups = state.dispatch();
        drop(state);
        wake_all(wakeups);
    }

    /// The limits in force.
    pub fn limits(&self) -> GateLimits {
        lock(&self.shared).limits
    }

    /// Running and waiting counts, total and per kind.
    pub fn snapshot(&self) -> GateSnapshot {
        snapshot_of(&lock(&self.shared))
    }

    fn guard(&self, kind: TaskKind) -> GateGuard {
        GateGuard {
            shared: Arc::clone(&self.shared),
            kind,
        }
    }
}
