//! A 3-master Redis Cluster (`session.redis_cluster`), started by the test on loopback ports
//! (`redis-server --cluster-enabled yes`, `redis-cli --cluster create`): two gateway instances
//! on it; logins and lookups work on both, the session keys spread over the slots and nodes (no
//! hash tag pins them to one), and a logout on one instance reaches the other's cache within a
//! second (a classic PUBLISH reaches every node of the cluster).

mod common;
mod redis_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_support::{cmd, start_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_lookups_on_a_cluster_with_keys_over_all_nodes() {
    let cluster = start_cluster().await;
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let seeds = cluster
        .seeds()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = full_config(up.addr, &mock.url(), "").replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!(
            "cookie_secret = \"{SECRET}\"\nstore = \"redis\"\nredis_cluster = [{seeds}]\n\
             cache_ms = 5000\n"
        ),
    );
    let a = start_gateway(&toml).await;
    let b = start_gateway(&toml).await;
    let env = Env { up, mock, gw: a };

    let mut cookies = Vec::new();
    for i in 0..40 {
        let mut br = Browser::pc();
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(login(&env, &mut br, "/x", user).await, "/x");
        cookies.push(br.cookie_header());
    }
    for c in &cookies {
        assert_eq!(api_get(env.gw.url("/x"), c).await.status, StatusCode::OK);
        assert_eq!(
            api_get(b.url("/x"), c).await.status,
            StatusCode::OK,
            "instance B"
        );
    }

    // Where the sessions landed: every node holds some, over many slots.
    let mut per_node = BTreeMap::new();
    let mut slots = BTreeSet::new();
    for n in &cluster.nodes {
        let keys: Vec<String> = cmd(n.port, &["KEYS", "wxgate:s:*"]).await.unwrap();
        for k in &keys {
            assert!(!k.contains('{'), "no hash tag: {k}");
            let slot: i64 = cmd(n.port, &["CLUSTER", "KEYSLOT", k]).await.unwrap();
            slots.insert(slot);
        }
        per_node.insert(n.port, keys.len());
    }
    println!(
        "session keys per node: {per_node:?}; {} distinct slots",
        slots.len()
    );
    assert_eq!(per_node.values().sum::<usize>(), 40, "{per_node:?}");
    assert!(per_node.values().all(|&n| n > 0), "{per_node:?}");
    assert!(slots.len() >= 35, "{} slots for 40 keys", slots.len());

    // Logout on A: B (which has the session cached) refuses it within a second.
    let r = api_get(env.gw.url("/_wxgate/logout"), &cookies[0]).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = Instant::now();
    while api_get(b.url("/x"), &cookies[0]).await.status != StatusCode::UNAUTHORIZED {
        assert!(t.elapsed() < Duration::from_secs(1), "B still serves it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("logout on A refused by B after {:?}", t.elapsed());
    assert_eq!(
        api_get(b.url("/x"), &cookies[1]).await.status,
        StatusCode::OK
    );
    env.gw.stop().await;
    b.stop().await;
}
