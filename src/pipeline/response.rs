//! The response phase: every answer passes here once, whoever made it (an endpoint, an error,
//! the upstream). The gateway's own answers get the security headers (`Cache-Control:
//! no-store`, `Referrer-Policy`, `X-Content-Type-Options`, the CSP on pages); the upstream's
//! lose any `Set-Cookie` for the gateway's own cookies (no session fixation through the
//! upstream) and otherwise pass as they are; HSTS, when configured, goes on every response.
//! Then the request is counted, and logged on `wxgate::access`. Nothing here allocates on the
//! usual path.

use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{Method, Request, Response};
use http_body_util::Either;

use crate::common::cookies;
use crate::common::http_util::{self, Body};
use crate::common::metrics::Route;
use crate::pipeline::app::App;
use crate::proxy::pool::UpstreamBody;
use crate::proxy::Peer;

/// What the client gets: the upstream's streamed body, or the gateway's own small one, without
/// boxing.
pub(crate) type ResponseBody = Either<UpstreamBody, Body>;

/// An answer the gateway made itself, as the client gets it.
#[inline]
pub(crate) fn own(resp: Response<Body>) -> Response<ResponseBody> {
    resp.map(Either::Right)
}

impl App {
    /// The answer as it leaves: headers done (see the module doc) and the request counted.
    pub(crate) fn respond(
        &self,
        mut resp: Response<ResponseBody>,
        route: Route,
        upstream: Option<Duration>,
    ) -> Response<ResponseBody> {
        match resp.body() {
            Either::Left(_) => cookies::strip_set_cookies(
                resp.headers_mut(),
                &[&self.session_cookie, &self.login_cookie],
            ),
            Either::Right(_) => http_util::gateway_answer_headers(resp.headers_mut()),
        }
        if let Some(v) = &self.hsts {
            resp.headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        self.metrics
            .request(route, resp.status().as_u16(), upstream);
        resp
    }
}

/// What the access line needs from the request, taken before the request is consumed.
pub(crate) struct AccessLine {
    started: Instant,
    method: Method,
    /// A refcount, not a copy.
    pq: Option<PathAndQuery>,
}

/// A duration in milliseconds, rounded to microseconds, for log lines: `latency_ms=0.131`, not
/// `0.13107400000000002`. Still a number (JSON logs keep it numeric).
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl AccessLine {
    /// Whether the access line is written (`wxgate::access` at info).
    #[inline]
    pub(crate) fn enabled() -> bool {
        tracing::enabled!(target: "wxgate::access", tracing::Level::INFO)
    }

    pub(crate) fn start<B>(req: &Request<B>) -> AccessLine {
        AccessLine {
            started: Instant::now(),
            method: req.method().clone(),
            pq: req.uri().path_and_query().cloned(),
        }
    }

    pub(crate) fn write(self, status: u16, upstream: Option<Duration>, peer: &Peer) {
        tracing::info!(
            target: "wxgate::access",
            method = %self.method,
            path = self.pq.as_ref().map(|p| p.path()).unwrap_or("/"),
            status,
            latency_ms = millis(self.started.elapsed()),
            upstream_ms = upstream.map(millis),
            peer = %peer.addr.ip(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_print_rounded() {
        assert_eq!(millis(Duration::from_nanos(131_074)).to_string(), "0.131");
        assert_eq!(millis(Duration::from_nanos(131_500)).to_string(), "0.132");
        assert_eq!(millis(Duration::from_micros(2_000)).to_string(), "2");
        assert_eq!(millis(Duration::from_secs(61)).to_string(), "61000");
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
    }
}
