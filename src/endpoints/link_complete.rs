//! Account linking resumes here once the app's bind page is done: `GET /link/complete?ticket&
//! user_id&t&sig` (browsers: session + 302 to the original return URL) and `POST
//! /link/complete` with the same four as JSON (apps and mini programs: the token JSON).
//!
//! In this order, each failure a 400: the fields' shape; `sig` = hex hmac-sha256(link.secret,
//! "<t>.<ticket>.<user_id>") in constant time with `t` fresh; the ticket sealed by this gateway
//! and unexpired; started the same way it resumes (a browser's ticket by GET, an app's by
//! POST); and its login in flight taken from the session store, which only one resume ever
//! gets (across instances too, with Redis).

use http::header::SET_COOKIE;
use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use super::context::Ctx;
use super::json_login::{read_json, token_response};
use super::link_hook::LinkError;
use super::link_ticket::{pending_key, valid_user_id, Claims, TicketProblem, MAX_TICKET};
use super::login::{session_of, start_session};
use crate::common::audit::Action;
use crate::common::error::{ApiError, GatewayError, LoginError};
use crate::common::http_util::{self, query_param, unix_now, Body};
use crate::common::redirect::safe_return;
use crate::session::SessionStore;

/// What the app sends back.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resume {
    ticket: String,
    user_id: String,
    t: u64,
    sig: String,
}

fn bad(why: &'static str) -> GatewayError {
    LinkError::BadResume(why).into()
}

/// The four fields as text (`t` also as a JSON number), checked for shape.
fn resume_of(get: impl Fn(&str) -> Option<String>) -> Result<Resume, GatewayError> {
    let field = |k: &'static str| get(k).filter(|v| !v.is_empty());
    let ticket = field("ticket").ok_or_else(|| bad("no ticket"))?;
    if ticket.len() > MAX_TICKET {
        return Err(bad("ticket too long"));
    }
    let user_id = field("user_id").ok_or_else(|| bad("no user_id"))?;
    if !valid_user_id(&user_id) {
        return Err(bad("user_id is not 1-128 visible ASCII characters"));
    }
    let t = field("t")
        .filter(|t| t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| bad("t is not a Unix time"))?;
    let sig = field("sig")
        .filter(|s| s.len() == 64)
        .ok_or_else(|| bad("sig is not 64 hex digits"))?;
    Ok(Resume {
        ticket,
        user_id,
        t,
        sig,
    })
}

/// The checks every resume passes; the claims and the return URL of the login in flight.
async fn check(cx: &Ctx<'_>, r: &Resume, browser: bool) -> Result<(Claims, String), GatewayError> {
    let link = cx.link.ok_or(LoginError::NotFound)?;
    let now = unix_now();
    if !link
        .tickets
        .resume_ok(r.t, &r.ticket, &r.user_id, &r.sig, now)
    {
        return Err(bad("signature does not verify or t is stale"));
    }
    let claims = link.tickets.open(&r.ticket, now).map_err(|p| match p {
        TicketProblem::Forged => bad("not a ticket of this gateway"),
        TicketProblem::Expired => bad("ticket expired"),
    })?;
    if claims.browser != browser {
        return Err(bad(
            "ticket resumed the wrong way (browsers GET, apps POST)",
        ));
    }
    let pending = cx
        .store
        .take_pending(&pending_key(&claims.id))
        .await?
        .ok_or_else(|| bad("ticket already used"))?;
    if pending.origin != claims.identity.origin {
        return Err(bad("ticket does not match its login"));
    }
    let origin = claims.identity.origin;
    if !cx
        .providers
        .get(origin)
        .is_some_and(|p| p.serves(origin.kind))
    {
        return Err(LoginError::AppNotConfigured.into());
    }
    Ok((claims, pending.rd))
}

/// `GET /link/complete`: a browser's session, then its original return URL.
pub(super) async fn complete_get(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if cx.link.is_none() {
        return Err(LoginError::NotFound.into());
    }
    let q = req.uri().query();
    let r = resume_of(|k| query_param(q, k))?;
    let (claims, rd) = check(cx, &r, true).await?;
    let session =
        session_of(cx, &claims.identity).with_link(Some(&r.user_id), claims.phone.as_deref());
    // The app bound the user on its page: the link's outcome, then the login.
    super::audit::session_event(cx, Action::Link, &session, "bound", "");
    let (id, cookie) = start_session(cx, session, &rd).await?;
    let source = cx.providers.kind_name(claims.identity.origin);
    tracing::info!(source, session = %id.fingerprint(), "login linked");
    let s = cx.settings;
    let mut resp = http_util::redirect(&safe_return(&rd, &s.public, &s.access.redirect_hosts));
    resp.headers_mut().append(SET_COOKIE, cookie);
    Ok(resp)
}

/// `POST /link/complete`: an app's or mini program's token.
pub(super) async fn complete_post(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if cx.link.is_none() {
        return Err(LoginError::NotFound.into());
    }
    let body: Value = read_json(req, cx.settings.server.body_timeout).await?;
    let Value::Object(m) = body else {
        return Err(ApiError::BadRequest("body must be a JSON object".into()).into());
    };
    let r = resume_of(|k| match m.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if k == "t" => Some(n.to_string()),
        _ => None,
    })?;
    let (claims, _) = check(cx, &r, false).await?;
    let session =
        session_of(cx, &claims.identity).with_link(Some(&r.user_id), claims.phone.as_deref());
    super::audit::session_event(cx, Action::Link, &session, "bound", "");
    let (id, _) = start_session(cx, session.clone(), "/").await?;
    let source = cx.providers.kind_name(claims.identity.origin);
    tracing::info!(source, session = %id.fingerprint(), "login linked");
    Ok(token_response(cx, &id, &session))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(pairs: &[(&str, &str)]) -> Result<Resume, String> {
        resume_of(|k| {
            pairs
                .iter()
                .find(|(kk, _)| *kk == k)
                .map(|(_, v)| v.to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn resume_fields() {
        let sig = "a".repeat(64);
        let ok = of(&[
            ("ticket", "T"),
            ("user_id", "42"),
            ("t", "1700000000"),
            ("sig", &sig),
        ]);
        assert_eq!(
            ok,
            Ok(Resume {
                ticket: "T".into(),
                user_id: "42".into(),
                t: 1_700_000_000,
                sig: sig.clone()
            })
        );
        for (pairs, want) in [
            (
                vec![("user_id", "42"), ("t", "1"), ("sig", &sig[..])],
                "no ticket",
            ),
            (
                vec![("ticket", "T"), ("t", "1"), ("sig", &sig[..])],
                "no user_id",
            ),
            (
                vec![
                    ("ticket", "T"),
                    ("user_id", "a b"),
                    ("t", "1"),
                    ("sig", &sig[..]),
                ],
                "user_id",
            ),
            (
                vec![
                    ("ticket", "T"),
                    ("user_id", "1"),
                    ("t", "-1"),
                    ("sig", &sig[..]),
                ],
                "Unix time",
            ),
            (
                vec![
                    ("ticket", "T"),
                    ("user_id", "1"),
                    ("t", "1"),
                    ("sig", "abc"),
                ],
                "64 hex",
            ),
        ] {
            let e = of(&pairs).unwrap_err();
            assert!(e.contains(want), "{e} / {want}");
        }
        let long = "A".repeat(MAX_TICKET + 1);
        assert!(of(&[
            ("ticket", &long),
            ("user_id", "1"),
            ("t", "1"),
            ("sig", &sig)
        ])
        .unwrap_err()
        .contains("too long"));
    }

    proptest! {
        #[test]
        fn any_query_is_checked_without_panic(t in "\\PC{0,30}", u in "\\PC{0,30}", s in "\\PC{0,70}") {
            let _ = of(&[("ticket", "T"), ("user_id", &u), ("t", &t), ("sig", &s)]);
        }
    }
}
