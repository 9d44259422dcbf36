//! Sessions: the server-side record behind a cookie or bearer token, the logins in flight, the
//! store trait with the settings a store is built from, and the two stores (in memory on moka,
//! in Redis — one server, Cluster or Sentinel — with a moka cache in front). Knows no login provider and no endpoint; uses only `common` (the `rd` bound).

mod chosen;
mod grant;
#[cfg(test)]
mod grant_tests;
mod id;
mod lookup;
mod memory;
mod pending;
mod record;
mod redis;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;

pub use chosen::Store;
pub use grant::Grant;
pub use id::SessionId;
pub use lookup::{authenticate, Authenticated, Credentials, MAX_SESSION_COOKIES};
pub use pending::PendingLogin;
pub(crate) use record::truncate;
pub use record::{NewSession, Origin, Session};
pub use snapshot::{SnapshotError, SnapshotFile, SnapshotKey};
pub use store::{Backend, RedisDeployment, SessionStore, SessionStoreSettings, StoreError};
