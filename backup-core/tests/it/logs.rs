//! Captures this thread's tracing output.
//!
//! One global subscriber writes into a thread-local buffer while a capture is active. A scoped
//! `set_default` subscriber would race with tests on other threads over tracing's per-callsite
//! interest cache, and lose events now and then.

use std::{cell::RefCell, io::Write, sync::Once};

thread_local! {
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

struct ThreadBuffer;

impl Write for ThreadBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        BUFFER.with(|b| {
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

/// Runs `f` and returns what it logged at INFO and above on this thread.
pub(crate) fn capture(f: impl FnOnce()) -> String {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| ThreadBuffer)
            .with_ansi(false)
            .init();
    });
    BUFFER.with(|b| *b.borrow_mut() = Some(Vec::new()));
    f();
    let bytes = BUFFER.with(|b| b.borrow_mut().take()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
