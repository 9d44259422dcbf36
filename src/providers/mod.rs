//! Login providers: WeChat (its API client, lenient JSON reader and crypto).

pub mod wechat;
