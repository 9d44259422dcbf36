//! Small helpers shared by every handler: the response body type, canned responses,
//! query parsing, and how a request says what it wants back.

use bytes::Bytes;
use http::header::HeaderName;
use http::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

// Parsed once, not on every lookup.
static X_REQUESTED_WITH: http::HeaderName = http::HeaderName::from_static("x-requested-with");
static SEC_FETCH_MODE: http::HeaderName = http::HeaderName::from_static("sec-fetch-mode");

/// The body of every answer the gateway makes itself (the pipeline's response carries it
/// beside the upstream's streamed body: `pipeline::response::ResponseBody`).
pub type Body = Full<Bytes>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
}

pub fn empty() -> Body {
    Full::new(Bytes::new())
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";
pub const JSON: &str = "application/json";

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    respond(status, JSON, v.to_string())
}

/// The 401 JSON of every request that needs a session and has none (the proxied path, the
/// forward-auth and userinfo endpoints): `{"error": "unauthenticated", "login_url": ...}`.
pub fn unauthenticated_json(login_url: &str) -> Response<Body> {
    json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "unauthenticated", "login_url": login_url}),
    )
}

/// 302 to `location`; a location that cannot be a header value becomes `/`.
pub fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    let v = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(LOCATION, v);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

static REFERRER_POLICY: http::HeaderName = http::HeaderName::from_static("referrer-policy");

/// The headers every answer the gateway makes itself carries (DESIGN.md, Endpoints): never
/// cached, no Referer to other sites (the callback URL holds the code), no type sniffing, and
/// pages never framed. Upstream answers do not get them.
pub(crate) fn gateway_answer_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(&REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let page = h
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if page {
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
}

/// The first value of `key` in a query string, percent-decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A browser navigation (as opposed to an API call or XHR), per DESIGN.md.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !(method == Method::GET || method == Method::HEAD) || headers.contains_key(&X_REQUESTED_WITH)
    {
        return false;
    }
    let accept_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let navigate = headers
        .get(&SEC_FETCH_MODE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"));
    accept_html || navigate
}

/// Clients that asked for JSON (or are not browsers) get JSON errors.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (accept.contains("application/json") && !accept.contains("text/html"))
        || headers.contains_key(&X_REQUESTED_WITH)
}

/// Remove every header whose name `drop` picks. One look at each name; allocates only when one
/// is there.
pub(crate) fn remove_headers_where(h: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    if !h.keys().any(&drop) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|n| drop(n)).cloned().collect();
    for n in names {
        h.remove(&n);
    }
}

/// Keep, in order, only the values of header `name` that `keep` accepts. One look at each
/// value; allocates only when one goes.
pub(crate) fn retain_header_values(
    h: &mut HeaderMap,
    name: HeaderName,
    keep: impl Fn(&HeaderValue) -> bool,
) {
    if h.get_all(&name).iter().all(&keep) {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(&name)
        .iter()
        .filter(|v| keep(v))
        .cloned()
        .collect();
    h.remove(&name);
    for v in kept {
        h.append(name.clone(), v);
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A header map from `(name, value)` pairs, in order (repeats appended), for unit tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_detection() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(!is_navigation(&Method::GET, &h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&Method::HEAD, &h));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn query() {
        assert_eq!(
            query_param(Some("a=1&rd=%2Fx%3Fy%3D1"), "rd").as_deref(),
            Some("/x?y=1")
        );
        assert_eq!(query_param(Some("a=1"), "rd"), None);
        assert_eq!(query_param(None, "rd"), None);
    }

    #[test]
    fn gateway_answers_are_marked() {
        let mut page = respond(StatusCode::OK, HTML, "<p>x</p>");
        gateway_answer_headers(page.headers_mut());
        let h = page.headers();
        assert_eq!(h[CACHE_CONTROL], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[CONTENT_SECURITY_POLICY], "frame-ancestors 'none'");
        for mut r in [json(StatusCode::OK, &serde_json::json!({})), redirect("/x")] {
            gateway_answer_headers(r.headers_mut());
            let h = r.headers();
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(!h.contains_key(CONTENT_SECURITY_POLICY), "not a page");
        }
    }

    #[test]
    fn bad_location_falls_back() {
        let r = redirect("/a\nb");
        assert_eq!(r.headers()[LOCATION], "/");
    }
}
