//! The request path, in phases, a file each:
//!
//! 1. strip: hop-by-hop headers (`proxy/hop_by_hop.rs`), spoofed identity headers (`strip.rs`)
//! 2. route: path rules (`common/paths.rs`), gateway endpoints (`endpoints/`), verification files
//!    (`verification.rs`), public paths (`route.rs`)
//! 3. authenticate: the session behind a cookie or bearer token (`authenticate.rs`)
//! 4. authorize: the access rules (`access.rs`)
//! 5. inject: the identity headers (the provider's, through `providers::Registry`), `X-Forwarded-*`
//!    (`proxy/forwarded.rs`)
//! 6. forward: to the upstream (`proxy/`)
//! 7. response: security headers, upstream `Set-Cookie` filtering, metrics, access log
//!    (`response.rs`)
//!
//! `route.rs` holds the order; [`App`] (`app.rs`) is what every phase reads.

pub(crate) mod access;
mod app;
pub(crate) mod authenticate;
pub(crate) mod response;
mod route;
pub(crate) mod strip;
pub(crate) mod verification;

pub use self::app::App;
