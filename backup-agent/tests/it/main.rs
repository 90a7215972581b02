//! backup-agent's suite: the runner on real processes, the agent against the real
//! backup-server (in process, over a socket) with a scripted runner at the process seam, and
//! real restic end to end (skipped with a notice when restic is absent, failed under
//! `BACKUP_TEST_REQUIRE=restic`).

mod harness;

mod classifier;
mod client;
mod config;
mod dispatch;
mod faults;
mod guardrails;
mod inventory;
mod limits;
mod processes;
mod real_restic;
mod rehanded;
mod restore;
mod state;
