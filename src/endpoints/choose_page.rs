//! The page `/login` shows a browser several providers can log in (a PC with both WeChat and
//! WeCom configured): one button per provider, each `/login` again with `via=<provider id>`.

use http::{Response, StatusCode};
use percent_encoding::utf8_percent_encode;

use crate::common::http_util::Body;
use crate::common::pages::{escape, render, Page, Text};
use crate::common::redirect::COMPONENT;
use crate::config::Settings;
use crate::providers::provider::LoginProvider;

/// `{prefix}/login?rd=RD&via=ID` for each provider, as buttons (HTML, escaped).
fn buttons(prefix: &str, rd: &str, providers: &[&dyn LoginProvider]) -> String {
    let rd = utf8_percent_encode(rd, COMPONENT);
    let mut html = String::from("<p>");
    for p in providers {
        let label = p.label();
        html.push_str(&format!(
            "<a id=\"via-{id}\" href=\"{href}\" style=\"display:block;margin:.6rem 0;padding:.8rem;border-radius:6px;\
background:#07c160;color:#fff;text-decoration:none;text-align:center\">{zh} / {en}</a>",
            id = escape(p.id()),
            href = escape(&format!("{prefix}/login?rd={rd}&via={}", p.id())),
            zh = escape(label.zh),
            en = escape(label.en),
        ));
    }
    html.push_str("</p>");
    html
}

/// "Sign in with …" (200).
pub(super) fn choose(s: &Settings, rd: &str, providers: &[&dyn LoginProvider]) -> Response<Body> {
    render(Page {
        status: StatusCode::OK,
        title: Text {
            zh: "选择登录方式",
            en: "Choose how to sign in",
        },
        message: Text {
            zh: "请选择用微信还是企业微信登录。",
            en: "Sign in with WeChat, or with WeCom (企业微信) if you are an employee.",
        },
        action: None,
        extra_html: Some(buttons(s.prefix(), rd, providers)),
    })
}
