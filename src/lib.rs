//! wxgate: a WeChat-login gateway. README.md is the guide; ARCHITECTURE.md maps this code.

pub mod config;
pub mod crypto;
pub mod error;
pub mod flows;
pub mod gateway;
pub mod http_util;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod login_state;
pub mod metrics;
pub mod pages;
pub mod paths;
pub mod pool;
pub mod proxy;
pub mod rate_limit;
pub mod redirect;
pub mod redis_store;
pub mod server;
pub mod session;
pub mod timer;
pub mod tls;
pub mod tools;
pub mod verification;
pub mod wechat;
