//! backup-core's integration tests: one binary, one module per concept.

mod backoff;
mod gate;
mod retry;
mod settings;
mod wire;
