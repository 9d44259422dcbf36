//! Shared helpers every layer may use, naming nothing above them: the one error →
//! status/page/JSON mapping, HTTP helpers, cookie and bearer-token parsing, the path rules, the
//! gateway's pages, return-URL validation, metrics, logging, and the runtime pieces the server
//! and the proxy share (the coarse timer, [`held::Held`] sockets).

pub mod audit;
pub(crate) mod capped_body;
pub(crate) mod cookies;
pub mod error;
pub(crate) mod held;
pub mod http_util;
pub mod logging;
pub mod metrics;
pub mod pages;
pub(crate) mod paths;
pub mod redirect;
pub(crate) mod timer;
