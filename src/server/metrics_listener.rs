//! `server.metrics_listen`: `/metrics` on its own plain-HTTP listener, apart from the gateway's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::common::http_util::{self, Body};
use crate::pipeline::App;
use crate::server::limits::{self};
use crate::server::shutdown::stopped;

/// `/metrics` as `{prefix}/metrics` serves it when `server.metrics_listen` is not set.
pub(crate) fn metrics_response(app: &App) -> Response<Body> {
    use crate::session::SessionStore;
    if let Some(n) = app.store.session_count() {
        app.metrics.sessions.set(n as i64);
    }
    app.metrics.set_store_errors(app.store.error_count());
    http_util::respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.render(),
    )
}

/// The `server.metrics_listen` listener: plain HTTP/1.1, `GET /metrics` and nothing else.
pub(crate) async fn metrics_server(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.settings.server.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if !limits::accept_error_is_transient(&e) {
                        tracing::debug!(error = %e, "metrics accept failed");
                        tokio::time::sleep(limits::ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let app = app.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let resp = if req.uri().path() == "/metrics"
                && (req.method() == Method::GET || req.method() == Method::HEAD)
            {
                metrics_response(&app)
            } else {
                http_util::respond(StatusCode::NOT_FOUND, http_util::TEXT, "not found")
            };
            std::future::ready(Ok::<_, Infallible>(resp))
        });
        let conn = b.serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(graceful.watch(conn));
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}
