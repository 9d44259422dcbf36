//! The server: binding the listener, building the app, starting the workers, the acceptor and
//! the metrics listener, and shutting them down. TLS (rustls, ALPN h2 + http/1.1) or plain HTTP,
//! hyper-util's auto builder (HTTP/1.1 and HTTP/2) with header-read, handshake and size limits.
//!
//! Where to look: `acceptor.rs` (connection limits, dealing to workers), `worker.rs` (a thread per
//! core with its own runtime, timer and upstream pool), `connection.rs` (one connection, the idle
//! watch; `wake_gate.rs` polls its watchers only when they woke it), `limits.rs`, `common/timer.rs`
//! (the coarse per-worker timer every timeout uses), `tls.rs`, `metrics_listener.rs`
//! (`server.metrics_listen`), `shutdown.rs`, `running.rs` (the running server: `Running::reload`, a
//! new configuration without a restart; `reload_tls`; `shutdown`), `serving.rs` (what a worker
//! serves with, swapped on a reload).
//!
//! Listeners are bound with `SO_REUSEPORT`, so a new `wxgate` process can start on the same
//! address while the old one drains (a rolling upgrade on one machine).

mod acceptor;
pub mod cert_reload;
mod connection;
mod handshakes;
pub(crate) mod limits;
mod metrics_listener;
mod plain_http;
mod running;
mod serving;
mod shutdown;
mod signals;
pub mod tls;
mod wake_gate;
mod worker;

pub use self::running::{Reloaded, Running, ServeError};
pub use self::signals::{ReloadSignal, ShutdownSignal};

use std::net::SocketAddr;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use self::acceptor::Accepted;
use self::limits::ConnLimits;
use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;

/// Build the app from settings and start serving on `settings.listen`.
pub async fn serve(settings: Settings) -> Result<Running, ServeError> {
    let listener = bind(settings.listen).map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    serve_on(listener, settings).await
}

/// Accept-queue length asked for (the kernel caps it at `net.core.somaxconn`): the standard
/// library's 128 fills in a moment under a burst of connections, and then clients wait for
/// their SYN to be sent again (a second or more).
pub(crate) const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-long accept queue, `SO_REUSEPORT` set.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // A second process (the next version) can listen on the same address while this one
    // drains; the kernel only lets processes of the same user share it.
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How many worker threads serve connections: `server.workers`, or one per CPU.
fn worker_count(s: &Settings) -> usize {
    match s.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// The session store's own settings, from the `[session]` section.
fn store_settings(c: &crate::config::SessionSettings) -> crate::session::SessionStoreSettings {
    use crate::config::RedisTarget;
    use crate::session::{Backend, RedisDeployment};
    crate::session::SessionStoreSettings {
        ttl: c.ttl,
        idle: c.idle,
        capacity: c.max_sessions,
        backend: match &c.store {
            crate::config::StoreKind::Redis(target) => Backend::Redis {
                deployment: match target {
                    RedisTarget::Url(url) => RedisDeployment::Server { url: url.clone() },
                    RedisTarget::Cluster(nodes) => RedisDeployment::Cluster {
                        nodes: nodes.clone(),
                    },
                    RedisTarget::Sentinel { sentinels, master } => RedisDeployment::Sentinel {
                        sentinels: sentinels.clone(),
                        master: master.clone(),
                    },
                },
                cache: c.cache,
            },
            crate::config::StoreKind::Memory => Backend::Memory,
        },
        snapshot: c
            .snapshot_path
            .clone()
            .map(|path| crate::session::SnapshotFile {
                path,
                key: crate::session::SnapshotKey::derive(c.cookie_secret.expose()),
            }),
    }
}

/// Knobs the config file does not have (tests shorten them).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the TLS files are checked for changes on disk.
    pub tls_poll_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls_poll_interval: cert_reload::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// Like [`serve`], on a listener the caller bound (tests bind `127.0.0.1:0`).
pub async fn serve_on(listener: TcpListener, settings: Settings) -> Result<Running, ServeError> {
    serve_on_with(listener, settings, ServeOptions::default()).await
}

/// Like [`serve_on`], with [`ServeOptions`].
///
/// Thread per core, like nginx's workers: each worker thread runs its own single-threaded
/// runtime and its own upstream connection pool, so a request never hops threads between the
/// client connection and the upstream connection. One acceptor deals new connections to the
/// workers in turn, so keep-alive load spreads evenly (a shared accept queue lets one worker
/// grab most connections).
pub async fn serve_on_with(
    listener: TcpListener,
    settings: Settings,
    opts: ServeOptions,
) -> Result<Running, ServeError> {
    let store = crate::session::Store::connect(&store_settings(&settings.session))
        .await
        .map_err(|e| ServeError::Store(e.to_string()))?;
    let certs = match &settings.tls {
        Some(files) => Some(cert_reload::CertReloader::new(files).map_err(ServeError::Tls)?),
        None => None,
    };
    let workers = worker_count(&settings);
    // TLS handshakes run on their own threads, one per worker (handshakes.rs).
    let tls = match &certs {
        Some(c) => Some((
            tls::reloadable_config(c.clone()).map_err(ServeError::Tls)?,
            handshakes::HandshakePool::start(workers)
                .map_err(|e| ServeError::Client(format!("cannot start handshake thread: {e}")))?,
        )),
        None => None,
    };
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind(addr).map_err(|source| ServeError::Bind { addr, source })?),
        None => None,
    };
    let conn_limits = ConnLimits::new(
        settings.server.max_connections,
        settings.server.max_connections_per_ip,
    );
    let upstream_limit = UpstreamLimit::new(settings.upstream.max_connections);
    let app = App::new(settings, store).map_err(|e| ServeError::Client(e.to_string()))?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: app.settings.listen,
        source,
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut done = Vec::with_capacity(workers + 1);
    let mut queues = Vec::with_capacity(workers);
    let mut swaps = Vec::with_capacity(workers);
    for i in 0..workers {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel::<Accepted>();
        let (swap_tx, swap_rx) = mpsc::unbounded_channel::<serving::Swap>();
        let (app, tls, stop) = (app.clone(), tls.clone(), stop_rx.clone());
        let upstream_limit = upstream_limit.clone();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("wxgate-worker-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker::worker(
                        conn_rx,
                        swap_rx,
                        app,
                        tls,
                        stop,
                        upstream_limit,
                    )),
                    Err(e) => tracing::error!(error = %e, "worker runtime failed to start"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| ServeError::Client(format!("cannot start worker thread: {e}")))?;
        queues.push(conn_tx);
        swaps.push(swap_tx);
        done.push(done_rx);
    }
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let metrics_addr = l.local_addr().map_err(|source| ServeError::Bind {
                addr: app.settings.listen,
                source,
            })?;
            let (metrics_done_tx, metrics_done_rx) = oneshot::channel();
            let (app, stop) = (app.clone(), stop_rx.clone());
            tokio::spawn(async move {
                metrics_listener::metrics_server(l, app, stop).await;
                let _ = metrics_done_tx.send(());
            });
            done.push(metrics_done_rx);
            tracing::info!(addr = %metrics_addr, "metrics listening");
            Some(metrics_addr)
        }
        None => None,
    };
    if let Some(c) = &certs {
        // Certificate renewals on disk (certbot) reach new connections without a signal.
        let (watch_done_tx, watch_done_rx) = oneshot::channel();
        let (c, stop) = (c.clone(), stop_rx.clone());
        tokio::spawn(async move {
            c.watch(opts.tls_poll_interval, stop).await;
            let _ = watch_done_tx.send(());
        });
        done.push(watch_done_rx);
    }
    let (acceptor_done_tx, acceptor_done_rx) = oneshot::channel();
    tokio::spawn(async move {
        acceptor::acceptor(listener, queues, stop_rx, conn_limits).await;
        let _ = acceptor_done_tx.send(());
    });
    done.push(acceptor_done_rx);
    tracing::info!(%addr, tls = app.settings.tls.is_some(), workers, upstream = %app.settings.upstream.authority, "wxgate listening");
    Ok(Running {
        addr,
        metrics_addr,
        current: ArcSwap::new(app.clone()),
        app,
        reloading: tokio::sync::Mutex::new(()),
        swaps,
        certs,
        stop: stop_tx,
        done,
    })
}
