//! TLS handshakes next to the workers, not on them: the expensive step of a handshake (the
//! key exchange and the signature, about 0.15 ms of CPU) runs on handshake threads, one per
//! worker, so a burst of new connections (a restart, a deploy, the morning rush) cannot hold up
//! the requests of connections that are already open.
//!
//! A worker reads the ClientHello itself ([`LazyConfigAcceptor`], cheap), hands the parsed
//! hello to a handshake thread, which answers it (`StartHandshake::into_stream`: the server's
//! whole first flight, computed without touching the socket), and gets back the half-done
//! handshake, into which it puts its socket ([`Attach`]) to finish the handshake on its own
//! runtime: the socket never leaves the worker.
//!
//! On the worker itself, a burst queued every ClientHello in its run queue ahead of the
//! requests that became ready after them (first come, first served): at 1 000 new connections a
//! request waited for hundreds of handshakes. On their own threads, the kernel shares the CPU
//! between handshakes and requests in time slices instead.
//!
//! The handshake threads run at nice 10 ([`HANDSHAKE_NICE`] above the process's own): when handshakes and requests both
//! want the CPU, the requests of connections already open go first, and the handshakes take the
//! rest (the scheduler gives every runnable thread some CPU, so a handshake is delayed, never
//! stalled). Measured with `bench/run.sh burst` (1 000 TLS connections opened at once, five
//! rounds, same binary at nice 0 and nice 10, nginx alongside): wrk's p99 / p99.9 / max went from
//! 67 / 214 / 281 ms at nice 0 to 39 / 89 / 113 ms at nice 10 (nginx 46 / 228 / 323 ms); the
//! connections took longer to be ready (mean 245 against 193 ms) but got their first answer
//! sooner (307 against 336 ms), and CPU per request was unchanged. An earlier version of this
//! module, with two handshake threads per worker, was slower at nice 10; with one per worker it
//! is the other way round.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{Accept, LazyConfigAcceptor, StartHandshake};

type Job = Box<dyn FnOnce() + Send>;

/// How far below the workers' priority the handshake threads run (nice +10 from the process's
/// own), so requests on open connections go ahead of new handshakes when both wait for the CPU.
pub(crate) const HANDSHAKE_NICE: i32 = 10;

/// The highest nice value Linux has (the lowest priority).
#[cfg(target_os = "linux")]
const MAX_NICE: i32 = 19;

/// Lower the calling thread's priority by [`HANDSHAKE_NICE`]. Best effort: lowering one's own
/// priority needs no privilege, and if it fails the thread runs at the workers' priority.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's own id; no memory is passed or touched.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid,
            (now + HANDSHAKE_NICE).min(MAX_NICE),
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// The handshake threads of one server (one per worker; they end when the pool is dropped).
pub(crate) struct HandshakePool {
    queues: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
}

impl HandshakePool {
    /// Start `threads` handshake threads (at least one).
    pub(crate) fn start(threads: usize) -> io::Result<Arc<Self>> {
        let mut queues = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(format!("wxgate-tls-{i}"))
                .spawn(move || {
                    lower_priority();
                    // Ends when the pool (every sender) is gone.
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })?;
            queues.push(tx);
        }
        Ok(Arc::new(HandshakePool {
            queues,
            next: AtomicUsize::new(0),
        }))
    }

    /// Run `f` on a handshake thread; `None` if the pool is gone. A job whose caller gave up
    /// (its handshake timed out) is skipped.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i].send(job).ok()?;
        rx.await.ok()
    }

    /// The whole server side of a TLS handshake on `io`: the ClientHello read here, answered on
    /// a handshake thread, finished here.
    pub(crate) async fn accept<IO>(
        &self,
        config: Arc<rustls::ServerConfig>,
        io: IO,
    ) -> io::Result<TlsStream<Attach<IO>>>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let StartHandshake { accepted, io, .. } = start;
        let answered = self
            .run(move || StartHandshake::from_parts(accepted, Attach::empty()).into_stream(config))
            .await
            .ok_or_else(|| io::Error::other("handshake threads stopped"))?;
        finish(answered, io).await
    }
}

/// Put the socket into the answered handshake and drive it to the end.
async fn finish<IO>(mut answered: Accept<Attach<IO>>, io: IO) -> io::Result<TlsStream<Attach<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match answered.get_mut() {
        Some(slot) => slot.0 = Some(io),
        None => return Err(io::Error::other("handshake ended before it started")),
    }
    answered.await
}

/// An I/O object that can be put in later: the handshake thread answers the ClientHello with
/// an empty one (it is never read or written there), the worker puts its socket in. Empty, it
/// fails every operation.
#[derive(Debug)]
pub(crate) struct Attach<T>(Option<T>);

impl<T> Attach<T> {
    fn empty() -> Self {
        Attach(None)
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no socket attached")
}

impl<T: AsyncRead + Unpin> AsyncRead for Attach<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.0 {
            Some(t) => Pin::new(t).poll_read(cx, buf),
            None => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Attach<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0 {
            Some(t) => Pin::new(t).poll_write(cx, buf),
            None => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0 {
            Some(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            Some(t) => Pin::new(t).poll_flush(cx),
            None => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            Some(t) => Pin::new(t).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server config with `suites` and a client config trusting its certificate.
    fn tls_pair_with(
        suites: Vec<rustls::SupportedCipherSuite>,
        client_suites: Vec<rustls::SupportedCipherSuite>,
    ) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = |cipher_suites| {
            Arc::new(rustls::crypto::CryptoProvider {
                cipher_suites,
                ..rustls::crypto::ring::default_provider()
            })
        };
        let server = rustls::ServerConfig::builder_with_provider(provider(suites))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider(client_suites))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        tls_pair_with(all.clone(), all)
    }

    /// A handshake answered on a handshake thread ends in a working TLS stream over the socket
    /// the worker kept.
    #[tokio::test]
    async fn handshake_on_the_pool_then_data_both_ways() {
        let (server_cfg, client_cfg) = tls_pair();
        let pool = HandshakePool::start(1).unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = pool.accept(server_cfg, server_io).await.unwrap();
            assert!(tls.get_ref().0 .0.is_some());
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"pong").await.unwrap();
            tls.flush().await.unwrap();
            let on = pool
                .run(|| std::thread::current().name().map(str::to_owned))
                .await
                .unwrap();
            (buf, on)
        });
        let connector = tokio_rustls::TlsConnector::from(client_cfg);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = connector.connect(name, client_io).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        let (got, on) = server.await.unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(on.as_deref(), Some("wxgate-tls-0"));
    }

    /// The handshake threads run [`HANDSHAKE_NICE`] below the priority of the thread that
    /// started the pool, which keeps its own.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn handshake_threads_run_at_a_lower_priority() {
        // SAFETY: plain syscalls on the calling thread's own id.
        fn own_nice() -> i32 {
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, tid)
            }
        }
        let before = own_nice();
        let pool = HandshakePool::start(2).unwrap();
        for _ in 0..2 {
            let nice = pool.run(own_nice).await.unwrap();
            assert_eq!(nice, (before + HANDSHAKE_NICE).min(MAX_NICE));
        }
        assert_eq!(own_nice(), before, "the caller's priority is untouched");
    }

    /// A job whose caller gave up before a handshake thread got to it (its handshake timed
    /// out) is not run.
    #[tokio::test]
    async fn abandoned_job_is_skipped() {
        let pool = HandshakePool::start(1).unwrap();
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        // Keeps the one thread busy until released.
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || hold_rx.recv()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let late = tokio::time::timeout(
            Duration::from_millis(20),
            pool.run(move || r.store(true, Ordering::SeqCst)),
        )
        .await;
        assert!(late.is_err(), "the thread was busy");
        hold_tx.send(()).unwrap();
        busy.await.unwrap();
        // The thread has passed the abandoned job by now: a job after it has run.
        pool.run(|| ()).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst));
    }

    /// Garbage instead of a ClientHello: an error, no panic, nothing sent to the pool.
    #[tokio::test]
    async fn garbage_hello_is_an_error() {
        let (server_cfg, _) = tls_pair();
        let pool = HandshakePool::start(1).unwrap();
        let (mut client_io, server_io) = tokio::io::duplex(1024);
        client_io
            .write_all(b"\x16\x03\x01\x00\x05hello")
            .await
            .unwrap();
        drop(client_io);
        assert!(pool.accept(server_cfg, server_io).await.is_err());
    }

    /// A client that offers nothing the server speaks gets an alert and the server an error
    /// (the alert path of an answered handshake, with the socket put in afterwards).
    #[tokio::test]
    async fn refused_hello_sends_an_alert() {
        use rustls::crypto::ring::cipher_suite::{
            TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256,
        };
        let (server_cfg, client_cfg) = tls_pair_with(
            vec![TLS13_AES_128_GCM_SHA256],
            vec![TLS13_CHACHA20_POLY1305_SHA256],
        );
        let pool = HandshakePool::start(1).unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { pool.accept(server_cfg, server_io).await });
        let connector = tokio_rustls::TlsConnector::from(client_cfg);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let err = connector
            .connect(name, client_io)
            .await
            .expect_err("no common cipher suite");
        assert!(
            err.to_string().contains("HandshakeFailure"),
            "the client got the server's alert: {err}"
        );
        assert!(server.await.unwrap().is_err());
    }
}
