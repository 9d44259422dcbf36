//! Operations endpoints: `/healthz`, `/readyz` (the session store answers) and `/metrics`
//! (when not on its own listener).

use http::{Response, StatusCode};

use crate::common::http_util::{self, Body};
use crate::pipeline::App;
use crate::session::SessionStore;

pub(super) fn healthz() -> Response<Body> {
    http_util::respond(StatusCode::OK, http_util::TEXT, "ok")
}

pub(super) async fn readyz(app: &App) -> Response<Body> {
    match app.store.ping().await {
        Ok(()) => http_util::respond(StatusCode::OK, http_util::TEXT, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            http_util::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                http_util::TEXT,
                "session store unavailable",
            )
        }
    }
}

pub(super) fn metrics(app: &App) -> Response<Body> {
    if let Some(n) = app.store.session_count() {
        app.metrics.sessions.set(n as i64);
    }
    http_util::respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.render(),
    )
}
