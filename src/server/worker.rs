//! A worker: one thread with its own single-threaded runtime, coarse timer and upstream pool,
//! serving the connections the acceptor hands it, and draining them at shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::common::held::Held;
use crate::common::timer::CoarseTimer;
use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;
use crate::proxy::Proxy;
use crate::server::limits::ConnGuard;
use crate::server::shutdown::stopped;

use crate::server::acceptor::Accepted;
use crate::server::connection::{serve_io, Conn};

/// A client socket and its connection slot (given back when the socket closes, upgrades too).
type ClientIo = Held<TcpStream, ConnGuard>;

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

pub(crate) async fn worker(
    mut conns: mpsc::UnboundedReceiver<Accepted>,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    upstream_limit: Arc<UpstreamLimit>,
) {
    // This worker's own upstream pool: its connections live on this thread.
    let timer = CoarseTimer::start();
    let proxy = Arc::new(Proxy::new(&app.settings, timer.clone(), upstream_limit));
    let builder = Arc::new(builder(&app.settings, timer.clone()));
    // Each connection task holds a sender; the receiver ends once all of them have.
    let (alive, mut all_closed) = mpsc::channel::<Infallible>(1);
    let handshake = app.settings.server.tls_handshake_timeout;
    let idle_ticks = timer.ticks_in(app.settings.server.idle_timeout);
    loop {
        let (stream, peer, guard) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
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
        let (app, proxy, timer) = (app.clone(), proxy.clone(), timer.clone());
        let builder = builder.clone();
        let tls = tls.clone();
        let (alive, stop) = (alive.clone(), stop.clone());
        tokio::spawn(async move {
            let _alive = alive;
            let conn = |timer: CoarseTimer| {
                let peer = crate::proxy::Peer::new(peer, &app.settings.trusted_proxies);
                Conn::new(app, proxy, peer, timer, idle_ticks)
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        // Idle from the end of the handshake.
                        Ok(Ok(s)) => serve_io(&builder, s, conn(timer), stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_io(&builder, io, conn(timer), stop).await,
            }
        });
    }
    drop(conns);
    drop(alive);
    let grace = app.settings.server.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = all_closed.recv() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
