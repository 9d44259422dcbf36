//! Login providers behind one trait. A provider knows its own login pages, API, error codes and
//! identity headers; the endpoints and the pipeline only talk to [`LoginProvider`](provider::LoginProvider) through the
//! [`Registry`](registry::Registry) built once at start. Two providers: WeChat (four app kinds,
//! `wechat/`) and WeCom (企业微信, `wecom/`, with `[wecom]`).
//!
//! Adding a provider: a folder `providers/<name>/` with a type that implements
//! [`LoginProvider`](provider::LoginProvider) (and its error type implementing [`ProviderError`](crate::common::error::ProviderError)), plus one line in
//! [`registry::Registry::from_settings`].

mod identity_cache;
pub(crate) mod provider;
pub(crate) mod registry;
pub mod wechat;
pub(crate) mod wecom;

pub(crate) use self::provider::{
    Identity, JsonCredentials, JsonEndpoint, PhoneNumber, Revalidation,
};
pub(crate) use self::registry::Registry;
pub(crate) use crate::common::error::ProviderFailure;
