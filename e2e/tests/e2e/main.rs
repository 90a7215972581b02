//! End to end: `backup-server` and `backup-agent` as processes, the real restic, on SQLite and
//! on PostgreSQL. The binaries are the workspace's own build (`cargo test --workspace` builds
//! them before any test runs). Skipped with a notice without restic (or PostgreSQL for its
//! half); a failure under `BACKUP_TEST_REQUIRE`.

mod harness;

mod concurrency;
mod crash_state;
mod crashes;
mod dashboard;
mod enrollment;
mod events;
mod guardrails;
mod metrics;
mod operator;
mod receiver;
mod reference;
mod replicas;
mod restores;
mod secrets;
mod shared_repository;
mod snapshots;
mod soak;
