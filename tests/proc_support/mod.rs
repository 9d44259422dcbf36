//! `wxgate run` as a real process for the tests (reload by signal, hand-over between
//! processes), signals, and `wrk` runs against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `wxgate run` child with its stderr collected; killed on drop.
pub struct Child {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Child {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Wait until the log holds `n` lines containing `needle`.
    pub async fn wait_log(&self, needle: &str, n: usize) {
        let t = Instant::now();
        while self.log.lock().unwrap().matches(needle).count() < n {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no {needle:?} (x{n}) in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this process holds a listening TCP socket on `port` (see [`pid_listens_on`]).
    pub fn listens_on(&self, port: u16) -> bool {
        pid_listens_on(self.child.id(), port)
    }

    /// Wait for the process to exit; its status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(t.elapsed() < within, "did not exit:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Start `wxgate run --config config`; returns once it logs "wxgate listening".
pub fn spawn_run(config: &Path, envs: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxgate"));
    cmd.args(["run", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let l2 = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("wxgate listening") {
                let at = line.find("addr").unwrap();
                let rest = &line[at..];
                let start = rest.find(|c: char| c.is_ascii_digit()).unwrap();
                let end = rest[start..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .map(|e| start + e)
                    .unwrap_or(rest.len());
                let _ = tx.send(rest[start..end].parse::<SocketAddr>().unwrap());
                sent = true;
            }
            let mut g = l2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("wxgate did not start:\n{}", log.lock().unwrap());
        }
    };
    Child { child, addr, log }
}

/// Whether process `pid` holds a listening TCP socket on `port` (any address). Asks the kernel
/// about the process, not the port: another process's listener that happens to take the same
/// port (a test running beside this one) does not count.
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is column 10.
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
            if local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && f.get(3) == Some(&"0A")
            {
                inodes.extend(f.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a `wrk` run counted.
#[derive(Debug, Default)]
pub struct Wrk {
    pub requests: u64,
    /// Responses other than 200 (counted by the Lua script).
    pub bad_status: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
    pub output: String,
}

const WRK_SCRIPT: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  io.write("BAD_STATUS " .. n .. "\n")
end
"#;

/// Whether `wrk` is installed (scripts/install-test-deps.sh).
pub fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Start `wrk` (one thread, `conns` connections, `secs` seconds) on `url` with `headers`; join
/// the handle for its counts.
pub fn start_wrk(
    url: &str,
    conns: u32,
    secs: u32,
    headers: &[&str],
) -> std::thread::JoinHandle<Wrk> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wxgate-wrk-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("count.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "5s",
        "-s",
    ])
    .arg(&script);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    std::thread::spawn(move || {
        let out = cmd.output().expect("wrk runs");
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_wrk(&text)
    })
}

fn parse_wrk(text: &str) -> Wrk {
    let mut w = Wrk {
        output: text.to_string(),
        ..Wrk::default()
    };
    for line in text.lines() {
        let l = line.trim();
        if let Some(n) = l.strip_prefix("BAD_STATUS ") {
            w.bad_status = n.trim().parse().unwrap_or(u64::MAX);
        } else if l.contains(" requests in ") {
            w.requests = l.split_whitespace().next().unwrap().parse().unwrap_or(0);
        } else if let Some(rest) = l.strip_prefix("Socket errors:") {
            w.socket_errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    assert!(
        text.contains("BAD_STATUS"),
        "wrk output not understood:\n{text}"
    );
    w
}

/// One HTTP/1.1 GET over a new TLS connection: status, headers, body, and the certificate the
/// server presented.
pub async fn tls_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String, Vec<u8>) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(super::common::insecure_tls(&[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", format!("127.0.0.1:{}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        send.send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .expect("TLS request timed out")
    .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
        cert,
    )
}

/// Both wrk runs' counts, waited for off the runtime (the test's upstream runs on it).
pub async fn join_wrk(
    a: std::thread::JoinHandle<Wrk>,
    b: std::thread::JoinHandle<Wrk>,
) -> (Wrk, Wrk) {
    tokio::task::spawn_blocking(move || (a.join().unwrap(), b.join().unwrap()))
        .await
        .unwrap()
}

/// One keep-alive HTTP/1.1 connection, kept open across reloads.
pub struct KeepAlive {
    pub send: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
}

impl KeepAlive {
    pub async fn open(addr: std::net::SocketAddr) -> KeepAlive {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        KeepAlive { send }
    }

    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> (http::StatusCode, String) {
        let (status, _, body) = self.fetch(path, cookie).await;
        (status, body)
    }

    /// GET `path` on this connection: status, headers, body.
    pub async fn fetch(
        &mut self,
        path: &str,
        cookie: Option<&str>,
    ) -> (http::StatusCode, http::HeaderMap, String) {
        self.send.ready().await.expect("connection still open");
        let mut req = http::Request::get(path)
            .header("host", "127.0.0.1")
            .header("accept", "application/json");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            self.send
                .send_request(req.body(http_body_util::Empty::new()).unwrap()),
        )
        .await
        .expect("timed out")
        .expect("request on the open connection");
        let (parts, body) = resp.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}
