//! The running server ([`Running`]): its address, the App new requests get, and what can be
//! done to it while it runs — [`Running::reload`] (a new configuration without a restart),
//! [`Running::reload_tls`], [`Running::shutdown`].
//!
//! A reload builds the new App beside the running one (same session store, metrics, rate
//! limiter state and state signer), then every worker swaps to it: requests that start from
//! then on read it, requests in flight finish with the App they started with, open connections
//! stay open. Keys that need a restart keep their running values and are named in the log
//! (`config::Reload`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use super::cert_reload::CertReloader;
use super::serving::Swap;
use crate::config::{Reload, Settings};
use crate::pipeline::App;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("session store: {0}")]
    Store(String),
    #[error("WeChat client: {0}")]
    Client(String),
    #[error("reload: {0}")]
    Reload(String),
}

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`server.metrics_listen`), when it is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The App the server started with. Its store and metrics are those of every App a
    /// reload makes; [`Running::current_app`] is the one new requests get.
    pub app: Arc<App>,
    /// The App new requests get (replaced by [`Running::reload`]).
    pub(super) current: ArcSwap<App>,
    /// One reload at a time.
    pub(super) reloading: tokio::sync::Mutex<()>,
    /// Where each worker takes a reloaded App.
    pub(super) swaps: Vec<mpsc::UnboundedSender<Swap>>,
    /// The swappable certificate, with TLS.
    pub(super) certs: Option<Arc<CertReloader>>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) done: Vec<oneshot::Receiver<()>>,
}

impl Running {
    /// Whether the listener serves TLS.
    pub fn has_tls(&self) -> bool {
        self.certs.is_some()
    }

    /// Re-read the TLS files named in the config: new connections get the new certificate,
    /// open ones keep theirs. An invalid pair is logged (ERROR) and returned; the old
    /// certificate stays. Without TLS configured this is an error too.
    pub fn reload_tls(&self) -> Result<(), ServeError> {
        match &self.certs {
            Some(c) => c.reload().map_err(ServeError::Tls),
            None => Err(ServeError::Tls("TLS is not configured".into())),
        }
    }

    /// Stop accepting (what the listener has queued is still served, then it is closed), let
    /// in-flight requests finish (within the grace period), return. Keep-alive connections are
    /// not cut under a request: HTTP/1 ones answer their next request with `Connection: close`,
    /// HTTP/2 ones get GOAWAY.
    pub async fn shutdown(self) {
        let grace = self.current_app().settings.server.shutdown_grace;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: draining in-flight requests"
        );
        let _ = self.stop.send(true);
        for d in self.done {
            let _ = d.await;
        }
        // Every worker has drained: no request can change a session any more.
        self.app.store.save_snapshot();
        tracing::info!(addr = %self.addr, "wxgate stopped");
    }

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
        let all = all_taken(swapped);
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

/// Wait for every worker's answer (a worker that ended without one counts as done).
async fn all_taken(taken: Vec<oneshot::Receiver<()>>) {
    for t in taken {
        let _ = t.await;
    }
}
