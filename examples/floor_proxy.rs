//! The floor of the stack wxgate is built on, for the benchmark (`bench/run.sh`, setup E).
//!
//! The least a TLS-terminating HTTP/1.1 reverse proxy made of tokio + rustls + hyper can do per
//! request: thread per core (one current-thread runtime and one `SO_REUSEPORT` listener per
//! worker), hyper's HTTP/1.1 server with no timers and no limits, and for each client connection
//! one dedicated upstream connection (hyper's connection-level client, no pool, no lookup). The
//! request goes upstream exactly as it came (no session lookup, no header work, no metrics, no
//! logging), the response comes back as it is. Not a usable proxy (no hop-by-hop handling, no
//! timeouts, no X-Forwarded-*): a measuring stick. Whatever wxgate costs above this is wxgate's;
//! what this costs is the price of the stack on this machine.
//!
//! ```text
//! cargo run --release --example floor_proxy -- \
//!     --listen 127.0.0.1:18447 --upstream 127.0.0.1:18080 --cert server.crt --key server.key
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
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
    // wxgate's TLS settings, but HTTP/1.1 only: this proxy has no HTTP/2 server.
    let mut tls = (*wxgate::server::tls::server_config(&files)
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
    .clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
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
    eprintln!(
        "floor_proxy listening on {} ({workers} workers)",
        args.listen
    );
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
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
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
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

async fn connect(upstream: SocketAddr) -> anyhow::Result<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}
