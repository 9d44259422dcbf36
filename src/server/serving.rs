//! What a worker serves requests with — the [`App`], the worker's upstream pool, the hyper
//! builder — as one [`Serving`], swapped whole when the configuration is reloaded: each request
//! takes the one current when it starts and keeps it to its end; new connections get the new
//! connection settings; the upstream pool is rebuilt only when the upstream settings changed.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

use crate::common::timer::CoarseTimer;
use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;
use crate::proxy::Proxy;

/// A reloaded App for a worker, and where it says it serves with it.
pub(crate) type Swap = (Arc<App>, oneshot::Sender<()>);

/// What one worker serves requests with; replaced whole on a reload.
pub(crate) struct Serving {
    pub(crate) app: Arc<App>,
    pub(crate) proxy: Arc<Proxy>,
    /// Shared by the connections accepted while this is current (they do not hold the rest).
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    /// `server.idle_timeout_ms` in the worker's ticks.
    pub(crate) idle_ticks: u64,
    /// `server.header_read_timeout_ms` in the worker's ticks (HTTP/1; see `connection.rs`).
    pub(crate) head_ticks: u64,
}

impl Serving {
    /// The worker's serving parts for `app`; the pool of `old` is kept when the upstream
    /// settings are the same.
    pub(crate) fn new(
        app: Arc<App>,
        timer: &CoarseTimer,
        limit: &Arc<UpstreamLimit>,
        old: Option<&Serving>,
    ) -> Serving {
        let proxy = match old {
            Some(o) if same_upstream(&o.app.settings, &app.settings) => o.proxy.clone(),
            _ => Arc::new(Proxy::new(&app.settings, timer.clone(), limit.clone())),
        };
        Serving {
            builder: Arc::new(builder(&app.settings, timer.clone())),
            idle_ticks: timer.ticks_in(app.settings.server.idle_timeout),
            head_ticks: timer.ticks_in(app.settings.server.header_read_timeout),
            proxy,
            app,
        }
    }
}

/// Whether a proxy built for `a` serves `b` as it is (the settings [`Proxy::new`] reads).
fn same_upstream(a: &Settings, b: &Settings) -> bool {
    let (x, y) = (&a.upstream, &b.upstream);
    x.authority == y.authority
        && x.connect_timeout == y.connect_timeout
        && x.timeout == y.timeout
        && x.pool_max_idle == y.pool_max_idle
        && a.server.idle_timeout == b.server.idle_timeout
}

/// `timer`: the worker's coarse timer, for HTTP/2's keep-alive pings (hyper's `Timer::reset` is
/// the default, a new coarse sleep: no lock taken while it is polled by its own task). HTTP/1 has
/// no timer in hyper: the connection's idle watch keeps the header-read timeout (hyper's would
/// box and arm a sleep for every request).
fn builder(s: &Settings, timer: CoarseTimer) -> auto::Builder<TokioExecutor> {
    let c = &s.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .header_read_timeout(None::<Duration>)
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(timer)
        .max_concurrent_streams(c.h2_max_concurrent_streams)
        .max_header_list_size(c.max_header_bytes.min(u32::MAX as usize) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test configuration with `extra` keys in `[server]`.
    fn settings(extra: &str) -> Settings {
        let toml = crate::config::test_toml::TEST_TOML
            .replace("[upstream]", &format!("{extra}\n[upstream]"));
        crate::config::Config::from_toml(&toml).unwrap()
    }

    #[test]
    fn pool_kept_only_for_the_same_upstream_settings() {
        let a = settings("");
        assert!(same_upstream(&a, &settings("hsts_max_age_secs = 5")));
        assert!(!same_upstream(&a, &settings("idle_timeout_ms = 1234")));
        let mut b = settings("");
        b.upstream.authority = "127.0.0.1:3001".parse().unwrap();
        assert!(!same_upstream(&a, &b));
        let mut c = settings("");
        c.upstream.timeout = Duration::from_secs(99);
        assert!(!same_upstream(&a, &c));
    }
}
