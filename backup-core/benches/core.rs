//! Benchmarks of backup-core's hot paths, each beside a baseline measured in the same run.
//!
//! `cargo bench -p backup-core --bench core`

use std::{hint::black_box, sync::Arc, time::Duration};

use backup_core::{ConcurrencyGate, ExponentialBackoff, GateLimits, SplitMix64, TaskKind};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::Semaphore;

fn backoff(c: &mut Criterion) {
    let b = ExponentialBackoff::default();
    let mut rng = SplitMix64::new(7);
    c.bench_function("backoff/1000 delay computations (equal jitter)", |bench| {
        bench.iter(|| {
            let mut total = Duration::ZERO;
            for n in 1..=1000u32 {
                total += b.delay(black_box(n % 12 + 1), &mut rng);
            }
            total
        })
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn gate_uncontended(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("uncontended acquire+release");
    let semaphore = Semaphore::new(4);
    group.bench_function("tokio Semaphore (baseline)", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(semaphore.acquire().await) })
    });
    let gate = ConcurrencyGate::new(GateLimits::uniform(4));
    group.bench_function("ConcurrencyGate", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(gate.acquire(TaskKind::Backup).await) })
    });
    group.finish();
}

const TASKS: usize = 100;
const ROUNDS: usize = 20;

fn gate_contended(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("100 tasks x 20 acquire+release, limit 4");
    group.bench_function("tokio Semaphore (baseline)", |b| {
        b.to_async(&rt).iter(|| async {
            let sem = Arc::new(Semaphore::new(4));
            let handles: Vec<_> = (0..TASKS)
                .map(|_| {
                    let sem = Arc::clone(&sem);
                    tokio::spawn(async move {
                        for _ in 0..ROUNDS {
                            let permit = sem.acquire().await.expect("open");
                            tokio::task::yield_now().await;
                            drop(permit);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("joined");
            }
        })
    });
    group.bench_function("ConcurrencyGate (kinds mixed)", |b| {
        b.to_async(&rt).iter(|| async {
            let gate = ConcurrencyGate::new(GateLimits::uniform(4));
            let handles: Vec<_> = (0..TASKS)
                .map(|i| {
                    let gate = gate.clone();
                    let kind = TaskKind::ALL[i % 3];
                    tokio::spawn(async move {
                        for _ in 0..ROUNDS {
                            let guard = gate.acquire(kind).await;
                            tokio::task::yield_now().await;
                            drop(guard);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("joined");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, backoff, gate_uncontended, gate_contended);
criterion_main!(benches);
