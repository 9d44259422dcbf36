//! Real `redis-server`s (Debian's package; installed by scripts/install-test-deps.sh, or here
//! when missing and running as root) on random loopback ports, killed on drop: one server, a
//! replica, sentinels (`redis-server --sentinel`), a 3-master Cluster (`redis-cli --cluster
//! create`), a TLS server. Shared by the `redis_*.rs` tests and `session_stores.rs` (the store
//! conformance suite).
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub port: u16,
    /// Config and data files (sentinel config, cluster node files), gone with the server.
    dir: Option<tempfile::TempDir>,
    /// How it was started (for `start_again`).
    prog: String,
    args: Vec<String>,
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Redis {
    /// Kill the server (SIGKILL) and wait for it to be gone; `start_again` brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same server again: same program, arguments, port and files (a Cluster node comes
    /// back as the same node; the data is gone, there is no persistence).
    pub async fn start_again(&mut self) {
        self.kill();
        self.child = Command::new(&self.prog)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        wait_port(self.port).await;
    }
}

async fn wait_port(port: u16) {
    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_redis() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    assert!(
        root,
        "redis-server is not installed; run scripts/install-test-deps.sh"
    );
    let ok = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/install-test-deps.sh"
        ))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "installing redis-server failed");
}

/// A loopback port nothing listens on (bound, then released).
pub async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub async fn start_redis_on(port: u16) -> Redis {
    // Its own directory: nothing is saved (`--save ""`), but a master with replicas may still
    // write an RDB for them.
    start_with(port, &[], Some(tempfile::tempdir().unwrap())).await
}

/// `redis-server` on `port` with extra arguments (after the common ones), its files in `dir`.
pub async fn start_with(port: u16, extra: &[&str], dir: Option<tempfile::TempDir>) -> Redis {
    start_prog("redis-server", port, extra, dir).await
}

async fn start_prog(
    prog: &str,
    port: u16,
    extra: &[&str],
    dir: Option<tempfile::TempDir>,
) -> Redis {
    ensure_redis();
    let mut args: Vec<String> = Vec::new();
    // A sentinel's config file comes first (`redis-server <file> --sentinel`).
    if let Some(conf) = extra.first().filter(|a| a.ends_with(".conf")) {
        args.push(conf.to_string());
    }
    let port_arg = port.to_string();
    args.extend(
        [
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if let Some(d) = &dir {
        args.extend(["--dir".to_string(), d.path().display().to_string()]);
    }
    args.extend(
        extra
            .iter()
            .filter(|a| !a.ends_with(".conf"))
            .map(|s| s.to_string()),
    );
    let child = Command::new(prog)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let r = Redis {
        child,
        port,
        dir,
        prog: prog.to_string(),
        args,
    };
    wait_port(port).await;
    r
}

/// A plain connection to a server (to look at it, or set it up).
pub async fn raw(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One command to the server on `port`.
pub async fn cmd<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> redis::RedisResult<T> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut raw(port).await).await
}

/// A replica of the server on `master`.
pub async fn start_replica(master: u16) -> Redis {
    let m = master.to_string();
    // Its own directory: a replica writes the RDB it syncs to disk.
    let dir = tempfile::tempdir().unwrap();
    let r = start_with(
        free_port().await,
        &["--replicaof", "127.0.0.1", &m],
        Some(dir),
    )
    .await;
    // Wait for the first sync.
    let t = Instant::now();
    loop {
        let info: String = cmd(r.port, &["INFO", "replication"]).await.unwrap();
        if info.contains("master_link_status:up") {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "replica did not sync: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master name the test sentinels monitor.
pub const SENTINEL_MASTER: &str = "wxmaster";

/// A sentinel watching the master on `master` (quorum `quorum`), quick to act: the master is
/// taken for down after 1 s.
pub async fn start_sentinel(master: u16, quorum: u32) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} {quorum}\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let port = free_port().await;
    // Debian's redis-sentinel (package redis-sentinel); redis-server --sentinel is the same.
    if Command::new("redis-sentinel")
        .arg("--version")
        .output()
        .is_ok()
    {
        start_prog("redis-sentinel", port, &[&conf], Some(dir)).await
    } else {
        start_with(port, &[&conf, "--sentinel"], Some(dir)).await
    }
}

/// The address the sentinel on `port` gives for the master now.
pub async fn sentinel_master_port(port: u16) -> Option<u16> {
    let a: Vec<String> = cmd(
        port,
        &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
    )
    .await
    .ok()?;
    a.get(1)?.parse().ok()
}

/// A loopback port free for a Cluster node: the port and its bus port (+10000) both unused.
pub async fn free_cluster_port() -> u16 {
    loop {
        let p = free_port().await;
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// A Redis Cluster of three masters (no replicas), every slot assigned, state ok.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// The seed nodes as the config takes them (`host:port`).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }
}

pub async fn start_cluster() -> Cluster {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_cluster_port().await;
        let conf = dir.path().join("nodes.cluster").display().to_string();
        nodes.push(
            start_with(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ],
                Some(dir),
            )
            .await,
        );
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t = Instant::now();
    for n in &nodes {
        loop {
            let info: String = cmd(n.port, &["CLUSTER", "INFO"]).await.unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "cluster not ok: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Cluster { nodes }
}

/// A redis-server speaking only TLS on its port, with `cert`/`key` (PEM files).
pub async fn start_tls_redis(cert: &std::path::Path, key: &std::path::Path) -> Redis {
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let port = free_port().await;
    let p = port.to_string();
    let args = [
        "--port",
        "0",
        "--tls-port",
        &p,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-cert-file",
        &c,
        "--tls-key-file",
        &k,
        "--tls-auth-clients",
        "no",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ensure_redis();
    let child = Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let r = Redis {
        child,
        port,
        dir: None,
        prog: "redis-server".into(),
        args,
    };
    wait_port(port).await;
    r
}

pub async fn start_redis() -> Redis {
    start_redis_on(free_port().await).await
}
