//! wxgate: a WeChat-login gateway. See DESIGN.md (the contract) and README.md.

pub mod config;
pub mod crypto;
pub mod dev;
pub mod error;
pub mod flows;
pub mod gateway;
pub mod http_util;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod login_state;
pub mod metrics;
pub mod mock;
pub mod pages;
pub mod pool;
pub mod proxy;
pub mod redirect;
pub mod redis_store;
pub mod server;
pub mod session;
pub mod timer;
pub mod tls;
pub mod verification;
pub mod wechat;
