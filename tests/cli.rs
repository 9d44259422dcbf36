//! The `wxgate` binary: `check` (every config error names its key), environment overrides,
//! `*_file` secrets, `run` with graceful shutdown on SIGTERM, and logs free of secrets.

mod common;
mod proc_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use proc_support::spawn_run;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://app.example.com"
[wechat.website]
appid = "wx1000000000000001"
secret = "website-secret-value-1234"
[session]
cookie_secret = "0123456789abcdef0123456789abcdef-x"
"#;

fn check_with(toml: &str, envs: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxgate.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("check")
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.env_remove("WXGATE_CONFIG").output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(toml: &str) -> (bool, String, String) {
    check_with(toml, &[])
}

#[test]
fn good_config_prints_redacted() {
    let (ok, out, err) = check(GOOD);
    assert!(ok, "{err}");
    assert!(
        out.contains("[server]") && out.contains("public_url = \"https://app.example.com\""),
        "{out}"
    );
    assert!(
        !out.contains("website-secret-value-1234") && !out.contains("0123456789abcdef"),
        "{out}"
    );
    assert!(out.contains("<redacted>"));
}

#[test]
fn every_config_error_names_its_key() {
    let cases: Vec<(String, &str)> = vec![
        (GOOD.replace("0123456789abcdef0123456789abcdef-x", "too-short"), "session.cookie_secret"),
        (GOOD.replace("https://app.example.com", "not a url"), "server.public_url"),
        (GOOD.replace("https://app.example.com", "ftp://app.example.com"), "server.public_url"),
        (GOOD.replace("127.0.0.1:0", "localhost:abc"), "server.listen"),
        (format!("{GOOD}\n[upstream]\nurl = \"::nope::\"\n"), "upstream.url"),
        (format!("{GOOD}\n[upstream]\nurl = \"https://x.internal\"\n"), "upstream.url"),
        (format!("{GOOD}\n[wechat]\napi_base = \"nope\"\n"), "wechat.api_base"),
        (
            GOOD.replace("[server]", "[server]\ntls_cert = \"/etc/hostname\""),
            "server.tls_key",
        ),
        (
            GOOD.replace("[server]", "[server]\ntls_key = \"/etc/hostname\""),
            "server.tls_cert",
        ),
        (
            GOOD.replace("[server]", "[server]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\""),
            "server.tls_cert",
        ),
        (
            GOOD.replace("[server]", "[server]\ntls_cert = \"/etc/hostname\"\ntls_key = \"/etc/hostname\""),
            "server.tls_cert",
        ),
        (
            GOOD.replace("[wechat.website]\nappid = \"wx1000000000000001\"\nsecret = \"website-secret-value-1234\"\n", ""),
            "no WeChat app configured",
        ),
        (GOOD.replace("secret = \"website-secret-value-1234\"", "secret = \"\""), "wechat.website.secret"),
        (format!("{GOOD}\n[access]\nbogus_key = 1\n"), "bogus_key"),
        (format!("{GOOD}\nsurprise = true\n"), "surprise"),
        (GOOD.replace("[server]", "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]"), "server.trusted_proxies[0]"),
        (GOOD.replace("[session]", "[session]\nstore = \"etcd\""), "session.store"),
        (GOOD.replace("[session]", "[session]\nstore = \"redis\""), "session.redis_url"),
        (
            GOOD.replace("[wechat.website]", "[wechat.official_account]\nappid = \"wx2\"\nsecret = \"s\"\nscope = \"snsapi_all\"\n[wechat.website]"),
            "wechat.official_account.scope",
        ),
        (GOOD.replace("[server]", "[server]\nprefix = \"no-slash\""), "server.prefix"),
        (format!("{GOOD}\n[verification]\nfiles = {{ \"../etc/passwd\" = \"x\" }}\n"), "verification.files"),
        (format!("{GOOD}\n[verification]\ndir = \"/nonexistent-dir\"\n"), "verification.dir"),
        (
            GOOD.replace("0123456789abcdef0123456789abcdef-x", "x").replace("[session]", "[session]\ncookie_secret_file = \"/nonexistent\""),
            "session.cookie_secret",
        ),
        ("this is [not toml".to_string(), "TOML"),
    ];
    for (toml, key) in cases {
        let (ok, out, err) = check(&toml);
        assert!(!ok, "should fail for {key}: {out}");
        assert!(err.contains(key), "error for {key} does not name it: {err}");
        assert!(
            !err.contains("website-secret-value-1234"),
            "secret leaked: {err}"
        );
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let out = Command::new(bin())
        .args(["check", "--config", "/nonexistent/wxgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wxgate.toml"));
}

#[test]
fn check_without_a_config_file_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("check")
        .current_dir(dir.path())
        .env_remove("WXGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no config file found"), "{err}");
    assert!(err.contains("$WXGATE_CONFIG is not set"), "{err}");
    assert!(err.contains("wxgate.toml does not exist"), "{err}");
    assert!(err.contains("--config"), "{err}");
    // `run` says the same.
    let out = Command::new(bin())
        .arg("run")
        .current_dir(dir.path())
        .env_remove("WXGATE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no config file found"), "{err}");
}

#[test]
fn dev_and_mock_wechat_refuse_config() {
    for cmd in [["dev", "--config"], ["mock-wechat", "--config"]] {
        let out = Command::new(bin())
            .args(cmd)
            .arg("wxgate.toml")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--config is for `run` and `check`"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn environment_overrides_and_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("cookie_secret");
    std::fs::write(&secret_path, "  from-a-file-0123456789abcdef0123456789\n").unwrap();
    let toml = GOOD.replace("cookie_secret = \"0123456789abcdef0123456789abcdef-x\"", "");
    // No cookie_secret in the file: the environment provides it.
    let (ok, _, err) = check_with(
        &toml,
        &[(
            "WXGATE_SESSION__COOKIE_SECRET",
            "from-env-0123456789abcdef0123456789ab",
        )],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = check_with(
        &toml,
        &[(
            "WXGATE_SESSION__COOKIE_SECRET_FILE",
            secret_path.to_str().unwrap(),
        )],
    );
    assert!(ok, "{err}");
    // Nested app keys and plain values.
    let (ok, out, err) = check_with(
        GOOD,
        &[
            ("WXGATE_WECHAT__WEBSITE__APPID", "wxfromenv"),
            ("WXGATE_UPSTREAM__TIMEOUT_SECS", "7"),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("appid = \"wxfromenv\"") && out.contains("timeout_secs = 7"),
        "{out}"
    );
    // Env errors name the key too.
    let (ok, _, err) = check_with(GOOD, &[("WXGATE_SESSION__COOKIE_SECRET", "short")]);
    assert!(!ok && err.contains("session.cookie_secret"), "{err}");
    let (ok, _, err) = check_with(GOOD, &[("WXGATE_SERVER__NO_SUCH_KEY", "1")]);
    assert!(!ok && err.contains("no_such_key"), "{err}");
    // Both a secret and its file: refused.
    let (ok, _, err) = check_with(
        GOOD,
        &[(
            "WXGATE_SESSION__COOKIE_SECRET_FILE",
            secret_path.to_str().unwrap(),
        )],
    );
    assert!(!ok && err.contains("session.cookie_secret"), "{err}");
}

/// Environment values are text: an all-digit WeCom agent id or name keeps its form (not made
/// a number, not stripped of leading zeros), while number, boolean and list keys still read
/// theirs; an empty path is no path.
#[test]
fn environment_values_keep_their_text() {
    let (ok, out, err) = check_with(
        GOOD,
        &[
            ("WXGATE_WECOM__CORP_ID", "ww0123456789abcdef"),
            ("WXGATE_WECOM__AGENT_ID", "1000002"),
            ("WXGATE_WECOM__SECRET", "wecom-secret-value-1234"),
            ("WXGATE_WECOM__ALLOW_NON_MEMBERS", "true"),
            ("WXGATE_SESSION__COOKIE_NAME", "0042"),
            ("WXGATE_SERVER__IDLE_TIMEOUT_MS", " 5000 "),
            ("WXGATE_ACCESS__PUBLIC_PATHS", "[\"/static/\", \"/img/\"]"),
            ("WXGATE_HEADERS__SIGN_SECRET", "\"quoted-secret-value-123\""),
            ("WXGATE_SERVER__TLS_CERT", ""),
            ("WXGATE_SERVER__TLS_KEY", ""),
        ],
    );
    assert!(ok, "{err}");
    for want in [
        "agent_id = \"1000002\"",
        "allow_non_members = true",
        "cookie_name = \"0042\"",
        "idle_timeout_ms = 5000",
        "public_paths = [\n    \"/static/\",\n    \"/img/\",\n]",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(!out.contains("tls_cert"), "an empty path is no path: {out}");
    // A number key given something else: refused, by name.
    let (ok, _, err) = check_with(GOOD, &[("WXGATE_SERVER__IDLE_TIMEOUT_MS", "soon")]);
    assert!(!ok && err.contains("server.idle_timeout_ms"), "{err}");
    // In the file, the agent id as WeCom's console shows it (a number) is taken too, and
    // `tls_cert = ""` / `tls_key = ""` mean plain HTTP, as left out.
    let toml = format!(
        "{GOOD}[wecom]\ncorp_id = \"ww0123456789abcdef\"\nagent_id = 1000002\nsecret = \"wecom-secret-value-1234\"\n"
    )
    .replace("[server]\n", "[server]\ntls_cert = \"\"\ntls_key = \"\"\n");
    let (ok, out, err) = check_with(&toml, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("agent_id = \"1000002\""), "{out}");
    assert!(!out.contains("tls_cert"), "{out}");
}

/// A config error names the key and where it is, never a secret's value: not the line of a
/// TOML syntax error, not a secret of the wrong type.
#[test]
fn config_errors_do_not_repeat_secrets() {
    let bad_escape = GOOD.replace(
        "secret = \"website-secret-value-1234\"",
        "secret = \"website-s3cr3t-\\q-1234\"",
    );
    let (ok, _, err) = check_with(&bad_escape, &[]);
    assert!(!ok);
    assert!(err.contains("line 7"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    let number = GOOD.replace(
        "cookie_secret = \"0123456789abcdef0123456789abcdef-x\"",
        "cookie_secret = 987654321987654321",
    );
    let (ok, _, err) = check_with(&number, &[]);
    assert!(!ok && err.contains("session.cookie_secret"), "{err}");
    assert!(!err.contains("987654321"), "{err}");
}

#[tokio::test]
async fn sigterm_drains_in_flight_request() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("timeout_secs = 2", "timeout_secs = 10");
    std::fs::write(&cfg, toml).unwrap();
    let mut child = spawn_run(&cfg, &[("RUST_LOG", "info")]);
    let url = format!("http://{}/slow?ms=1500", child.addr);
    let inflight = tokio::spawn(async move {
        send(&client(), http::Request::get(url).body(empty()).unwrap()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let r = inflight.await.unwrap();
    assert_eq!(r.status, http::StatusCode::OK);
    assert_eq!(r.text(), "slow done");
    let t = Instant::now();
    loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = child.log.lock().unwrap().clone();
    assert!(
        log.contains("signal received") && log.contains("draining"),
        "{log}"
    );
    // Once per process, not once per worker; and the last word says it stopped.
    assert_eq!(log.matches("draining").count(), 1, "{log}");
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(last.contains("wxgate stopped"), "last line: {last}\n{log}");
}

#[tokio::test]
async fn logs_one_line_per_request_json_and_no_secrets() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let toml = full_config(up.addr, &mock.url(), "[log]\nformat = \"json\"\n");
    // The public_url must match the port the child binds: use a fixed free port.
    let port = closed_port().await.port();
    let toml = toml
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "public_url = \"http://127.0.0.1\"",
            &format!("public_url = \"http://127.0.0.1:{port}\""),
        );
    std::fs::write(&cfg, &toml).unwrap();
    let child = spawn_run(&cfg, &[("RUST_LOG", "debug")]);

    let gw = Gateway {
        addr: child.addr,
        running: None,
    };
    let env = Env { up, mock, gw };
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/after?token=abc", "alice").await;
    let code = cb
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let state = state_of(&cb);
    let r = b.nav(&cb).await;
    assert_eq!(r.status, http::StatusCode::FOUND);
    let session = b.cookie("_wxgate").unwrap();
    let r = fetch(&env, &mut b, "/after?token=abc").await;
    assert_eq!(r.status, http::StatusCode::OK);
    // A failing code exchange logs too, without the code.
    let (_, cb2) = to_callback(&env, &mut b, "/", "alice").await;
    let code2 = cb2
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let _ = b.nav(&cb2.replace(&code2, &code)).await;
    // App login: the token and the mini program's session_key must not be logged either.
    let minted = send(
        &client(),
        http::Request::post(format!(
            "{}/mock/code?appid={}&user=bob",
            env.mock.url(),
            fixtures::MINI_APPID
        ))
        .body(empty())
        .unwrap(),
    )
    .await
    .json();
    let body = serde_json::json!({"code": minted["code"], "encryptedData": minted["encryptedData"], "iv": minted["iv"]});
    let r = send(
        &client(),
        http::Request::post(env.gw.url("/_wxgate/miniprogram/login"))
            .header("content-type", "application/json")
            .body(common::body(body.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, http::StatusCode::OK, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    // A callback without state: logged with its reason.
    let r = b.nav(&env.gw.url("/_wxgate/callback?code=zzz")).await;
    assert_eq!(r.status, http::StatusCode::BAD_REQUEST);
    // Logout (an audit line too).
    let r = b.nav(&env.gw.url("/_wxgate/logout")).await;
    assert_eq!(r.status, http::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(env);

    let log = child.log.lock().unwrap().clone();
    for secret in [
        fixtures::WEBSITE_SECRET,
        fixtures::MINI_SECRET,
        SECRET,
        code.as_str(),
        code2.as_str(),
        state.as_str(),
        session.as_str(),
        token.as_str(),
        "token=abc",
    ] {
        assert!(
            !log.contains(secret),
            "log contains a secret ({secret}):\n{log}"
        );
    }
    // No long random-looking runs at all (access tokens, refresh tokens, session keys).
    for word in log.split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/' && c != '=')
    {
        assert!(
            word.len() < 32,
            "suspicious token-like string in log: {word}"
        );
    }
    // One JSON access line per request with method, path (no query), status, latency, upstream time.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("status").is_some() && v.get("method").is_some())
        .collect();
    let proxied = access
        .iter()
        .find(|v| v["path"] == "/after")
        .expect("access line for /after");
    assert_eq!(proxied["status"], 200);
    assert!(
        proxied["latency_ms"].is_number() && proxied["upstream_ms"].is_number(),
        "{proxied}"
    );
    assert!(access
        .iter()
        .any(|v| v["path"] == "/_wxgate/callback" && v["status"] == 302));

    // Callback failures say why (never the code or state).
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "login failed" && v["reason"] == "invalid_login"),
        "no reason for the stateless callback:\n{log}"
    );
    // wxgate::audit: one line per login, failure and logout, with every field.
    let audit: Vec<&serde_json::Value> = lines.iter().filter(|v| v["message"] == "audit").collect();
    let fields = [
        "event",
        "client_ip",
        "source",
        "appid",
        "openid",
        "unionid",
        "wecom_userid",
        "outcome",
        "reason",
    ];
    for a in &audit {
        for f in fields {
            assert!(a.get(f).is_some(), "audit line without {f}: {a}");
        }
        assert!(a.get("timestamp").is_some(), "{a}");
        assert_eq!(a["client_ip"], "127.0.0.1", "{a}");
        assert_eq!(a["wecom_userid"], "", "{a}");
    }
    let alice = fixtures::user("alice").unwrap();
    let website_login = audit
        .iter()
        .find(|a| a["event"] == "login" && a["outcome"] == "ok" && a["source"] == "website")
        .expect("audit line of the website login");
    assert_eq!(website_login["appid"], fixtures::WEBSITE_APPID);
    assert_eq!(
        website_login["openid"],
        fixtures::openid(fixtures::WEBSITE_APPID, "alice")
    );
    assert_eq!(website_login["unionid"], alice.unionid.unwrap());
    assert!(audit.iter().any(|a| a["event"] == "login"
        && a["outcome"] == "ok"
        && a["source"] == "mini_program"
        && a["appid"] == fixtures::MINI_APPID));
    assert_eq!(
        audit
            .iter()
            .filter(|a| a["event"] == "login"
                && a["outcome"] == "failed"
                && a["reason"] == "invalid_code"
                && a["source"] == "website")
            .count(),
        1,
        "the reused code is audited once as a failed login:\n{log}"
    );
    let logout = audit
        .iter()
        .find(|a| a["event"] == "logout")
        .expect("audit line of the logout");
    assert_eq!(logout["openid"], website_login["openid"]);
    assert_eq!(logout["outcome"], "ok");
}

#[tokio::test]
async fn mock_wechat_command_serves() {
    let port = closed_port().await.port();
    let mut child = Command::new(bin())
        .args(["mock-wechat", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let reply = loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let url = format!(
                "http://127.0.0.1:{port}/sns/oauth2/access_token?appid={}&secret=wrong&code=x&grant_type=authorization_code",
                fixtures::WEBSITE_APPID
            );
            break send(&client(), http::Request::get(url).body(empty()).unwrap()).await;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "mock did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    // It said what to put in a config: its URL, every app's appid and secret, the test users.
    let banner = String::from_utf8_lossy(&out.stdout);
    assert!(
        banner.contains(&format!("api_base = \"http://127.0.0.1:{port}\"")),
        "{banner}"
    );
    for s in [
        fixtures::WEBSITE_APPID,
        fixtures::WEBSITE_SECRET,
        fixtures::OFFICIAL_SECRET,
        fixtures::MOBILE_SECRET,
        fixtures::MINI_SECRET,
        "alice",
        "bob",
        "carol",
    ] {
        assert!(banner.contains(s), "{s} not in:\n{banner}");
    }
    // Like WeChat: an error is HTTP 200 with errcode, as text/plain.
    assert_eq!(reply.status, http::StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(reply.json()["errcode"], 40125);
}

/// The certificate a new TLS connection to `addr` gets.
async fn served_cert(addr: std::net::SocketAddr) -> Vec<u8> {
    let (s, _) = tls_connect(addr, &[b"http/1.1"]).await;
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn sighup_reloads_tls_files() {
    let up = start_upstream().await;
    let (dir, cert, key) = test_cert();
    let cfg = dir.path().join("wxgate.toml");
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace(
        "[upstream]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n\n[upstream]",
            cert.display(),
            key.display()
        ),
    );
    std::fs::write(&cfg, toml).unwrap();
    let child = spawn_run(&cfg, &[("RUST_LOG", "info")]);
    let a = served_cert(child.addr).await;
    let b = rcgen::generate_simple_self_signed(vec!["b.example".to_string()]).unwrap();
    std::fs::write(&cert, b.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    let pid = child.child.id().to_string();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success())
    };
    hup();
    child.wait_log("SIGHUP: TLS files reloaded", 1).await;
    let seen = served_cert(child.addr).await;
    assert_ne!(seen, a);
    assert_eq!(seen, b.cert.der().to_vec());
    // An invalid key: one ERROR naming the file, the process stays up with B.
    std::fs::write(&key, "not a key").unwrap();
    hup();
    child.wait_log("TLS reload failed", 1).await;
    let log = child.log.lock().unwrap().clone();
    assert!(
        log.contains("server.tls_key") && log.contains("ERROR"),
        "{log}"
    );
    assert_eq!(served_cert(child.addr).await, b.cert.der().to_vec());
}

#[test]
fn config_example_lists_every_key() {
    // That the example, its placeholder secrets filled in, passes `check` is
    // tests/reference_doc.rs's `the_example_with_its_placeholders_replaced_passes_check`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // And every key it documents is one the gateway knows (the file is the full list).
    let text = std::fs::read_to_string(root.join("config.example.toml")).unwrap();
    for key in [
        "listen",
        "public_url",
        "tls_cert",
        "tls_key",
        "prefix",
        "trusted_proxies",
        "url",
        "connect_timeout_ms",
        "timeout_secs",
        "api_base",
        "open_base",
        "timeout_ms",
        "appid",
        "secret",
        "scope",
        "cookie_name",
        "cookie_secret",
        "cookie_domain",
        "ttl_secs",
        "idle_secs",
        "store",
        "redis_url",
        "max_sessions",
        "public_paths",
        "allow_unionids",
        "allow_openids",
        "require_unionid",
        "redirect_hosts",
        "sign_secret",
        "dir",
        "files",
    ] {
        assert!(
            text.contains(&format!("\n{key} = ")),
            "config.example.toml lacks {key}"
        );
    }
}

#[tokio::test]
async fn refusal_is_logged_with_reason_and_identifiers() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let only = fixtures::openid(fixtures::WEBSITE_APPID, "alice");
    let toml = full_config(
        up.addr,
        &mock.url(),
        &format!("[access]\nallow_openids = [\"{only}\"]\n"),
    );
    let port = closed_port().await.port();
    let toml = toml
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "public_url = \"http://127.0.0.1\"",
            &format!("public_url = \"http://127.0.0.1:{port}\""),
        );
    std::fs::write(&cfg, &toml).unwrap();
    let child = spawn_run(&cfg, &[("RUST_LOG", "info")]);
    let gw = Gateway {
        addr: child.addr,
        running: None,
    };
    let env = Env { up, mock, gw };
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "bob").await;
    assert_eq!(b.nav(&cb).await.status, http::StatusCode::FORBIDDEN);
    child.wait_log("refused by the access rules", 1).await;
    child.wait_log("audit", 1).await;
    let log = child.log();
    let bob = fixtures::openid(fixtures::WEBSITE_APPID, "bob");
    let bob_union = fixtures::user("bob").unwrap().unionid.unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("refused by the access rules"))
        .unwrap();
    assert!(
        line.contains("INFO")
            && line.contains("reason=\"not_allowed\"")
            && line.contains(&bob)
            && line.contains(bob_union),
        "{line}"
    );
    let audit = log
        .lines()
        .find(|l| l.contains(" audit ") || l.ends_with(" audit") || l.contains("audit event"))
        .unwrap_or_else(|| panic!("no audit line:\n{log}"));
    for want in [
        "event=\"refusal\"",
        "client_ip=127.0.0.1",
        "source=\"website\"",
        &format!("appid=\"{}\"", fixtures::WEBSITE_APPID),
        &format!("openid={bob}"),
        "outcome=\"forbidden\"",
        "reason=\"not_allowed\"",
    ] {
        assert!(audit.contains(want), "{want} not in {audit}");
    }
}
