//! `[access]`: public paths and the hosts a login may return to; the allow lists as sets.

use crate::config::error::{invalid, ConfigError};
use crate::config::file::AccessConfig;
use crate::config::settings::AccessSettings;

pub(super) fn check(a: &AccessConfig) -> Result<AccessSettings, ConfigError> {
    for (i, pp) in a.public_paths.iter().enumerate() {
        if !pp.starts_with('/') {
            return Err(invalid(
                format!("access.public_paths[{i}]"),
                format!("'{pp}' must start with /"),
            ));
        }
    }
    for (i, h) in a.redirect_hosts.iter().enumerate() {
        if h.is_empty()
            || h.contains('/')
            || h.contains('@')
            || h.chars().any(|c| c.is_whitespace())
        {
            return Err(invalid(
                format!("access.redirect_hosts[{i}]"),
                format!("'{h}' must be a host name like shop.example.com (optionally :port)"),
            ));
        }
    }
    Ok(AccessSettings {
        public_paths: a.public_paths.clone(),
        allow_unionids: a.allow_unionids.iter().cloned().collect(),
        allow_openids: a.allow_openids.iter().cloned().collect(),
        require_unionid: a.require_unionid,
        redirect_hosts: a.redirect_hosts.clone(),
        login_rate_per_minute: a.login_rate_per_minute,
        allow_wecom_userids: a.allow_wecom_userids.iter().cloned().collect(),
    })
}
