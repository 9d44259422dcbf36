//! TLS handshakes next to the workers, not on them: the expensive step of a handshake (the
//! key exchange and the signature, about 0.15 ms of CPU) runs on handshake threads, so a burst
//! of new connections (a restart, a deploy, the morning rush) cannot hold up the requests of
//! connections that are already open.
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
//! Each worker has two handshake threads. A quiet-time thread, at the workers' priority, takes
//! the handshakes while few are pending (fewer than [`QUIET_DEPTH`] per thread: new
//! connections at a steady rate). Beyond that it is a burst, and new handshakes go to a burst
//! thread at nice +10 ([`HANDSHAKE_NICE`]): while handshakes and requests both want the CPU, the
//! requests of open connections go first and the handshakes take the rest (the scheduler gives
//! every runnable thread some CPU, so a handshake is delayed, never stalled). Measured with
//! `bench/run.sh burst` (1 000 TLS connections at once, five rounds, same binary, nginx
//! alongside), all handshakes at nice 10 against all at nice 0: wrk's p99 / p99.9 / max 39 / 89 /
//! 113 ms against 67 / 214 / 281 (nginx 46 / 228 / 323), connections ready later (mean 245
//! against 193 ms) but answered sooner (first byte 307 against 336 ms), CPU per request
//! unchanged. But at nice 10 alone, new connections at a steady rate (`bench/run.sh
//! handshakes`) lost their CPU to any busy process at nice 0 (there, the load generator): 0.59x
//! nginx's connections per second, against about 1.0x at nice 0. The quiet-time threads keep
//! that case at the workers' priority.

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

/// The calling thread's nice value (its own, not the process's).
#[cfg(target_os = "linux")]
fn thread_nice() -> i32 {
    // SAFETY: plain syscalls on this thread's own id; no memory is passed or touched.
    unsafe {
        libc::getpriority(
            libc::PRIO_PROCESS,
            libc::syscall(libc::SYS_gettid) as libc::id_t,
        )
    }
}

/// Lower the calling thread's priority by [`HANDSHAKE_NICE`]. Best effort: lowering one's own
/// priority needs no privilege, and if it fails the thread runs at the workers' priority.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let nice = (thread_nice() + HANDSHAKE_NICE).min(MAX_NICE);
    // SAFETY: as in `thread_nice`.
    unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::syscall(libc::SYS_gettid) as libc::id_t,
            nice,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Handshakes waiting or running, per quiet-time thread, below which a new one goes to a
/// quiet-time thread (at the workers' priority); at or above it, to a burst thread. Eight is
/// about a millisecond of handshake work: a steady stream of new connections stays under it,
/// a burst goes over it at once.
const QUIET_DEPTH: usize = 8;

/// The handshake threads of one server, two per worker: a quiet-time thread at the workers'
/// priority and a burst thread [`HANDSHAKE_NICE`] below it. They end when the pool is dropped.
pub(crate) struct HandshakePool {
    quiet: Vec<mpsc::Sender<Job>>,
    burst: Vec<mpsc::Sender<Job>>,
    /// Handshakes sent to a thread and not yet done, on all threads.
    pending: Arc<AtomicUsize>,
    next: AtomicUsize,
}

/// Counts a handshake as pending while it lives (sent, waiting or running; a job the channel
/// drops unrun is done too).
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One handshake thread, named `name`, at a lower priority if `low`.
fn spawn_thread(name: String, low: bool) -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name(name).spawn(move || {
        if low {
            lower_priority();
        }
        // Ends when the pool (every sender) is gone.
        while let Ok(job) = rx.recv() {
            job();
        }
    })?;
    Ok(tx)
}

impl HandshakePool {
    /// Start `workers` quiet-time and `workers` burst threads (at least one of each).
    pub(crate) fn start(workers: usize) -> io::Result<Arc<Self>> {
        let mut quiet = Vec::new();
        let mut burst = Vec::new();
        for i in 0..workers.max(1) {
            quiet.push(spawn_thread(format!("wxgate-tls-{i}"), false)?);
            burst.push(spawn_thread(format!("wxgate-tlsb-{i}"), true)?);
        }
        Ok(Arc::new(HandshakePool {
            quiet,
            burst,
            pending: Arc::new(AtomicUsize::new(0)),
            next: AtomicUsize::new(0),
        }))
    }

    /// Run `f` on a handshake thread: a quiet-time one while few handshakes are pending, a
    /// burst one otherwise. `None` if the pool is gone. A job whose caller gave up (its
    /// handshake timed out) is skipped.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        let pending = Pending(self.pending.clone());
        let job: Job = Box::new(move || {
            let _pending = pending;
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        let threads = if before < QUIET_DEPTH * self.quiet.len() {
            &self.quiet
        } else {
            &self.burst
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % threads.len();
        threads[i].send(job).ok()?;
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

    /// Where a job ran: the thread's name and nice value.
    fn where_run() -> (String, i32) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        #[cfg(target_os = "linux")]
        return (name, thread_nice());
        #[cfg(not(target_os = "linux"))]
        return (name, 0);
    }

    /// While few handshakes are pending they run on the quiet-time threads, at the priority of
    /// the thread that started the pool (which keeps its own); once the quiet-time threads
    /// have [`QUIET_DEPTH`] each, the next go to the burst threads, [`HANDSHAKE_NICE`] lower;
    /// when the burst is over, to the quiet-time threads again.
    #[tokio::test]
    async fn a_burst_goes_to_the_lower_priority_threads() {
        #[cfg(target_os = "linux")]
        let before = thread_nice();
        let pool = HandshakePool::start(2).unwrap();
        let (name, nice) = pool.run(where_run).await.unwrap();
        assert!(name.starts_with("wxgate-tls-"), "{name}");
        #[cfg(target_os = "linux")]
        assert_eq!(nice, before);

        // Fill the quiet-time threads: QUIET_DEPTH pending handshakes each, held.
        let mut release = Vec::new();
        let mut held = Vec::new();
        for _ in 0..QUIET_DEPTH * 2 {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            release.push(tx);
            let pool = pool.clone();
            held.push(tokio::spawn(async move {
                pool.run(move || {
                    let _ = rx.recv();
                    where_run()
                })
                .await
            }));
        }
        while pool.pending.load(Ordering::Relaxed) < QUIET_DEPTH * 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..2 {
            let (name, nice) = pool.run(where_run).await.unwrap();
            assert!(name.starts_with("wxgate-tlsb-"), "{name}");
            #[cfg(target_os = "linux")]
            assert_eq!(nice, (before + HANDSHAKE_NICE).min(MAX_NICE));
            let _ = nice;
        }
        for tx in release {
            tx.send(()).unwrap();
        }
        for h in held {
            let (name, _) = h.await.unwrap().unwrap();
            assert!(name.starts_with("wxgate-tls-"), "{name}");
        }
        assert_eq!(
            pool.pending.load(Ordering::Relaxed),
            0,
            "every job counted out"
        );
        let (name, _) = pool.run(where_run).await.unwrap();
        assert!(name.starts_with("wxgate-tls-"), "{name}");
        #[cfg(target_os = "linux")]
        assert_eq!(thread_nice(), before, "the caller's priority is untouched");
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
