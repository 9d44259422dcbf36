//! Shared helpers every layer may use: the one error → status/page/JSON mapping, HTTP helpers,
//! the gateway's pages, return-URL validation, metrics and logging.

pub(crate) mod cookies;
pub mod error;
pub mod http_util;
pub mod logging;
pub mod metrics;
pub mod pages;
pub(crate) mod paths;
pub mod redirect;
