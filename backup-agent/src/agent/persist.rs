//! The state file's writer: one task that writes the state whenever a change asks it to, off
//! the async worker threads (`spawn_blocking`), so an fsync never stalls a heartbeat.
//!
//! Changes that arrive while a write is under way share the next one (a group commit), so a
//! burst of results costs one write, not one each. A change that must be durable before the
//! agent acts on it waits for the write that contains it; a lazy change rides along with the
//! next write, or the last one at shutdown.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::state::{StateFile, encode};

/// The handle the agent keeps: ask for a write, wait for it.
#[derive(Debug)]
pub(super) struct Persister {
    ask: mpsc::UnboundedSender<()>,
    written: watch::Receiver<u64>,
    writes: Arc<AtomicU64>,
}

impl Persister {
    /// Starts the writer of `shared`'s state into `file`. It ends (after a last write) when the
    /// handle is dropped.
    pub(super) fn spawn(shared: Arc<Mutex<Shared>>, file: StateFile) -> Self {
        let (ask, mut asked) = mpsc::unbounded_channel::<()>();
        let (written_tx, written) = watch::channel(0u64);
        let writes = Arc::new(AtomicU64::new(0));
        let counter = writes.clone();
        tokio::spawn(async move {
            let writer = Writer {
                shared,
                file,
                written: written_tx,
                writes: counter,
                failed: std::sync::atomic::AtomicBool::new(false),
            };
            while asked.recv().await.is_some() {
                while asked.try_recv().is_ok() {}
                writer.write().await;
            }
            writer.write().await;
        });
        Self {
            ask,
            written,
            writes,
        }
    }

    /// Returns once the file holds generation `generation` (or a later one). If the writer is
    /// gone (the runtime is shutting down), returns at once.
    pub(super) async fn written(&self, generation: u64) {
        if self.ask.send(()).is_err() {
            return;
        }
        let mut written = self.written.clone();
        let _ = written.wait_for(|w| *w >= generation).await;
    }

    /// Writes since the start.
    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

struct Writer {
    shared: Arc<Mutex<Shared>>,
    file: StateFile,
    written: watch::Sender<u64>,
    writes: Arc<AtomicU64>,
    /// The last write failed: the next one writes even if nothing changed since.
    failed: std::sync::atomic::AtomicBool,
}

impl Writer {
    /// Writes the current state if it changed since the last write.
    async fn write(&self) {
        let (bytes, generation) = {
            let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if shared.generation == *self.written.borrow() && !self.failed.load(Ordering::Relaxed) {
                return;
            }
            (encode(&shared.state), shared.generation)
        };
        match bytes {
            Ok(bytes) => {
                let file = self.file.clone();
                let saved = tokio::task::spawn_blocking(move || file.save_encoded(&bytes)).await;
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.failed
                    .store(!matches!(saved, Ok(Ok(()))), Ordering::Relaxed);
                match saved {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot write the state file; the change is kept in memory only");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the state file's writer failed; the change is kept in memory only");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the state"),
        }
        // Waiters are released even after a failed write: the change stays in memory and the
        // next write (the next change, or the flush at shutdown) carries it.
        self.written.send_replace(generation);
    }
}
