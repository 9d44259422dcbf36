//! The gateway's `Set-Cookie` values (session and login cookies).

use http::header::HeaderValue;

use crate::config::Settings;

/// `name=value` with the gateway's attributes: HttpOnly, SameSite=Lax, Secure on https, the
/// configured `session.cookie_domain`.
pub(super) fn cookie_header(
    settings: &Settings,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> HeaderValue {
    let mut c = cookie::Cookie::build((name.to_string(), value.to_string()))
        .path(path.to_string())
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(settings.public.secure)
        .max_age(cookie::time::Duration::seconds(max_age));
    let domain = &settings.session.cookie_domain;
    // Both the session and the login cookie: in a multi-site setup the login may start on
    // one subdomain and come back through public_url's host.
    if !domain.is_empty() {
        c = c.domain(domain.clone());
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}
