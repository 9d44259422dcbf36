//! Several gateway instances on one Redis, behind a real nginx balancing round-robin: a login
//! through the balancer works whichever instance each step lands on; requests spread over all
//! three; a logout on one instance reaches the others' session caches (`cache_ms = 5000`) within
//! a second.

mod common;
#[path = "deploy_support/mod.rs"]
mod deploy_support;
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_support::start_redis;

/// How many GETEX (session reads) Redis has served.
async fn getex_calls(port: u16) -> u64 {
    let info: String = redis_support::cmd(port, &["INFO", "commandstats"])
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_getex:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_share_logins_and_revocations() {
    let redis = start_redis().await;
    let mock = start_mock(Default::default()).await;
    // One echo upstream per instance: its hit count is what that instance proxied.
    let mut ups = Vec::new();
    for _ in 0..3 {
        ups.push(start_upstream().await);
    }
    let gw_ports: Vec<u16> = (0..3).map(|_| deploy_support::free_port()).collect();
    let nginx = deploy_support::Nginx::start(1, |p| {
        format!(
            "upstream wxgates {{\n\
             \x20   server 127.0.0.1:{};\n    server 127.0.0.1:{};\n    server 127.0.0.1:{};\n\
             \x20   keepalive 8;\n}}\n\
             server {{\n    listen 127.0.0.1:{};\n    location / {{\n\
             \x20       proxy_pass http://wxgates;\n        proxy_http_version 1.1;\n\
             \x20       proxy_set_header Connection \"\";\n\
             \x20       proxy_set_header Host $http_host;\n    }}\n}}\n",
            gw_ports[0], gw_ports[1], gw_ports[2], p[0]
        )
    })
    .await;
    let lb = nginx.ports[0];

    let mut gws = Vec::new();
    for (i, up) in ups.iter().enumerate() {
        let toml = full_config(up.addr, &mock.url(), "")
            .replace(
                "public_url = \"http://127.0.0.1\"",
                &format!("public_url = \"http://127.0.0.1:{lb}\""),
            )
            .replace(
                &format!("cookie_secret = \"{SECRET}\""),
                &format!(
                    "cookie_secret = \"{SECRET}\"\nstore = \"redis\"\n\
                     redis_url = \"redis://127.0.0.1:{}/0\"\ncache_ms = 5000\n",
                    redis.port
                ),
            );
        let settings = wxgate::config::Config::from_toml(&toml).expect("test config");
        let l = tokio::net::TcpListener::bind(("127.0.0.1", gw_ports[i]))
            .await
            .expect("the instance's port is still free");
        let running = wxgate::server::serve_on(l, settings)
            .await
            .expect("instance starts");
        gws.push(Gateway {
            addr: format!("127.0.0.1:{}", gw_ports[i]).parse().unwrap(),
            running: Some(running),
        });
    }
    let mut ups = ups.into_iter();
    let env = Env {
        up: ups.next().unwrap(),
        mock,
        gw: Gateway {
            addr: format!("127.0.0.1:{lb}").parse().unwrap(),
            running: None,
        },
    };
    let others: Vec<_> = ups.collect();
    let hits = || [env.up.hits(), others[0].hits(), others[1].hits()];

    // Log in through the balancer: /login, the callback and the redirect each land on
    // whichever instance nginx picks.
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/x", "alice").await, "/x");
    let cookie = b.cookie_header();

    let before = hits();
    let reads_before = getex_calls(redis.port).await;
    for i in 0..100 {
        let r = api_get(env.gw.url(&format!("/x?{i}")), &cookie).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
    }
    let served: Vec<usize> = hits().iter().zip(before).map(|(a, b)| a - b).collect();
    println!("requests served per instance: {served:?}");
    assert_eq!(served.iter().sum::<usize>(), 100, "{served:?}");
    assert!(
        served.iter().all(|&n| n >= 10),
        "round-robin spreads over all three: {served:?}"
    );

    // The hot path asks Redis only when an instance's cache misses: about once per instance,
    // not once per request.
    let reads = getex_calls(redis.port).await - reads_before;
    println!("Redis reads (GETEX) for 100 requests: {reads}");
    assert!(reads <= 6, "{reads} Redis reads for 100 requests");

    // Every instance has the session cached now. Log out through instance A: B and C refuse the
    // cookie within a second (well before their cache entries would expire).
    let r = api_get(gws[0].url("/_wxgate/logout"), &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let t = Instant::now();
    let mut refused = [None, None];
    while refused.iter().any(Option::is_none) {
        for (i, gw) in gws[1..].iter().enumerate() {
            if refused[i].is_none() {
                let r = api_get(gw.url("/x"), &cookie).await;
                match r.status {
                    StatusCode::UNAUTHORIZED => refused[i] = Some(t.elapsed()),
                    StatusCode::OK => {}
                    s => panic!("instance {}: {s} {}", i + 1, r.text()),
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "still served a second after logout: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "logout on A: refused by B after {:?}, by C after {:?}",
        refused[0].unwrap(),
        refused[1].unwrap()
    );
    // And through the balancer.
    for _ in 0..6 {
        let r = api_get(env.gw.url("/x"), &cookie).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    for gw in gws {
        gw.stop().await;
    }
    drop(nginx);
    drop(redis);
}
