//! The acceptor: one task takes new connections off the listener, refuses those over
//! `server.max_connections` / `server.max_connections_per_ip`, and deals the rest to the
//! workers in turn (keep-alive load spreads evenly; a shared accept queue lets one worker grab
//! most connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::server::limits::{self, AcceptFailures, AcceptLog, ConnGuard, ConnLimits};
use crate::server::shutdown::stopped;

/// What the acceptor hands a worker.
pub(crate) type Accepted = (std::net::TcpStream, SocketAddr, ConnGuard);

/// Accept connections and hand them to the workers in turn, until told to stop. A connection
/// over `max_connections` or `max_connections_per_ip` is closed at once. Out of file
/// descriptors (or memory), accepting pauses [`limits::ACCEPT_BACKOFF`] between tries, with one
/// log line when it starts failing, one every few seconds while it lasts and one when it works
/// again.
pub(crate) async fn acceptor(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    mut stop: watch::Receiver<bool>,
    conns: Arc<ConnLimits>,
) {
    let mut next = 0usize;
    let mut failures = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if limits::accept_error_is_transient(&e) => continue,
                Err(e) => {
                    match failures.failed(Instant::now()) {
                        AcceptLog::Started => tracing::warn!(error = %e, "accept failed; retrying every 50 ms until it works"),
                        AcceptLog::Still(n) => tracing::warn!(error = %e, failures = n, "accept still failing"),
                        _ => {}
                    }
                    tokio::time::sleep(limits::ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let AcceptLog::Recovered(d) = failures.accepted(Instant::now()) {
            tracing::warn!(
                failed_for_ms = d.as_millis() as u64,
                "accepting connections again"
            );
        }
        let guard = match conns.admit(peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                tracing::debug!(%peer, ?why, open = conns.open(), "connection refused: over the limit");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Re-registered on the worker's own runtime.
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        if queues.is_empty() {
            break;
        }
        next = (next + 1) % queues.len();
        let _ = queues[next].send((std_stream, peer, guard));
    }
    // Dropping the listener stops accepting; dropping the queues lets workers drain and end.
}
