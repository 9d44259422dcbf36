//! A worker: one thread with its own single-threaded runtime, coarse timer and upstream pool,
//! serving the connections the acceptor hands it, and draining them at shutdown.
//!
//! What a worker serves with — the [`App`], its upstream pool, the hyper builder — is one
//! [`Serving`], swapped whole when the configuration is reloaded: each request takes the one
//! current when it starts and keeps it to its end; new connections get the new connection
//! settings; the upstream pool is rebuilt only when the upstream settings changed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::common::held::Held;
use crate::common::timer::CoarseTimer;
use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;
use crate::proxy::Proxy;
use crate::server::limits::ConnGuard;

use crate::server::acceptor::Accepted;
use crate::server::connection::{serve_io, Conn};

/// A client socket and its connection slot (given back when the socket closes, upgrades too).
type ClientIo = Held<TcpStream, ConnGuard>;

/// A reloaded App for a worker, and where it says it serves with it.
pub(crate) type Swap = (Arc<App>, oneshot::Sender<()>);

/// What one worker serves requests with; replaced whole on a reload.
pub(crate) struct Serving {
    pub(crate) app: Arc<App>,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    /// `server.idle_timeout_ms` in the worker's ticks.
    pub(crate) idle_ticks: u64,
}

impl Serving {
    /// The worker's serving parts for `app`; the pool of `old` is kept when the upstream
    /// settings are the same.
    fn new(
        app: Arc<App>,
        timer: &CoarseTimer,
        limit: &Arc<UpstreamLimit>,
        old: Option<&Serving>,
    ) -> Serving {
        let proxy = match old {
            Some(o) if same_upstream(&o.app.settings, &app.settings) => o.proxy.clone(),
            _ => Arc::new(Proxy::new(&app.settings, timer.clone(), limit.clone())),
        };
        Serving {
            builder: builder(&app.settings, timer.clone()),
            idle_ticks: timer.ticks_in(app.settings.server.idle_timeout),
            proxy,
            app,
        }
    }
}

/// Whether a proxy built for `a` serves `b` as it is (the settings [`Proxy::new`] reads).
fn same_upstream(a: &Settings, b: &Settings) -> bool {
    let (x, y) = (&a.upstream, &b.upstream);
    x.authority == y.authority
        && x.connect_timeout == y.connect_timeout
        && x.timeout == y.timeout
        && x.pool_max_idle == y.pool_max_idle
        && a.server.idle_timeout == b.server.idle_timeout
}

/// `timer`: the worker's coarse timer, the one timer of both protocols: HTTP/1's header-read
/// timeout (armed on every request) and HTTP/2's keep-alive pings (hyper's `Timer::reset` is the
/// default, a new coarse sleep: no lock taken while it is polled by its own task).
fn builder(s: &Settings, timer: CoarseTimer) -> auto::Builder<TokioExecutor> {
    let c = &s.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(timer.clone())
        .header_read_timeout(c.header_read_timeout)
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(timer)
        .max_concurrent_streams(c.h2_max_concurrent_streams)
        .max_header_list_size(c.max_header_bytes.min(u32::MAX as usize) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serve the connections `conns` brings until the acceptor closes it (at shutdown, after its
/// last accept), then drain. `swaps` brings reloaded Apps.
pub(crate) async fn worker(
    mut conns: mpsc::UnboundedReceiver<Accepted>,
    mut swaps: mpsc::UnboundedReceiver<Swap>,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    upstream_limit: Arc<UpstreamLimit>,
) {
    // This worker's own upstream pool: its connections live on this thread.
    let timer = CoarseTimer::start();
    let current = Arc::new(ArcSwap::from_pointee(Serving::new(
        app,
        &timer,
        &upstream_limit,
        None,
    )));
    // Each connection task holds a sender; the receiver ends once all of them have.
    let (alive, mut all_closed) = mpsc::channel::<Infallible>(1);
    let mut swaps_open = true;
    loop {
        let (stream, peer, guard) = tokio::select! {
            biased;
            s = swaps.recv(), if swaps_open => {
                match s {
                    Some((app, done)) => {
                        let old = current.load_full();
                        current.store(Arc::new(Serving::new(app, &timer, &upstream_limit, Some(&old))));
                        let _ = done.send(());
                    }
                    None => swaps_open = false,
                }
                continue;
            }
            // The acceptor hands over what it accepted until its listener is closed, shutdown
            // included; then this ends.
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register connection");
                continue;
            }
        };
        let io: ClientIo = Held::new(stream, guard);
        let serving = current.load_full();
        let (current, timer) = (current.clone(), timer.clone());
        let tls = tls.clone();
        let (alive, stop) = (alive.clone(), stop.clone());
        tokio::spawn(async move {
            let _alive = alive;
            let s = &serving.app.settings;
            let handshake = s.server.tls_handshake_timeout;
            let peer = crate::proxy::Peer::new(peer, &s.trusted_proxies);
            let addr = peer.addr;
            let idle_ticks = serving.idle_ticks;
            let conn = move || Conn::new(current, peer, timer, idle_ticks);
            let builder = &serving.builder;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        // Idle from the end of the handshake.
                        Ok(Ok(s)) => serve_io(builder, s, conn(), stop).await,
                        Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    }
                }
                None => serve_io(builder, io, conn(), stop).await,
            }
        });
    }
    drop(conns);
    drop(alive);
    let grace = current.load().app.settings.server.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = all_closed.recv() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
