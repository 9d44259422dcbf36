//! [`Running::reload`]: a new configuration without a restart. The new App is built beside the
//! running one (same session store, metrics, rate limiter state and state signer), then every
//! worker swaps to it: requests that start from then on read it, requests in flight finish
//! with the App they started with, open connections stay open. Keys that need a restart keep
//! their running values and are named in the log (`config::Reload`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Running, ServeError};
use crate::config::{Reload, Settings};
use crate::pipeline::App;

/// How long a reload waits for the workers to take the new App.
const SWAP_WAIT: Duration = Duration::from_secs(5);

/// What a reload did, by key name (never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new value applies to new requests (new connections, for connection settings).
    pub applied: Vec<String>,
    /// Keys changed in the configuration that keep their running value until a restart.
    pub restart: Vec<String>,
}

impl Running {
    /// The App new requests get now.
    pub fn current_app(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// Go on with `settings` (loaded and validated like at start: `Config::load`). Keys that
    /// need a restart keep their running value, one WARN line each; the rest applies to new
    /// requests once this returns, and one INFO line names the keys that changed. If the new
    /// App cannot be built, one ERROR line says why and the running configuration stays.
    /// The TLS files are not re-read here ([`Running::reload_tls`]).
    pub async fn reload(&self, settings: Settings) -> Result<Reloaded, ServeError> {
        let _one = self.reloading.lock().await;
        let current = self.current.load_full();
        let plan = Reload::plan(&self.app.settings, &current.settings, settings);
        for key in &plan.restart {
            tracing::warn!(key = %key, "{key} changed; takes effect after a restart");
        }
        let app = match current.reloaded(plan.settings) {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the running configuration");
                return Err(ServeError::Reload(e.to_string()));
            }
        };
        self.current.store(app.clone());
        let mut swapped = Vec::with_capacity(self.swaps.len());
        for worker in &self.swaps {
            let (done, taken) = oneshot::channel();
            // A worker that has ended (shutdown) takes nothing: its receiver is gone.
            if worker.send((app.clone(), done)).is_ok() {
                swapped.push(taken);
            }
        }
        let all = futures_join(swapped);
        if tokio::time::timeout(SWAP_WAIT, all).await.is_err() {
            tracing::warn!("a worker did not take the reloaded configuration in time");
        }
        let changed = if plan.applied.is_empty() {
            "none".to_string()
        } else {
            plan.applied.join(", ")
        };
        tracing::info!(changed = %changed, restart_needed = plan.restart.len(), "configuration reloaded");
        Ok(Reloaded {
            applied: plan.applied,
            restart: plan.restart,
        })
    }
}

/// Wait for every worker's answer (a worker that ended without one counts as done).
async fn futures_join(taken: Vec<oneshot::Receiver<()>>) {
    for t in taken {
        let _ = t.await;
    }
}
