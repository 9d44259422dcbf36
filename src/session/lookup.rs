//! Finding the session behind a request's credentials: the session cookies it sent, in order,
//! then its bearer token. The caller reads the credentials from the headers; this only asks
//! the store.

use super::{Session, SessionId, SessionStore, StoreError};

/// Session cookies tried per request at most (a stale one may precede the live one): bounds
/// the store lookups one request can cause.
pub const MAX_SESSION_COOKIES: usize = 4;

/// The session ids a request presents: its session cookies (at most
/// [`MAX_SESSION_COOKIES`], in order) and its bearer token.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials {
    cookies: [Option<SessionId>; MAX_SESSION_COOKIES],
    bearer: Option<SessionId>,
}

impl Credentials {
    /// The first [`MAX_SESSION_COOKIES`] cookie ids and the bearer token's id.
    pub fn new(cookies: impl IntoIterator<Item = SessionId>, bearer: Option<SessionId>) -> Self {
        let mut c = Credentials {
            bearer,
            ..Credentials::default()
        };
        for (slot, id) in c.cookies.iter_mut().zip(cookies) {
            *slot = Some(id);
        }
        c
    }
}

/// A session found for a request, and how it was presented.
pub struct Authenticated {
    pub id: SessionId,
    pub session: Session,
    pub bearer: bool,
}

/// The live session behind `credentials`: every cookie id in order, then the bearer token.
pub async fn authenticate<S: SessionStore>(
    store: &S,
    credentials: &Credentials,
    now: u64,
) -> Result<Option<Authenticated>, StoreError> {
    for id in credentials.cookies.iter().flatten() {
        if let Some(session) = store.get(id, now).await? {
            return Ok(Some(Authenticated {
                id: *id,
                session,
                bearer: false,
            }));
        }
    }
    if let Some(id) = &credentials.bearer {
        if let Some(session) = store.get(id, now).await? {
            return Ok(Some(Authenticated {
                id: *id,
                session,
                bearer: true,
            }));
        }
    }
    Ok(None)
}
