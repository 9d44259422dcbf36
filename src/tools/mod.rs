//! Tools around the gateway, not part of it: the mock WeChat platform (`wxgate mock-wechat`,
//! tests) and the one-command demo (`wxgate dev`). The gateway's own code never imports this
//! folder; only `main.rs`, tests and benchmarks do.

pub mod dev;
pub mod dev_link;
pub mod mock;
