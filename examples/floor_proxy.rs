//! The floor of the stack wxgate is built on, for the benchmark (`bench/run.sh`, setup E).
//!
//! The least a TLS-terminating reverse proxy made of tokio + rustls + hyper can do per request:
//! thread per core (one current-thread runtime and one `SO_REUSEPORT` listener per worker),
//! hyper's HTTP/1.1 or HTTP/2 server (by ALPN) with no timers and no limits. An HTTP/1.1 client
//! connection gets one dedicated upstream connection (hyper's connection-level client, no pool,
//! no lookup). An HTTP/2 stream takes an idle upstream connection from its worker's stack (or
//! opens one) and puts it back when the response body has ended: the least pooling that
//! concurrent streams need. The request goes upstream exactly as it came (no session lookup, no
//! header work, no metrics, no logging), the response comes back as it is. Not a usable proxy
//! (no hop-by-hop handling, no timeouts, no X-Forwarded-*): a measuring stick. Whatever wxgate
//! costs above this is wxgate's; what this costs is the price of the stack on this machine.
//!
//! ```text
//! cargo run --release --example floor_proxy -- \
//!     --listen 127.0.0.1:18447 --upstream 127.0.0.1:18080 --cert server.crt --key server.key
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = wxgate::server::tls::TlsFiles::load(&args.cert, &args.key)?;
    // wxgate's TLS settings (ALPN h2, http/1.1).
    let tls =
        wxgate::server::tls::server_config(&files).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let workers = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut threads = Vec::new();
    for i in 0..workers {
        let acceptor = acceptor.clone();
        let (listen, upstream) = (args.listen, args.upstream);
        threads.push(
            std::thread::Builder::new()
                .name(format!("floor-{i}"))
                .spawn(move || -> anyhow::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(worker(listen, upstream, acceptor))
                })?,
        );
    }
    exit_on_signal()?;
    eprintln!(
        "floor_proxy listening on {} ({workers} workers)",
        args.listen
    );
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(())
}

/// SIGTERM or SIGINT ends the process through `exit` (status 0), so that what runs at exit
/// does: a build with `-Cprofile-generate` (`scripts/build-pgo.sh floor`) writes its counters
/// then, and the default action of either signal would skip it. wxgate's own signal handling
/// ([`wxgate::server::ShutdownSignal`]), taken over before the listeners start, on a thread of
/// its own that sleeps until then: the workers do not see it.
fn exit_on_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut stop = rt.block_on(async { wxgate::server::ShutdownSignal::install() });
    std::thread::Builder::new()
        .name("floor-signals".into())
        .spawn(move || {
            rt.block_on(stop.recv());
            std::process::exit(0);
        })?;
    Ok(())
}

async fn worker(
    listen: SocketAddr,
    upstream: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket
        .bind(listen)
        .with_context(|| format!("bind {listen}"))?;
    let listener = socket.listen(1024)?;
    // This worker's idle upstream connections for HTTP/2 streams.
    let idle: Idle = Arc::new(Mutex::new(Vec::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let idle = idle.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    let idle = idle.clone();
                    // The least HTTP/2 → HTTP/1.1 needs: Host from :authority, origin-form.
                    if let Some(a) = req.uri().authority() {
                        if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
                            req.headers_mut().insert(http::header::HOST, v);
                        }
                    }
                    if let Some(pq) = req.uri().path_and_query().cloned() {
                        *req.uri_mut() = http::Uri::from(pq);
                    }
                    *req.version_mut() = http::Version::HTTP_11;
                    async move {
                        let mut send = match take_idle(&idle) {
                            Some(mut s) => match s.ready().await {
                                Ok(()) => s,
                                Err(_) => connect(upstream).await?,
                            },
                            None => connect(upstream).await?,
                        };
                        let resp = send.send_request(req).await?;
                        Ok::<_, anyhow::Error>(resp.map(|inner| Returning {
                            inner,
                            back: Some((send, idle)),
                        }))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
                return;
            }
            let Ok(up) = connect(upstream).await else {
                return;
            };
            let up = std::sync::Arc::new(tokio::sync::Mutex::new(up));
            let svc = service_fn(move |req: Request<Incoming>| {
                let up = up.clone();
                async move {
                    let mut up = up.lock().await;
                    up.ready().await?;
                    up.send_request(req).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

type Idle = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

/// The most recently put back idle upstream connection, if any (closed ones are dropped).
fn take_idle(idle: &Idle) -> Option<SendRequest<Incoming>> {
    let mut v = idle.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(s) = v.pop() {
        if !s.is_closed() {
            return Some(s);
        }
    }
    None
}

pin_project_lite::pin_project! {
    /// A response body that puts its upstream connection back once it has ended.
    struct Returning {
        #[pin]
        inner: Incoming,
        back: Option<(SendRequest<Incoming>, Idle)>,
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        // hyper stops asking once `is_end_stream` says so: the end may never be polled.
        if matches!(r, Poll::Ready(None)) || this.inner.is_end_stream() {
            if let Some((send, idle)) = this.back.take() {
                idle.lock().unwrap_or_else(|e| e.into_inner()).push(send);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn connect(upstream: SocketAddr) -> anyhow::Result<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}
