//! Issue 13 item 4: the memory store across restarts (`session.snapshot_path`). The real
//! binary is started, logged into, stopped with SIGTERM and started again.

mod common;
mod proc_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::*;
use http::{Request, StatusCode};
use proc_support::{spawn_run, Child};

/// SIGTERM, then wait (at most 20 s) for a clean exit; the log's lines.
async fn terminate(mut gw: Child) -> Vec<String> {
    gw.signal("-TERM");
    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "wxgate exited with {status}");
    // The reader thread sees EOF right after the exit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.log().lines().map(str::to_owned).collect()
}

fn start(config: &Path) -> Child {
    spawn_run(config, &[("RUST_LOG", "info")])
}

async fn app_login(gw: SocketAddr, mock: &str) -> String {
    let r = send(
        &client(),
        Request::post(format!(
            "{mock}/mock/code?appid={}&user=alice",
            fixtures::MOBILE_APPID
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let code = r.json()["code"].as_str().unwrap().to_string();
    let r = send(
        &client(),
        Request::post(format!("http://{gw}/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(body(serde_json::json!({ "code": code }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

async fn with_bearer(gw: SocketAddr, token: &str) -> Reply {
    send(
        &client(),
        Request::get(format!("http://{gw}/api/orders"))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json")
            .body(empty())
            .unwrap(),
    )
    .await
}

struct Setup {
    _up: Upstream,
    mock: wxgate::tools::mock::MockServer,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    snapshot: std::path::PathBuf,
}

async fn setup() -> Setup {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("sessions.snapshot");
    let config = dir.path().join("wxgate.toml");
    write_config(&config, up.addr, &mock.url(), SECRET, &snapshot);
    Setup {
        _up: up,
        mock,
        dir,
        config,
        snapshot,
    }
}

fn write_config(path: &Path, up: SocketAddr, mock: &str, secret: &str, snapshot: &Path) {
    let toml = full_config(
        up,
        mock,
        &format!(
            "snapshot_path = \"{}\"\n[access]\nlogin_rate_per_minute = 0\n",
            snapshot.display()
        ),
    )
    .replace(SECRET, secret);
    std::fs::write(path, toml).unwrap();
}

/// Log in, SIGTERM, start again: the same bearer token still works. Returns the token and the
/// snapshot the second run wrote at its own SIGTERM (kept aside for the failure cases).
async fn restart_keeps_the_session(s: &Setup) -> (String, Vec<u8>) {
    let gw = start(&s.config);
    let token = app_login(gw.addr, &s.mock.url()).await;
    let r = with_bearer(gw.addr, &token).await;
    assert_eq!(r.status, StatusCode::OK);
    let log1 = terminate(gw).await;

    // The file: there, private, sealed.
    let meta = std::fs::metadata(&s.snapshot).expect("a snapshot was written");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let bytes = std::fs::read(&s.snapshot).unwrap();
    let raw_id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .unwrap();
    assert_eq!(raw_id.len(), 16);
    assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    assert!(!bytes.windows(16).any(|w| w == raw_id.as_slice()));
    let openid = fixtures::openid(fixtures::MOBILE_APPID, "alice");
    assert!(!bytes.windows(openid.len()).any(|w| w == openid.as_bytes()));
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Started again: the same token works, with the identity headers.
    let gw = start(&s.config);
    assert!(
        !s.snapshot.exists(),
        "the snapshot is used once: removed after loading"
    );
    let r = with_bearer(gw.addr, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.echoed_header("x-wechat-openid").as_deref(),
        Some(openid.as_str())
    );
    assert_eq!(
        r.echoed_header("x-wechat-source").as_deref(),
        Some("mobile_app")
    );
    let log2 = terminate(gw).await;
    for line in log1.iter().chain(&log2) {
        assert!(!line.contains(&token), "a session id in the log: {line}");
    }
    assert!(
        log2.iter().any(|l| l.contains("session snapshot loaded")),
        "{log2:?}"
    );
    let saved = std::fs::read(&s.snapshot).expect("written again at the second SIGTERM");
    (token, saved)
}

/// A snapshot that cannot be used: the start succeeds, one WARN line names the path and the
/// reason, the old token gets 401.
async fn unusable_snapshot_is_an_empty_start(s: &Setup, token: &str, reason: &str) {
    let gw = start(&s.config);
    let r = with_bearer(gw.addr, token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let path = s.snapshot.display().to_string();
    let warns: Vec<String> = gw
        .log()
        .lines()
        .map(str::to_owned)
        .filter(|l| l.contains("WARN") && l.contains("snapshot"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains(&path), "{}", warns[0]);
    assert!(warns[0].contains(reason), "{}", warns[0]);
    assert!(!warns[0].contains(token));
    // New logins work.
    let fresh = app_login(gw.addr, &s.mock.url()).await;
    assert_eq!(with_bearer(gw.addr, &fresh).await.status, StatusCode::OK);
    terminate(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_bad_snapshots_are_ignored() {
    let s = setup().await;
    let (token, saved) = restart_keeps_the_session(&s).await;

    // Truncated.
    std::fs::write(&s.snapshot, &saved[..saved.len() / 2]).unwrap();
    unusable_snapshot_is_an_empty_start(&s, &token, "does not decrypt").await;

    // Cut inside the header.
    std::fs::write(&s.snapshot, &saved[..5]).unwrap();
    unusable_snapshot_is_an_empty_start(&s, &token, "truncated").await;

    // Old format (another version byte).
    let mut old = saved.clone();
    old[7] = 0;
    std::fs::write(&s.snapshot, &old).unwrap();
    unusable_snapshot_is_an_empty_start(&s, &token, "version 0").await;

    // Written under another cookie_secret: the gateway with this secret cannot open it.
    std::fs::write(&s.snapshot, &saved).unwrap();
    let other = "another-cookie-secret-0123456789abcdef";
    write_config(&s.config, s._up.addr, &s.mock.url(), other, &s.snapshot);
    unusable_snapshot_is_an_empty_start(&s, &token, "another session.cookie_secret").await;
}

#[test]
fn snapshot_path_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        let cfg = dir.path().join("c.toml");
        let toml = full_config("127.0.0.1:9".parse().unwrap(), "http://127.0.0.1:9", extra);
        std::fs::write(&cfg, toml).unwrap();
        let out = Command::new(bin())
            .args(["check", "--config"])
            .arg(&cfg)
            .env_remove("WXGATE_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("nope/s.snapshot");
    let (ok, err) = check(&format!("snapshot_path = \"{}\"", missing.display()));
    assert!(!ok);
    assert!(err.contains("session.snapshot_path"), "{err}");
    let (ok, err) = check(&format!(
        "store = \"redis\"\nredis_url = \"redis://127.0.0.1:9\"\nsnapshot_path = \"{}\"",
        dir.path().join("s").display()
    ));
    assert!(!ok);
    assert!(err.contains("session.snapshot_path"), "{err}");
    let (ok, err) = check(&format!(
        "snapshot_path = \"{}\"",
        dir.path().join("s.snapshot").display()
    ));
    assert!(ok, "{err}");
}
