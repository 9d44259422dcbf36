//! The mock's state: its apps, minted codes, tokens, injected failures and call counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

use super::fixtures::{self, TestUser};
use super::reply::*;
use super::MockOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AppKind {
    Website,
    OfficialAccount,
    MobileApp,
    MiniProgram,
}

#[derive(Debug)]
pub(super) struct App {
    pub(super) appid: &'static str,
    pub(super) secret: &'static str,
    pub(super) kind: AppKind,
}

pub(super) static APPS: [App; 4] = [
    App {
        appid: fixtures::WEBSITE_APPID,
        secret: fixtures::WEBSITE_SECRET,
        kind: AppKind::Website,
    },
    App {
        appid: fixtures::OFFICIAL_APPID,
        secret: fixtures::OFFICIAL_SECRET,
        kind: AppKind::OfficialAccount,
    },
    App {
        appid: fixtures::MOBILE_APPID,
        secret: fixtures::MOBILE_SECRET,
        kind: AppKind::MobileApp,
    },
    App {
        appid: fixtures::MINI_APPID,
        secret: fixtures::MINI_SECRET,
        kind: AppKind::MiniProgram,
    },
];

pub(super) fn find_app(appid: &str) -> Option<&'static App> {
    APPS.iter().find(|a| a.appid == appid)
}

pub(super) const SNSAPI_LOGIN: &str = "snsapi_login";
pub(super) const SNSAPI_BASE: &str = "snsapi_base";
pub(super) const SNSAPI_USERINFO: &str = "snsapi_userinfo";

pub(super) fn scope_for(app: &App, requested: &str) -> Option<&'static str> {
    match (app.kind, requested) {
        (AppKind::Website, SNSAPI_LOGIN) => Some(SNSAPI_LOGIN),
        (AppKind::OfficialAccount, SNSAPI_BASE) => Some(SNSAPI_BASE),
        (AppKind::OfficialAccount, SNSAPI_USERINFO) => Some(SNSAPI_USERINFO),
        (AppKind::MobileApp, SNSAPI_USERINFO) => Some(SNSAPI_USERINFO),
        _ => None,
    }
}

pub(super) struct Ticket {
    pub(super) app: &'static App,
    pub(super) redirect_uri: String,
    pub(super) scope: &'static str,
    pub(super) state: String,
}

pub(super) struct CodeEntry {
    pub(super) app: &'static App,
    pub(super) user: &'static TestUser,
    pub(super) scope: &'static str,
    pub(super) expires_at: Instant,
    pub(super) used: AtomicBool,
    /// Mini-program codes: the session_key jscode2session returns (fixed at mint time so the
    /// minted encryptedData decrypts with it).
    pub(super) session_key: Option<String>,
    /// Mini-program codes: whether jscode2session includes the unionid (WeChat leaves it out
    /// in some cases; then only the encrypted user data carries it).
    pub(super) unionid_in_response: bool,
}

pub(super) struct TokenEntry {
    pub(super) app: &'static App,
    pub(super) user: &'static TestUser,
    pub(super) scope: &'static str,
    pub(super) openid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailMode {
    Busy,
    RateLimit,
    Garbage,
    Status500,
    Slow,
    EmptyGbk,
}

impl FailMode {
    pub(super) fn parse(s: &str) -> Option<FailMode> {
        Some(match s {
            "busy" => FailMode::Busy,
            "ratelimit" => FailMode::RateLimit,
            "garbage" => FailMode::Garbage,
            "status500" => FailMode::Status500,
            "slow" => FailMode::Slow,
            "empty_gbk" => FailMode::EmptyGbk,
            _ => return None,
        })
    }
}

pub(super) struct Failure {
    pub(super) mode: FailMode,
    pub(super) remaining: u64,
    pub(super) delay: Duration,
}

#[derive(Default)]
pub(super) struct Calls {
    pub(super) access_token: AtomicU64,
    pub(super) refresh_token: AtomicU64,
    pub(super) auth: AtomicU64,
    pub(super) userinfo: AtomicU64,
    pub(super) jscode2session: AtomicU64,
    pub(super) qrconnect: AtomicU64,
    pub(super) authorize: AtomicU64,
    pub(super) confirm: AtomicU64,
    pub(super) mock_code: AtomicU64,
}

impl Calls {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn to_json(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "access_token": g(&self.access_token),
            "refresh_token": g(&self.refresh_token),
            "auth": g(&self.auth),
            "userinfo": g(&self.userinfo),
            "jscode2session": g(&self.jscode2session),
            "qrconnect": g(&self.qrconnect),
            "authorize": g(&self.authorize),
            "confirm": g(&self.confirm),
            "mock_code": g(&self.mock_code),
        })
    }
}

pub(super) const TICKET_TTL: Duration = Duration::from_secs(600);
pub(super) const GRACE: Duration = Duration::from_secs(600);
pub(super) const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);
/// A refresh token lives 30 days from the grant; refreshing does not extend it.
pub(super) const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 86_400);
pub(super) const CAPACITY: u64 = 200_000;

pub(super) struct State {
    pub(super) redirect_domains: Vec<String>,
    pub(super) code_ttl: Duration,
    pub(super) max_code_ttl: Duration,
    pub(super) tickets: Cache<String, Arc<Ticket>>,
    pub(super) codes: Cache<String, Arc<CodeEntry>>,
    pub(super) access_tokens: Cache<String, Arc<TokenEntry>>,
    pub(super) refresh_tokens: Cache<String, Arc<TokenEntry>>,
    pub(super) failure: Mutex<Option<Failure>>,
    pub(super) calls: Calls,
    /// Revoked and expired grants (`/mock/revoke`, `/mock/expire`).
    pub(super) grants: super::grants::Grants,
    /// Mini-program phone numbers (`phone.rs`).
    pub(super) phone: super::phone::PhoneState,
}

/// Lower-case, without brackets or a `:port` suffix.
pub(super) fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if let Some(inner) = h.strip_prefix('[') {
        // [v6] or [v6]:port
        return inner.split(']').next().unwrap_or_default().to_string();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.to_string()
        }
        _ => h,
    }
}

impl State {
    pub(super) fn new(opts: MockOptions) -> State {
        let max_code_ttl = opts.code_ttl.max(Duration::from_secs(600));
        State {
            redirect_domains: opts
                .redirect_domains
                .iter()
                .map(|d| normalize_host(d))
                .filter(|d| !d.is_empty())
                .collect(),
            code_ttl: opts.code_ttl,
            max_code_ttl,
            tickets: cache(TICKET_TTL),
            codes: cache(max_code_ttl + GRACE),
            access_tokens: cache(ACCESS_TOKEN_TTL),
            refresh_tokens: cache(REFRESH_TOKEN_TTL),
            failure: Mutex::new(None),
            calls: Calls::default(),
            grants: super::grants::Grants::new(),
            phone: Default::default(),
        }
    }

    pub(super) fn redirect_allowed(&self, uri: &str) -> bool {
        let Ok(u) = url::Url::parse(uri) else {
            return false;
        };
        if !matches!(u.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = u.host_str() else {
            return false;
        };
        let host = normalize_host(host);
        self.redirect_domains.contains(&host)
    }

    pub(super) fn mint_code(
        &self,
        app: &'static App,
        user: &'static TestUser,
        scope: &'static str,
        ttl: Option<Duration>,
        session_key: Option<(String, bool)>,
    ) -> String {
        let ttl = ttl.unwrap_or(self.code_ttl).min(self.max_code_ttl);
        let code = random_alnum(32);
        self.codes.insert(
            code.clone(),
            Arc::new(CodeEntry {
                app,
                user,
                scope,
                expires_at: Instant::now() + ttl,
                used: AtomicBool::new(false),
                unionid_in_response: session_key.as_ref().is_none_or(|(_, u)| *u),
                session_key: session_key.map(|(k, _)| k),
            }),
        );
        code
    }

    /// Single-use, expiring, bound to its app.
    pub(super) fn take_code(&self, app: &App, code: &str) -> Result<Arc<CodeEntry>, ApiErr> {
        let entry = self
            .codes
            .get(code)
            .filter(|e| e.app.appid == app.appid)
            .ok_or(ApiErr(40029, "invalid code"))?;
        if entry.used.swap(true, Ordering::AcqRel) {
            return Err(ApiErr(40163, "code been used"));
        }
        if Instant::now() >= entry.expires_at {
            return Err(ApiErr(42003, "code expired"));
        }
        Ok(entry)
    }

    /// New tokens for `entry`: a new access token, and the grant's refresh token (`Some`: a
    /// refresh, which keeps it and its 30 days from the grant) or a new one.
    pub(super) fn issue_tokens(&self, entry: TokenEntry, refresh_token: Option<String>) -> Value {
        let access_token = random_alnum(64);
        let refreshing = refresh_token.is_some();
        let refresh_token = refresh_token.unwrap_or_else(|| random_alnum(64));
        let entry = Arc::new(entry);
        let mut body = json!({
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_TTL.as_secs(),
            "refresh_token": refresh_token,
            "openid": entry.openid,
            "scope": entry.scope,
        });
        if entry.scope != SNSAPI_BASE {
            if let Some(u) = entry.user.unionid {
                body["unionid"] = Value::from(u);
            }
        }
        if fixtures::is_snapshot(entry.user.key) {
            body["is_snapshotuser"] = Value::from(1);
        }
        self.access_tokens.insert(access_token, entry.clone());
        if !refreshing {
            self.refresh_tokens.insert(refresh_token, entry);
        }
        body
    }

    pub(super) fn take_failure(&self) -> Option<(FailMode, Duration)> {
        let mut guard = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let f = guard.as_mut()?;
        let out = (f.mode, f.delay);
        f.remaining = f.remaining.saturating_sub(1);
        if f.remaining == 0 {
            *guard = None;
        }
        Some(out)
    }

    pub(super) fn set_failure(&self, failure: Option<Failure>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

pub(super) fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<String, V> {
    // LRU: at capacity the oldest entries go, new codes and tokens are always admitted
    // (moka's default TinyLFU may refuse a new entry, and a login benchmark fills the cache).
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(ttl)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .build()
}

pub(super) fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refresh_keeps_the_grants_refresh_token_and_its_clock() {
        assert_eq!(REFRESH_TOKEN_TTL, Duration::from_secs(30 * 24 * 3600));
        let state = State::new(MockOptions::default());
        let entry = || TokenEntry {
            app: &APPS[0],
            user: fixtures::user("alice").unwrap(),
            scope: "snsapi_login",
            openid: "o1".into(),
        };
        let body = state.issue_tokens(entry(), None);
        let rt = body["refresh_token"].as_str().unwrap().to_string();
        let granted = state.refresh_tokens.get(&rt).unwrap();
        let again = state.issue_tokens(entry(), Some(rt.clone()));
        assert_eq!(again["refresh_token"], rt.as_str());
        assert_ne!(again["access_token"], body["access_token"]);
        // Not stored again: the entry (and the time it was stored) is the grant's.
        assert!(Arc::ptr_eq(
            &granted,
            &state.refresh_tokens.get(&rt).unwrap()
        ));
    }
}
