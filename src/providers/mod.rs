//! Login providers behind one trait. A provider knows its own login pages, API, error codes and
//! identity headers; the endpoints and the pipeline only talk to [`LoginProvider`](provider::LoginProvider) through the
//! [`Registry`](registry::Registry) built once at start. WeChat (four app kinds) is the one provider today.
//!
//! Adding a provider: a folder `providers/<name>/` with a type that implements
//! [`LoginProvider`](provider::LoginProvider) (and its error type implementing [`ProviderError`](crate::common::error::ProviderError)), plus one line in
//! [`registry::Registry::from_settings`].

pub mod provider;
pub mod registry;
pub mod wechat;

pub use self::provider::{BrowserMatch, Identity, JsonCredentials, JsonEndpoint, LoginProvider};
pub use self::registry::Registry;
pub use crate::common::error::{ErrorClass, ProviderError, ProviderFailure};
