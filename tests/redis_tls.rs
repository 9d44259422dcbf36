//! `rediss://`: Redis over TLS, verified. The test makes its own CA and a server certificate
//! for 127.0.0.1 (rcgen), runs Debian's redis-server with `--tls-port`, and the gateway trusts
//! the CA the way a deployment would: through the system trust store, here pointed at the CA
//! with `SSL_CERT_FILE` (read by rustls-native-certs, which the redis crate's rustls support
//! uses). A server whose certificate the trust store does not vouch for is refused.
//!
//! One test in this binary: it sets `SSL_CERT_FILE` for the whole process.

mod common;
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use redis_support::start_tls_redis;
use wxgate::session::{
    Backend, NewSession, RedisDeployment, Session, SessionId, SessionStore, SessionStoreSettings,
    Store,
};

/// A CA (its PEM) and a server certificate + key it signed for 127.0.0.1 and localhost.
fn ca_and_server() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "wxgate test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    (ca_cert.pem(), server.pem(), key.serialize_pem())
}

fn settings(url: &str) -> SessionStoreSettings {
    SessionStoreSettings {
        ttl: Duration::from_secs(3600),
        idle: Duration::from_secs(3600),
        capacity: 100,
        backend: Backend::Redis {
            deployment: RedisDeployment::Server { url: url.into() },
            cache: Duration::from_secs(5),
        },
        snapshot: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_verified_against_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server();
    let (other_ca, _, _) = ca_and_server();
    let p = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (ca, other_ca) = (p("ca.pem", &ca), p("other-ca.pem", &other_ca));
    let (cert, key) = (p("server.pem", &cert), p("server.key", &key));
    let redis = start_tls_redis(&cert, &key).await;
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);

    // Plain redis:// to a TLS port: no store.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let plain = settings(&format!("redis://127.0.0.1:{}/0", redis.port));
    assert!(
        Store::connect(&plain).await.is_err(),
        "plain text to a TLS port"
    );

    // A trust store without our CA: the server's certificate is refused.
    std::env::set_var("SSL_CERT_FILE", &other_ca);
    let err = match Store::connect(&settings(&url)).await {
        Ok(_) => panic!("connected to a server no trusted CA vouches for"),
        Err(e) => e.to_string(),
    };
    println!("untrusted server: {err}");

    // Trusting the CA: the store works over TLS, revocations included.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let a = Store::connect(&settings(&url)).await.expect("TLS store");
    let b = Store::connect(&settings(&url)).await.expect("TLS store");
    let id = SessionId::random();
    let s = Session::new(&NewSession {
        openid: "o",
        unionid: None,
        appid: "wx",
        origin: wxgate::providers::wechat::Source::Website.into(),
        nickname: "",
        avatar: "",
        expires_at: u64::MAX,
    });
    a.insert(id, s).await.unwrap();
    assert!(b.get(&id, 1).await.unwrap().is_some());
    a.remove(&id).await.unwrap();
    let t = Instant::now();
    while b.get(&id, 1).await.unwrap().is_some() {
        assert!(t.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // And a gateway on it: login, request, logout.
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = full_config(up.addr, &mock.url(), "").replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!("cookie_secret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"{url}\"\n"),
    );
    let gw = start_gateway(&toml).await;
    let env = Env { up, mock, gw };
    let mut br = Browser::pc();
    assert_eq!(login(&env, &mut br, "/x", "alice").await, "/x");
    let cookie = br.cookie_header();
    assert_eq!(
        api_get(env.gw.url("/x"), &cookie).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api_get(env.gw.url("/_wxgate/logout"), &cookie).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api_get(env.gw.url("/x"), &cookie).await.status,
        StatusCode::UNAUTHORIZED
    );
    env.gw.stop().await;
}
