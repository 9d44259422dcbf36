//! Sessions: the server-side record behind a cookie or bearer token, the store trait, and the
//! in-memory store on moka (absolute TTL, idle timeout, bounded capacity). The same store
//! keeps the short-lived records of logins in flight.

pub mod redis;

mod id;
mod lookup;
mod memory;
mod pending;
mod record;
mod store;
#[cfg(test)]
mod tests;

pub use id::SessionId;
pub use lookup::{authenticate, Authenticated, Credentials, MAX_SESSION_COOKIES};
pub use memory::{MemoryStore, MAX_PENDING_BYTES};
pub use pending::PendingLogin;
pub use record::{NewSession, Origin, Session};
pub use store::{SessionStore, Store, StoreError};
