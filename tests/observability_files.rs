//! The Grafana dashboard and the Prometheus alert rules shipped in deploy/ use only metrics the
//! gateway really exports (a renamed metric would leave an empty panel or an alert that never
//! fires), and the metrics they rely on are really counted.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `wxgate_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("wxgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The sample names a `/metrics` answer can hold, from its `# TYPE` lines (families with no
/// sample yet are declared too).
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        let mut w = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (w.next(), w.next(), w.next(), w.next())
        {
            match kind {
                "counter" => {
                    out.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        out.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

fn expressions_of_dashboard() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/wxgate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(d["uid"], "wxgate");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{}", panels.len());
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(!p["title"].as_str().unwrap().is_empty());
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

fn expressions_of_alerts() -> Vec<String> {
    let y: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/wxgate-alerts.yml"))
            .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    let mut alerts = BTreeSet::new();
    for g in y["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r["alert"].as_str().unwrap();
            assert!(alerts.insert(name.to_string()), "duplicate alert {name}");
            assert!(r["for"].as_str().is_some(), "{name}: no `for`");
            assert!(
                r["labels"]["severity"].as_str().is_some(),
                "{name}: no severity"
            );
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{name}: no summary"
            );
            exprs.push(r["expr"].as_str().unwrap().to_string());
        }
    }
    // What an operator pages on: the gateway gone, the store gone, 5xx, WeChat failing, logins failing.
    for a in [
        "WxgateDown",
        "WxgateSessionStoreDown",
        "WxgateHigh5xxRate",
        "WxgateWeChatErrors",
        "WxgateLoginFailures",
    ] {
        assert!(alerts.contains(a), "missing alert {a}: {alerts:?}");
    }
    exprs
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    // A made-up code: the client's mistake (WeChat answers 40029), not WeChat failing.
    let r = send(
        &client(),
        hyper::Request::post(env.gw.url("/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(common::body(r#"{"code":"not-a-code-from-wechat"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let metrics = env.gw.metrics().await;
    let have = exported(&metrics);
    for (what, exprs) in [
        ("dashboard", expressions_of_dashboard()),
        ("alerts", expressions_of_alerts()),
    ] {
        let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        assert!(!used.is_empty());
        let unknown: Vec<_> = used.difference(&have).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics the gateway does not export: {unknown:?}\nexported: {have:?}"
        );
    }
    // The WeChat API metrics are counted by endpoint: the login and the made-up code.
    assert!(
        metrics.contains("wxgate_wechat_api_seconds_count{endpoint=\"sns/oauth2/access_token\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wxgate_logins_total{source=\"website\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    env.gw.stop().await;
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names("sum(rate(wxgate_requests_total{class=\"5xx\"}[5m])) / wxgate_x"),
        ["wxgate_requests_total", "wxgate_x"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
