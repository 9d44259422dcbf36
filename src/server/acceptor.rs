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
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        if !deal(&conns, &queues, &mut next, std_stream, peer) {
            break;
        }
    }
    // Shutdown: what the kernel has queued on the listener already is served too (closing a
    // listener resets the connections in its queue), then the listener is closed. With
    // SO_REUSEPORT, new connections go to the other processes on the address from here on.
    let mut drained = 0usize;
    if let Ok(listener) = listener.into_std() {
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    drained += 1;
                    if !deal(&conns, &queues, &mut next, stream, peer) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(_) => break,
            }
        }
    }
    tracing::info!(
        accepted_at_close = drained,
        "listener closed; no new connections"
    );
    // Dropping the queues lets workers drain and end.
}

/// Hand an accepted connection to the next worker, unless it is over a connection limit
/// (then it is closed). False when there is no worker left to take it.
fn deal(
    conns: &Arc<ConnLimits>,
    queues: &[mpsc::UnboundedSender<Accepted>],
    next: &mut usize,
    stream: std::net::TcpStream,
    peer: SocketAddr,
) -> bool {
    let guard = match conns.admit(peer.ip()) {
        Ok(g) => g,
        Err(why) => {
            tracing::debug!(%peer, ?why, open = conns.open(), "connection refused: over the limit");
            return true;
        }
    };
    let _ = stream.set_nodelay(true);
    if queues.is_empty() {
        return false;
    }
    *next = (*next + 1) % queues.len();
    // Re-registered on the worker's own runtime.
    let _ = queues[*next].send((stream, peer, guard));
    true
}
