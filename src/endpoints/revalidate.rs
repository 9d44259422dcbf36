//! Revalidation (`session.revalidate_secs`): a browser session that keeps its provider's grant
//! is re-checked with the provider at most every `revalidate_secs`, one check per session at a
//! time in this process, off the request path.
//!
//! A request whose session is due starts a background check and proceeds with the session
//! (still valid as far as anyone knows). A check that finds the grant revoked marks the
//! session; the next request that presents it (here) removes it from the store and is treated
//! as not logged in. A check that cannot reach the provider keeps the session: one log line and
//! `wxgate_revalidations_total{outcome="unknown"}`.
//!
//! The record's grant is never rewritten: an access token renewed by a refresh lives in this
//! process's check state only (writing the record back could race a logout and bring the
//! session back). Another process, or this one after a restart, refreshes again when it needs
//! to; the refresh token lives 30 days.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::common::http_util::unix_now;
use crate::common::metrics::OutcomeLabels;
use crate::providers::{Registry, Revalidation};
use crate::session::{Authenticated, Grant, Session, SessionId, SessionStore, Store, StoreError};

/// One session's check state in this process.
struct Slot {
    /// Unix seconds of the last check started (or of the login).
    last: AtomicU64,
    /// A check is running.
    busy: AtomicBool,
    /// An access token renewed by a refresh (never written back to the record).
    renewed: Mutex<Option<Grant>>,
}

struct Inner {
    every: u64,
    slots: moka::sync::Cache<SessionId, Arc<Slot>>,
    /// Sessions a check found revoked, until a request removes them from the store (kept for a
    /// session's whole lifetime: a slot may be dropped for idleness, this verdict may not).
    revoked: moka::sync::Cache<SessionId, ()>,
    providers: Arc<Registry>,
    outcomes: Family<OutcomeLabels, Counter>,
}

/// The revalidation state of this process; cheap to clone.
#[derive(Clone)]
pub(crate) struct Revalidator {
    inner: Arc<Inner>,
}

/// Whether a session is due for a check at `now`, given the last check (or the login).
pub(crate) fn due(last: u64, every: u64, now: u64) -> bool {
    now >= last.saturating_add(every)
}

impl Revalidator {
    /// None when revalidation is off (`session.revalidate_secs = 0`).
    pub(crate) fn new(
        every: Option<Duration>,
        session_ttl: Duration,
        capacity: u64,
        providers: Arc<Registry>,
        outcomes: Family<OutcomeLabels, Counter>,
    ) -> Option<Revalidator> {
        let every = every?.as_secs().max(1);
        // A slot unused for a while is dropped: the session then counts from its login
        // again, i.e. it is checked at its next request.
        let idle = Duration::from_secs(every.saturating_mul(4).max(60));
        Some(Revalidator {
            inner: Arc::new(Inner {
                every,
                slots: moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_idle(idle)
                    .build(),
                revoked: moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(session_ttl)
                    .build(),
                providers,
                outcomes,
            }),
        })
    }

    /// The session a request found, vetted: None (after removing it from the store) when a
    /// check found its grant revoked; else the session, and a background check started when
    /// one is due and none is running.
    pub(crate) async fn vet(
        &self,
        store: &Store,
        found: Option<Authenticated>,
    ) -> Result<Option<Authenticated>, StoreError> {
        let Some(a) = found else { return Ok(None) };
        if !self.touch(&a.id, &a.session) {
            return Ok(Some(a));
        }
        // Boxed: a rare path, whose (Redis) future would otherwise enlarge every request's.
        Box::pin(store.remove(&a.id)).await?;
        self.inner.slots.invalidate(&a.id);
        self.inner.revoked.invalidate(&a.id);
        tracing::info!(session = %a.id.fingerprint(), "session ended: the WeChat grant was revoked");
        Ok(None)
    }

    /// Starts a check when one is due; true when an earlier check found the grant revoked.
    fn touch(&self, id: &SessionId, session: &Session) -> bool {
        // Sessions without a grant (JSON logins, logins before revalidation was on) and
        // sessions checked recently cost one header read and no lookup.
        let Some(granted_at) = session.granted_at() else {
            return false;
        };
        let (every, now) = (self.inner.every, unix_now());
        if !due(granted_at, every, now) {
            return false;
        }
        if self.inner.revoked.contains_key(id) {
            return true;
        }
        let slot = self.inner.slots.get_with(*id, || {
            Arc::new(Slot {
                last: AtomicU64::new(granted_at),
                busy: AtomicBool::new(false),
                renewed: Mutex::new(None),
            })
        });
        if !due(slot.last.load(Ordering::Acquire), every, now)
            || slot.busy.swap(true, Ordering::AcqRel)
        {
            return false;
        }
        slot.last.store(now, Ordering::Release);
        let inner = self.inner.clone();
        let (id, session) = (*id, session.clone());
        tokio::spawn(async move {
            inner.check(id, session, &slot).await;
            slot.busy.store(false, Ordering::Release);
        });
        false
    }
}

impl Inner {
    async fn check(&self, id: SessionId, session: Session, slot: &Slot) {
        let renewed = slot
            .renewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(grant) = renewed.or_else(|| session.grant()) else {
            return;
        };
        let Some(provider) = self.providers.get(session.origin()) else {
            return;
        };
        let outcome = match provider.revalidate(&session, grant).await {
            Revalidation::Valid(None) => "valid",
            Revalidation::Valid(Some(g)) => {
                *slot.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
                "renewed"
            }
            Revalidation::Revoked => {
                self.revoked.insert(id, ());
                "revoked"
            }
            Revalidation::Unknown => {
                tracing::warn!(
                    session = %id.fingerprint(),
                    "could not re-check the session's WeChat grant (WeChat unreachable or busy); the session stays"
                );
                "unknown"
            }
        };
        tracing::debug!(session = %id.fingerprint(), outcome, "session revalidated");
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_the_interval() {
        assert!(!due(100, 10, 109));
        assert!(due(100, 10, 110));
        assert!(due(100, 10, 1000));
        assert!(!due(u64::MAX - 1, 10, 5));
    }
}
