//! Issue 11 item 1 against a real Java upstream: Debian's tomcat10 (installed by
//! scripts/install-test-deps.sh), started by this test as the current user on a loopback port,
//! with a throw-away CATALINA_BASE. Tomcat cuts `;parameters` from each segment before it
//! resolves dot segments, so `/public/..;/private/secret.jsp` is `/private/secret.jsp` to it:
//! the test first shows that directly, then that through the gateway (`public_paths =
//! ["/public/"]`) every such form is a 400 and never Tomcat's secret, while public pages,
//! logins and `;jsessionid=` URLs keep working.
//!
//! Run: `cargo test --test tomcat`

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wxgate::session::NewSession;

const CATALINA_HOME: &str = "/usr/share/tomcat10";
const SECRET_MARK: &str = "TOMCAT-SECRET-42";

const SERVER_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="PORT" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"#;

/// Says which servlet path Tomcat resolved and which session id the URL carried.
const PUBLIC_JSP: &str = r#"<%@ page contentType="text/plain" session="false" %>PUBLIC PAGE path=<%= request.getServletPath() %> requested-session=<%= request.getRequestedSessionId() %>
"#;
const SECRET_JSP: &str = r#"<%@ page contentType="text/plain" session="false" %>TOMCAT-SECRET-42 path=<%= request.getServletPath() %> user=<%= request.getHeader("X-WeChat-OpenId") %>
"#;

/// A Tomcat of our own, killed on drop.
struct Tomcat {
    child: Child,
    addr: SocketAddr,
    base: tempfile::TempDir,
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        // `catalina.sh run` execs java: this is the JVM itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tomcat {
    fn log(&self) -> String {
        std::fs::read_to_string(self.base.path().join("catalina.out")).unwrap_or_default()
    }

    async fn start() -> Tomcat {
        let catalina = Path::new(CATALINA_HOME).join("bin/catalina.sh");
        assert!(
            catalina.is_file(),
            "{} is missing: run scripts/install-test-deps.sh (Debian package tomcat10)",
            catalina.display()
        );
        let port = closed_port().await.port();
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        for d in [
            "conf",
            "logs",
            "temp",
            "work",
            "webapps/ROOT/public",
            "webapps/ROOT/private",
        ] {
            std::fs::create_dir_all(b.join(d)).unwrap();
        }
        // The package's defaults: the default and JSP servlets (web.xml), class loaders.
        for f in ["web.xml", "catalina.properties"] {
            std::fs::copy(
                Path::new(CATALINA_HOME).join("etc").join(f),
                b.join("conf").join(f),
            )
            .unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
        std::fs::write(
            b.join("conf/server.xml"),
            SERVER_XML.replace("PORT", &port.to_string()),
        )
        .unwrap();
        let root = b.join("webapps/ROOT");
        std::fs::write(root.join("public/index.jsp"), PUBLIC_JSP).unwrap();
        std::fs::write(root.join("public/index.html"), "PUBLIC STATIC\n").unwrap();
        std::fs::write(root.join("private/secret.jsp"), SECRET_JSP).unwrap();
        std::fs::write(
            root.join("private/secret.txt"),
            format!("{SECRET_MARK} static\n"),
        )
        .unwrap();
        let out = std::fs::File::create(b.join("catalina.out")).unwrap();
        let child = Command::new(&catalina)
            .arg("run")
            .current_dir(b)
            .env("CATALINA_HOME", CATALINA_HOME)
            .env("CATALINA_BASE", b)
            .env("CATALINA_TMPDIR", b.join("temp"))
            .env(
                "JAVA_OPTS",
                "-Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.security.egd=file:/dev/./urandom",
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start catalina.sh");
        let mut tc = Tomcat {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            base,
        };
        // The connector opens once ROOT is deployed.
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(tc.addr).await.is_ok() {
                break;
            }
            if let Ok(Some(st)) = tc.child.try_wait() {
                panic!("Tomcat exited ({st}):\n{}", tc.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Tomcat did not open {} within 30 s:\n{}",
                tc.addr,
                tc.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tc
    }
}

struct Answer {
    status: u16,
    body: String,
}

/// One GET as raw HTTP/1 bytes (the target goes out exactly as written).
async fn get(addr: SocketAddr, target: &str, extra: &str) -> Answer {
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
    let out = raw(addr, req.as_bytes()).await;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Answer {
        status,
        body: body.to_string(),
    }
}

async fn session_cookie(gw: &Gateway) -> String {
    let app = &gw.running.as_ref().unwrap().app;
    let n = NewSession {
        nickname: "",
        ..website_session("oTomcatUser", None)
    };
    format!("Cookie: _wxgate={}\r\n", seed_session(app, &n).await)
}

/// The bypass forms: each is `/private/…` to Tomcat.
const BYPASSES: &[&str] = &[
    "/public/..;/private/secret.jsp",
    "/public/..;x=1/private/secret.jsp",
    "/public/.;/..;/private/secret.jsp",
    "/public/..;jsessionid=ABC/private/secret.jsp",
    "/public/%2e%2e;/private/secret.jsp",
    "/public/%2e%2e/private/secret.jsp",
    "/public/%2E%2E;x/private/secret.jsp",
    "/public/.%2e;/private/secret.jsp",
    "/public/%2e;/..;/private/secret.jsp",
    "/public;x/..;/private/secret.jsp",
    "/public/..;/private/secret.txt",
    "/public/x/..;/..;/private/secret.txt",
];

#[tokio::test]
async fn tomcat_behind_the_gateway() {
    let tc = Tomcat::start().await;

    // Directly (no gateway): Tomcat does resolve the bypass forms to the secret, so the
    // assertions below would catch a gateway that forwards them.
    let direct = get(tc.addr, "/public/..;/private/secret.jsp", "").await;
    assert_eq!(direct.status, 200, "direct: {}\n{}", direct.body, tc.log());
    assert!(direct.body.contains(SECRET_MARK), "{}", direct.body);
    assert!(
        direct.body.contains("path=/private/secret.jsp"),
        "{}",
        direct.body
    );
    for target in [
        "/public/.;/..;/private/secret.jsp",
        "/public/..;/private/secret.txt",
    ] {
        let d = get(tc.addr, target, "").await;
        assert!(
            d.status == 200 && d.body.contains(SECRET_MARK),
            "direct {target}: {}",
            d.body
        );
    }

    let toml = config_toml(
        tc.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/public/\"]\n",
    );
    let gw = start_gateway(&toml).await;

    // Every bypass form: 400 bad_path from the gateway, never the secret; with or without
    // a session, and as a navigation too.
    let nav = "Accept: text/html\r\nSec-Fetch-Mode: navigate\r\n";
    let cookie = session_cookie(&gw).await;
    for target in BYPASSES {
        for extra in ["", nav, cookie.as_str()] {
            let a = get(gw.addr, target, extra).await;
            assert_eq!(a.status, 400, "{target} [{extra:?}]: {}", a.body);
            assert!(!a.body.contains(SECRET_MARK), "{target}: {}", a.body);
            if extra.is_empty() {
                assert!(a.body.contains("\"bad_path\""), "{target}: {}", a.body);
            }
        }
    }

    // Public pages work without login, `;jsessionid=` included: it reaches Tomcat unchanged.
    let a = get(gw.addr, "/public/index.jsp", "").await;
    assert_eq!(a.status, 200, "{}\n{}", a.body, tc.log());
    assert!(
        a.body
            .contains("PUBLIC PAGE path=/public/index.jsp requested-session=null"),
        "{}",
        a.body
    );
    let a = get(gw.addr, "/public/index.jsp;jsessionid=ABC123", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("path=/public/index.jsp requested-session=ABC123"),
        "{}",
        a.body
    );
    let a = get(gw.addr, "/public;jsessionid=XYZ9/index.jsp", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("path=/public/index.jsp requested-session=XYZ9"),
        "{}",
        a.body
    );
    let a = get(gw.addr, "/public/index.html;jsessionid=ABC123", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("PUBLIC STATIC"), "{}", a.body);

    // Protected paths need a login: 401 for API clients, 302 to login for navigations,
    // `;jsessionid=` or not; odd forms the gateway passes through are never public.
    for target in [
        "/private/secret.jsp",
        "/private/secret.jsp;jsessionid=ABC123",
        "/private;jsessionid=1/secret.jsp",
        "/public/%252e%252e/private/secret.jsp",
        "/public//private/secret.jsp",
        "/public/%2fprivate/secret.jsp",
    ] {
        let a = get(gw.addr, target, "").await;
        assert_eq!(a.status, 401, "{target}: {}", a.body);
        assert!(!a.body.contains(SECRET_MARK), "{target}: {}", a.body);
        let a = get(gw.addr, target, nav).await;
        assert_eq!(a.status, 302, "{target}: {}", a.body);
    }

    // With a session the protected servlet answers, `;jsessionid=` URLs included.
    let a = get(gw.addr, "/private/secret.jsp;jsessionid=ABC123", &cookie).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(SECRET_MARK), "{}", a.body);
    assert!(
        a.body.contains("user=oTomcatUser"),
        "identity reached Tomcat: {}",
        a.body
    );

    gw.stop().await;
    drop(tc);
}
