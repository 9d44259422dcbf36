//! Prometheus metrics (prometheus-client), served at `{prefix}/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

pub fn status_class(code: u16) -> &'static str {
    CLASSES[class_index(code)]
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub source: &'static str,
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// The request counters, resolved once: counting is one atomic add, no lock, no hashing.
    by_route: [[Counter; 5]; 5],
    pub upstream_seconds: Histogram,
    pub logins: Family<LoginLabels, Counter>,
    pub sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wxgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by route and status class",
            requests.clone(),
        );
        let upstream_seconds = Histogram::new(
            [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]
            .into_iter(),
        );
        registry.register(
            "upstream_seconds",
            "Time until the upstream's response headers",
            upstream_seconds.clone(),
        );
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
        let by_route = Route::ALL.map(|route| {
            CLASSES.map(|class| {
                requests
                    .get_or_create(&RequestLabels {
                        route: route.as_str(),
                        class,
                    })
                    .clone()
            })
        });
        Self {
            registry,
            by_route,
            requests,
            upstream_seconds,
            logins,
            sessions,
        }
    }

    pub fn request(&self, route: Route, status: u16) {
        self.by_route[route as usize][class_index(status)].inc();
    }

    pub fn login(&self, source: &'static str, outcome: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { source, outcome })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.request(Route::Proxy, 200);
        m.login("website", "ok");
        let t = m.render();
        assert!(
            t.contains("wxgate_requests_total{route=\"proxy\",class=\"2xx\"} 1"),
            "{t}"
        );
        assert!(t.contains("wxgate_logins_total"));
        m.request(Route::Unauthenticated, 401);
        m.request(Route::Gateway, 999);
        let t = m.render();
        assert!(
            t.contains("wxgate_requests_total{route=\"unauthenticated\",class=\"4xx\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("wxgate_requests_total{route=\"gateway\",class=\"5xx\"} 1"),
            "{t}"
        );
        assert_eq!(status_class(101), "1xx");
    }
}
