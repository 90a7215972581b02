//! backup-store's suite: every test runs on SQLite in memory, on a SQLite file and on
//! PostgreSQL (a fresh database per test; skipped with a notice when the server is absent,
//! failed under `BACKUP_TEST_REQUIRE=postgres`).

mod harness;

mod agents;
mod concurrency;
mod enrollment;
mod events;
mod history;
mod migrations;
mod policies;
mod repositories;
mod restores;
mod results;
mod snapshots;
mod tenants;
