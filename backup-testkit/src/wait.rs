//! Waiting for a state instead of sleeping for a time.

use std::time::Duration;

/// Polls `check` every 100 ms until it holds or `secs` pass.
///
/// # Panics
/// When `secs` pass first, naming `what`.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}
