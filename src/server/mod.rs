//! The listener: TLS (rustls, ALPN h2 + http/1.1) or plain HTTP, hyper-util's auto builder
//! (HTTP/1.1 and HTTP/2) with header-read, handshake and size limits, and graceful shutdown.

pub mod timer;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::Proxy;
use crate::server::timer::CoarseTimer;

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
}

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    done: Vec<oneshot::Receiver<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish (within the grace period), return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for d in self.done {
            let _ = d.await;
        }
    }
}

/// Build the app from settings and start serving on `settings.listen`.
pub async fn serve(settings: Settings) -> Result<Running, ServeError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    serve_on(listener, settings).await
}

/// How many worker threads serve connections: `server.workers`, or one per CPU.
fn worker_count(s: &Settings) -> usize {
    match s.raw.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// Like [`serve`], on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Thread per core, like nginx's workers: each worker thread runs its own single-threaded
/// runtime and its own upstream connection pool, so a request never hops threads between the
/// client connection and the upstream connection. One acceptor deals new connections to the
/// workers in turn, so keep-alive load spreads evenly (a shared accept queue lets one worker
/// grab most connections).
pub async fn serve_on(listener: TcpListener, settings: Settings) -> Result<Running, ServeError> {
    let store = crate::session::Store::connect(&settings.raw.session)
        .await
        .map_err(|e| ServeError::Store(e.to_string()))?;
    let tls = match &settings.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            files.server_config().map_err(ServeError::Tls)?,
        )),
        None => None,
    };
    let workers = worker_count(&settings);
    let app = App::new(settings, store).map_err(|e| ServeError::Client(e.to_string()))?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: app.settings.listen,
        source,
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut done = Vec::with_capacity(workers + 1);
    let mut queues = Vec::with_capacity(workers);
    for i in 0..workers {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
        let (app, tls, stop) = (app.clone(), tls.clone(), stop_rx.clone());
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("wxgate-worker-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker(conn_rx, app, tls, stop)),
                    Err(e) => tracing::error!(error = %e, "worker runtime failed to start"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| ServeError::Client(format!("cannot start worker thread: {e}")))?;
        queues.push(conn_tx);
        done.push(done_rx);
    }
    let (acceptor_done_tx, acceptor_done_rx) = oneshot::channel();
    tokio::spawn(async move {
        acceptor(listener, queues, stop_rx).await;
        let _ = acceptor_done_tx.send(());
    });
    done.push(acceptor_done_rx);
    tracing::info!(%addr, tls = app.settings.tls.is_some(), workers, upstream = %app.settings.upstream, "wxgate listening");
    Ok(Running {
        addr,
        app,
        stop: stop_tx,
        done,
    })
}

/// Resolves once shutdown has been asked for (the watch guard is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accept connections and hand them to the workers in turn, until told to stop.
async fn acceptor(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
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
        let _ = queues[next].send((std_stream, peer));
    }
    // Dropping the listener stops accepting; dropping the queues lets workers drain and end.
}

/// `timer`: the worker's coarse timer, for the header-read timeout armed on every request.
fn builder(s: &Settings, timer: CoarseTimer) -> auto::Builder<TokioExecutor> {
    let c = &s.raw.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(timer)
        .header_read_timeout(Duration::from_millis(c.header_read_timeout_ms))
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(c.h2_max_concurrent_streams)
        .max_header_list_size(c.max_header_bytes.min(u32::MAX as usize) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// What every request on one connection shares: one refcount per request, not three.
struct Conn {
    app: Arc<App>,
    proxy: Arc<Proxy>,
    peer: crate::proxy::Peer,
}

/// Serve one connection (TLS or plain) until it ends or shutdown drains it.
async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    conn: Arc<Conn>,
    watcher: Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer.addr;
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.app.handle(req, &conn.peer, &conn.proxy).await) }
    });
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(serving.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn worker(
    mut conns: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    // This worker's own upstream pool: its connections live on this thread.
    let timer = CoarseTimer::start();
    let proxy = Arc::new(Proxy::new(&app.settings, timer.clone()));
    let builder = Arc::new(builder(&app.settings, timer));
    let graceful = GracefulShutdown::new();
    let handshake = Duration::from_millis(app.settings.raw.server.tls_handshake_timeout_ms);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
        };
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register connection");
                continue;
            }
        };
        let conn = Arc::new(Conn {
            peer: crate::proxy::Peer::new(peer, &app.settings.trusted_proxies),
            app: app.clone(),
            proxy: proxy.clone(),
        });
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_io(&builder, s, conn, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_io(&builder, stream, conn, watcher).await,
            }
        });
    }
    drop(conns);
    let grace = Duration::from_secs(app.settings.raw.server.shutdown_grace_secs);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received");
}
