//! backup-server's suite: every route through `app()` in-process, the scheduler with a manual
//! clock, two replicas on one PostgreSQL, and a real socket.

mod harness;

mod isolation;

mod browser;
mod dashboard;
mod dispatch;
mod enrollment;
mod events;
mod openapi;
mod quotas;
mod replicas;
mod retention;
mod routes;
mod scheduler;
mod snapshots;
mod socket;
mod ui;
mod web;
