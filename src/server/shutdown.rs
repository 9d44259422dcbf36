//! Shutdown: how the server's tasks see that it was asked for (the signals: `signals.rs`).

use tokio::sync::watch;

/// Resolves once shutdown has been asked for (the watch guard is not held across awaits).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
