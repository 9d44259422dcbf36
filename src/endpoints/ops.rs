//! Operations endpoints: `/healthz`, `/readyz` (the session store answers) and `/metrics`
//! (when not on its own listener).

use http::{Response, StatusCode};

use super::context::Ctx;
use crate::common::http_util::{self, Body};
use crate::session::SessionStore;

pub(super) fn healthz() -> Response<Body> {
    http_util::respond(StatusCode::OK, http_util::TEXT, "ok")
}

pub(super) async fn readyz(cx: &Ctx<'_>) -> Response<Body> {
    match cx.store.ping().await {
        Ok(()) => http_util::respond(StatusCode::OK, http_util::TEXT, "ready"),
        Err(e) => {
            // The store logs its own outage once; a probe every few seconds adds nothing.
            tracing::debug!(error = %e, "not ready");
            http_util::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                http_util::TEXT,
                "session store unavailable",
            )
        }
    }
}

pub(super) fn metrics(cx: &Ctx<'_>) -> Response<Body> {
    if let Some(n) = cx.store.session_count() {
        cx.metrics.sessions.set(n as i64);
    }
    cx.metrics.set_store_errors(cx.store.error_count());
    http_util::respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        cx.metrics.render(),
    )
}
