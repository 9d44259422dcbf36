//! A worker: one thread with its own single-threaded runtime, coarse timer and upstream pool,
//! serving the connections the acceptor hands it, and draining them at shutdown.
//!
//! What a worker serves with is one [`Serving`] (`serving.rs`), swapped whole when the
//! configuration is reloaded.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::common::held::Held;
use crate::common::timer::CoarseTimer;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;
use crate::server::limits::ConnGuard;
use crate::server::plain_http;

use crate::server::acceptor::Accepted;
use crate::server::connection::{serve_io, Conn};
use crate::server::handshakes::HandshakePool;
use crate::server::serving::{Serving, Swap};

/// A client socket and its connection slot (given back when the socket closes, upgrades too).
type ClientIo = Held<TcpStream, ConnGuard>;

/// Serve the connections `conns` brings until the acceptor closes it (at shutdown, after its
/// last accept), then drain. `swaps` brings reloaded Apps.
pub(crate) async fn worker(
    mut conns: mpsc::UnboundedReceiver<Accepted>,
    mut swaps: mpsc::UnboundedReceiver<Swap>,
    app: Arc<App>,
    tls: Option<(Arc<rustls::ServerConfig>, Arc<HandshakePool>)>,
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
        // What the connection takes from the configuration current now; requests load their
        // own (a connection does not keep an old App alive).
        let (handshake, peer, (idle_ticks, head_ticks), builder) = {
            let s = current.load();
            let c = &s.app.settings;
            (
                c.server.tls_handshake_timeout,
                crate::proxy::Peer::new(peer, &c.trusted_proxies),
                (s.idle_ticks, s.head_ticks),
                s.builder.clone(),
            )
        };
        let (current, timer) = (current.clone(), timer.clone());
        let tls = tls.clone();
        let (alive, stop) = (alive.clone(), stop.clone());
        tokio::spawn(async move {
            let _alive = alive;
            let addr = peer.addr;
            // HTTP/2 (by ALPN) has no header-read timeout.
            let conn = move |h2: bool| {
                Conn::new(
                    current,
                    peer,
                    timer,
                    idle_ticks,
                    (!h2).then_some(head_ticks),
                )
            };
            let builder = &*builder;
            match tls {
                Some((config, handshakes)) => {
                    let mut io = io;
                    // One deadline for the first byte and the handshake together.
                    let deadline = tokio::time::Instant::now() + handshake;
                    // Plain HTTP sent to the TLS port: a readable 400, not TLS garbage.
                    match tokio::time::timeout_at(deadline, plain_http::first_byte(io.get_ref()))
                        .await
                    {
                        Ok(plain_http::First::Tls) => {}
                        Ok(plain_http::First::Http) => {
                            tracing::debug!(peer = %addr, "plain HTTP on the TLS port");
                            return plain_http::answer(&mut io).await;
                        }
                        Ok(plain_http::First::Other) => {}
                        Ok(plain_http::First::Closed) => return,
                        Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    }
                    // The expensive step runs on a handshake thread (handshakes.rs).
                    match tokio::time::timeout_at(deadline, handshakes.accept(config, io)).await {
                        // Idle from the end of the handshake.
                        Ok(Ok(s)) => {
                            let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                            serve_io(builder, s, conn(h2), stop, h2).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    }
                }
                None => serve_io(builder, io, conn(false), stop, false).await,
            }
        });
    }
    drop(conns);
    drop(alive);
    let grace = current.load().app.settings.server.shutdown_grace;
    // Once per process (Running::shutdown) at info; per worker only at debug.
    tracing::debug!(grace_secs = grace.as_secs(), "worker draining");
    tokio::select! {
        _ = all_closed.recv() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
