//! What the workspace's tests share: fresh PostgreSQL databases, the rule for tools a test needs
//! (skip with a notice, or fail under `BACKUP_TEST_REQUIRE`), log capture, a typed client of the
//! API with the fixtures every suite needs, restic seen from outside, and waiting for a state.
#![deny(missing_docs)]
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::{cell::RefCell, io::Write, path::PathBuf, sync::Once};

mod client;
#[cfg(feature = "postgres")]
mod postgres;
mod restic;
#[cfg(feature = "store")]
mod store;
mod wait;
#[cfg(feature = "http")]
mod webdriver;

#[cfg(feature = "http")]
pub use client::Http;
#[cfg(feature = "router")]
pub use client::InProcess;
pub use client::{
    Answer, Auth, Client, Request, TenantApi, TestAgent, Transport, backup_policy, backup_spec,
};
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_POSTGRES_URL, TestDatabase};
pub use restic::{
    ls, ls_nodes, pseudo_random, random_tree, restic_command, snapshots, tree_digest,
};
#[cfg(feature = "store")]
pub use store::fleet;
pub use wait::wait_for;
#[cfg(feature = "http")]
pub use webdriver::Browser;

/// An environment for a configuration loader's tests: `pairs` looked up by name.
pub fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Whether `BACKUP_TEST_REQUIRE` (a comma-separated list) names `what`.
pub fn required(what: &str) -> bool {
    std::env::var("BACKUP_TEST_REQUIRE")
        .map(|list| list.split(',').any(|item| item.trim() == what))
        .unwrap_or(false)
}

/// Reports a missing tool: a failure when it is required, else a printed notice.
///
/// # Panics
/// When `what` is required by `BACKUP_TEST_REQUIRE`.
pub fn skip(what: &str, why: &str) {
    assert!(
        !required(what),
        "{what} is required by BACKUP_TEST_REQUIRE but {why}"
    );
    eprintln!(
        "SKIPPED: {what} is not available ({why}); set BACKUP_TEST_REQUIRE={what} to fail instead"
    );
}

/// The restic binary, or `None` after [`skip`] when it is absent.
pub fn restic() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("restic");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    skip("restic", "no restic on PATH");
    None
}

/// restic's rest-server: `BACKUP_REST_SERVER`, else `rest-server` or Debian's
/// `restic-rest-server` on `PATH`; `None` after [`skip`] (as `rest-server`) when absent.
pub fn rest_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BACKUP_REST_SERVER").map(PathBuf::from) {
        if path.is_file() {
            return Some(path);
        }
        skip(
            "rest-server",
            &format!("BACKUP_REST_SERVER={} is no file", path.display()),
        );
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["rest-server", "restic-rest-server"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    skip(
        "rest-server",
        "no rest-server or restic-rest-server on PATH and no BACKUP_REST_SERVER \
         (scripts/fetch-trixie-tools.sh unpacks one)",
    );
    None
}

thread_local! {
    static LOG_BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

struct ThreadBuffer;

impl Write for ThreadBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        LOG_BUFFER.with(|b| {
            if let Some(buf) = b.borrow_mut().as_mut() {
                buf.extend_from_slice(data);
            }
        });
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged (INFO and above) on this thread.
///
/// One global subscriber writes into a thread-local buffer while a capture is active: a scoped
/// subscriber per test would race with other test threads over tracing's per-callsite interest
/// cache and lose events now and then. Run async code inside with a current-thread runtime.
pub fn capture_logs(f: impl FnOnce()) -> String {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| ThreadBuffer)
            .with_ansi(false)
            .with_env_filter("info")
            .try_init();
    });
    LOG_BUFFER.with(|b| *b.borrow_mut() = Some(Vec::new()));
    f();
    let bytes = LOG_BUFFER
        .with(|b| b.borrow_mut().take())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
