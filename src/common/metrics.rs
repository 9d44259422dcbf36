//! Prometheus metrics (prometheus-client), served at `{prefix}/metrics`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// What kind of request it was, for the request counter.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Route {
    Proxy,
    Public,
    Gateway,
    Verification,
    Unauthenticated,
}

impl Route {
    const ALL: [Route; 5] = [
        Route::Proxy,
        Route::Public,
        Route::Gateway,
        Route::Verification,
        Route::Unauthenticated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Public => "public",
            Route::Gateway => "gateway",
            Route::Verification => "verification",
            Route::Unauthenticated => "unauthenticated",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub class: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(code: u16) -> usize {
    (code / 100).clamp(1, 5) as usize - 1
}

/// Labels of the logins counter: `source` is the provider's name of its kind of login
/// (`website`, `mini_program`, ...), `outcome` what became of the attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub source: &'static str,
    pub outcome: &'static str,
}

/// Label of the revalidations counter: `valid`, `renewed` (refreshed), `revoked` (the session
/// ends) or `unknown` (the provider could not say; the session stays).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Labels of the WeChat API latency histogram: the API's path (`sns/oauth2/access_token`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub endpoint: &'static str,
}

/// Labels of the WeChat API error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub endpoint: &'static str,
    pub errcode: i64,
}

/// Upper bounds (seconds) of the WeChat API latency buckets (then +Inf): WeChat answers in tens
/// to hundreds of milliseconds, and `wechat.timeout_ms` is 5 s by default.
const API_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS.into_iter())
}

/// The WeChat (and WeCom) API call metrics, as a cheap handle the providers' HTTP clients keep:
/// latency by endpoint, errcode answers by endpoint and code. A default handle counts into
/// families no registry reads (unit tests of a client).
#[derive(Clone)]
pub struct ApiCalls {
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    errors: Family<ApiErrorLabels, Counter>,
}

impl Default for ApiCalls {
    fn default() -> Self {
        ApiCalls {
            latency: Family::new_with_constructor(api_histogram),
            errors: Family::default(),
        }
    }
}

impl std::fmt::Debug for ApiCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiCalls")
    }
}

impl ApiCalls {
    /// One call to `endpoint` (the API's path without the leading `/`) that took `took`;
    /// `errcode` when the answer carried one (0, success, is not an error). Calls that got no
    /// answer count only in the latency.
    pub fn observe(&self, endpoint: &'static str, took: Duration, errcode: Option<i64>) {
        self.latency
            .get_or_create(&ApiLabels { endpoint })
            .observe(took.as_secs_f64());
        if let Some(errcode) = errcode.filter(|c| *c != 0) {
            self.errors
                .get_or_create(&ApiErrorLabels { endpoint, errcode })
                .inc();
        }
    }
}

pub struct Metrics {
    registry: Registry,
    hot: Arc<HotPath>,
    pub logins: Family<LoginLabels, Counter>,
    pub sessions: Gauge,
    /// Re-checks of browser sessions' grants (`session.revalidate_secs`) by outcome.
    pub revalidations: Family<OutcomeLabels, Counter>,
    /// Login-endpoint requests refused by `access.login_rate_per_minute`.
    pub rate_limited: Counter,
    /// Session-store operations that failed (Redis unreachable or timing out). The store counts
    /// them itself; the `/metrics` answer copies its count in with [`Metrics::set_store_errors`].
    store_errors: Counter,
    /// WeChat (and WeCom) API calls: latency by endpoint, errcode answers by endpoint and code.
    api: ApiCalls,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds (seconds) of the `upstream_seconds` histogram buckets (then +Inf).
const UPSTREAM_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SHARDS: usize = 16;

/// The per-request metrics (`requests_total`, `upstream_seconds`), sharded by thread: each
/// worker thread counts in its own cache lines (plain relaxed atomic adds, no lock, no line
/// shared between cores); a scrape adds the shards up.
#[derive(Debug)]
struct HotPath {
    shards: Box<[Shard]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    requests: [[AtomicU64; 5]; 5],
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; UPSTREAM_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl HotPath {
    fn new() -> Self {
        HotPath {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// This thread's shard (threads take shards in turn, so the workers get their own).
    fn shard(&self) -> &Shard {
        let i = SHARD.with(|c| {
            if c.get() == usize::MAX {
                c.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            c.get()
        });
        &self.shards[i]
    }

    fn request(&self, route: Route, status: u16) {
        self.shard().requests[route as usize][class_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    fn upstream(&self, took: Duration) {
        let s = self.shard();
        let secs = took.as_secs_f64();
        let b = UPSTREAM_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(UPSTREAM_BUCKETS.len());
        s.buckets[b].fetch_add(1, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn total(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    }
}

impl Collector for HotPath {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = encoder.encode_descriptor(
            "requests",
            "Requests handled, by route and status class",
            None,
            MetricType::Counter,
        )?;
        for route in Route::ALL {
            for (ci, class) in CLASSES.iter().enumerate() {
                let n = self.total(|s| &s.requests[route as usize][ci]);
                let labels = RequestLabels {
                    route: route.as_str(),
                    class,
                };
                requests
                    .encode_family(&labels)?
                    .encode_counter::<(), u64, u64>(&n, None)?;
            }
        }
        let mut up = encoder.encode_descriptor(
            "upstream_seconds",
            "Time until the upstream's response headers",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = UPSTREAM_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .enumerate()
            .map(|(i, le)| (le, self.total(|s| &s.buckets[i])))
            .collect();
        let sum = self.total(|s| &s.sum_nanos) as f64 / 1e9;
        up.encode_histogram::<()>(sum, self.total(|s| &s.count), &buckets, None)
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wxgate");
        let hot = Arc::new(HotPath::new());
        registry.register_collector(Box::new(SharedCollector(hot.clone())));
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Login attempts by source and outcome",
            logins.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Live sessions in the store (approximate)",
            sessions.clone(),
        );
        let revalidations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "revalidations",
            "Re-checks of browser sessions' WeChat grants by outcome (valid, renewed, revoked, unknown)",
            revalidations.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Login-endpoint requests refused by the per-client rate limit",
            rate_limited.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Session-store operations that failed (store unreachable or timing out)",
            store_errors.clone(),
        );
        let api = ApiCalls::default();
        registry.register(
            "wechat_api_seconds",
            "WeChat API call latency by endpoint (answers with an errcode included)",
            api.latency.clone(),
        );
        registry.register(
            "wechat_errors",
            "WeChat API answers carrying an errcode, by endpoint and errcode",
            api.errors.clone(),
        );
        Self {
            registry,
            hot,
            logins,
            sessions,
            revalidations,
            rate_limited,
            store_errors,
            api,
        }
    }

    /// One request handled: its route, status and, when it was proxied, the time until the
    /// upstream's response headers.
    pub fn request(&self, route: Route, status: u16, upstream: Option<Duration>) {
        self.hot.request(route, status);
        if let Some(took) = upstream {
            self.hot.upstream(took);
        }
    }

    /// One login attempt: the kind's name as its provider gives it, and the outcome.
    pub fn login(&self, source: &'static str, outcome: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { source, outcome })
            .inc();
    }

    /// The handle the providers' API clients count their calls with.
    pub fn api_calls(&self) -> ApiCalls {
        self.api.clone()
    }

    /// The store's own count of failed operations (monotonic: it only ever grows).
    pub fn set_store_errors(&self, n: u64) {
        self.store_errors
            .inner()
            .fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The registry owns its collectors; the metrics keep a handle to count into.
#[derive(Debug)]
struct SharedCollector(Arc<HotPath>);

impl Collector for SharedCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_wechat_api_calls() {
        let m = Metrics::new();
        // Declared before any call, so dashboards and alerts find the names.
        let t = m.render();
        assert!(
            t.contains("# TYPE wxgate_wechat_api_seconds histogram"),
            "{t}"
        );
        assert!(t.contains("# TYPE wxgate_wechat_errors counter"), "{t}");
        let api = m.api_calls();
        api.observe("sns/oauth2/access_token", Duration::from_millis(30), None);
        api.observe(
            "sns/oauth2/access_token",
            Duration::from_millis(70),
            Some(40029),
        );
        api.observe("sns/userinfo", Duration::from_millis(20), Some(0));
        let t = m.render();
        assert!(
            t.contains("wxgate_wechat_api_seconds_count{endpoint=\"sns/oauth2/access_token\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_wechat_api_seconds_bucket{le=\"0.05\",endpoint=\"sns/oauth2/access_token\"} 1")
                || t.contains("wxgate_wechat_api_seconds_bucket{endpoint=\"sns/oauth2/access_token\",le=\"0.05\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_wechat_errors_total{endpoint=\"sns/oauth2/access_token\",errcode=\"40029\"} 1"),
            "{t}"
        );
        // errcode 0 is success, not an error.
        assert!(!t.contains("errcode=\"0\""), "{t}");
    }

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.request(Route::Proxy, 200, None);
        m.login("website", "ok");
        let t = m.render();
        assert!(
            t.contains("wxgate_requests_total{route=\"proxy\",class=\"2xx\"} 1"),
            "{t}"
        );
        assert!(t.contains("wxgate_logins_total"));
        m.request(Route::Unauthenticated, 401, None);
        m.request(Route::Gateway, 999, None);
        let t = m.render();
        assert!(
            t.contains("wxgate_requests_total{route=\"unauthenticated\",class=\"4xx\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_requests_total{route=\"gateway\",class=\"5xx\"} 1"),
            "{t}"
        );
        assert_eq!(CLASSES[class_index(101)], "1xx");
    }

    #[test]
    fn shards_add_up_across_threads() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    m.request(Route::Proxy, 200, Some(Duration::from_millis(3)));
                    m.request(Route::Proxy, 200, Some(Duration::from_secs(30)));
                    for _ in 0..998 {
                        m.request(Route::Proxy, 204, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = m.render();
        assert!(
            t.contains("wxgate_requests_total{route=\"proxy\",class=\"2xx\"} 4000"),
            "{t}"
        );
        assert!(t.contains("wxgate_upstream_seconds_count 8"), "{t}");
        assert!(t.contains("wxgate_upstream_seconds_sum 120.012"), "{t}");
        // Cumulative buckets: the 3 ms ones from le=0.005 on, the 30 s ones only in +Inf.
        assert!(
            t.contains("wxgate_upstream_seconds_bucket{le=\"0.0025\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_upstream_seconds_bucket{le=\"0.005\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_upstream_seconds_bucket{le=\"10.0\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_upstream_seconds_bucket{le=\"+Inf\"} 8"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE wxgate_upstream_seconds histogram"),
            "{t}"
        );
        assert!(t.contains("# TYPE wxgate_requests counter"), "{t}");
    }
}
