//! wxgate: a WeChat-login gateway. README.md is the guide; ARCHITECTURE.md maps this code.
//!
//! Layers, top to bottom (a module may use the ones below it, never the ones above):
//! `server` (listener, TLS, timers) → `pipeline` (the phases of one request) → `endpoints`
//! (the gateway's own URLs) and `proxy` (forwarding) → `providers` (WeChat) and `session`
//! (records and stores) → `config` and `common` (errors, HTTP helpers, pages, metrics).
//! `tools` (the mock WeChat and the demo) sits beside them and is never imported by them.

pub mod common;
pub mod config;
pub mod endpoints;
pub mod pipeline;
pub mod providers;
pub mod proxy;
pub mod server;
pub mod session;
pub mod tools;
