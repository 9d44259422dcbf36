//! A real `redis-server` (Debian's package; installed by scripts/install-test-deps.sh, or here
//! when missing and running as root) on a random loopback port, killed on drop. Shared by
//! `redis_store.rs` (gateways on Redis) and `session_stores.rs` (the store conformance suite).
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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
    ensure_redis();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
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
    Redis { child, port }
}

pub async fn start_redis() -> Redis {
    start_redis_on(free_port().await).await
}
