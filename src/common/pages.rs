//! The gateway's own pages: small, bilingual (中文 / English), no external assets.

use http::{Response, StatusCode};

use crate::common::http_util::{respond, Body, HTML};

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One message in both languages.
pub struct Text<'a> {
    pub zh: &'a str,
    pub en: &'a str,
}

pub struct Page<'a> {
    pub status: StatusCode,
    pub title: Text<'a>,
    pub message: Text<'a>,
    /// A link the user can follow (retry, home), with its label.
    pub action: Option<(&'a str, Text<'a>)>,
    /// Trusted HTML added below the message (e.g. an inline SVG QR code).
    pub extra_html: Option<String>,
}

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;background:#f4f5f7;margin:0;color:#222}\
main{max-width:28rem;margin:12vh auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 2px 12px #0001}\
h1{font-size:1.25rem;margin:0 0 .25rem}h2{font-size:1rem;font-weight:normal;color:#666;margin:0 0 1rem}\
p{line-height:1.6;margin:.4rem 0}p.en{color:#555}a.btn{display:inline-block;margin-top:1rem;padding:.6rem 1.2rem;\
background:#07c160;color:#fff;border-radius:6px;text-decoration:none}.code{color:#999;font-size:.8rem;margin-top:1.5rem}\
svg{display:block;margin:1rem auto;width:12rem;height:12rem}";

pub fn render(p: Page<'_>) -> Response<Body> {
    let action = p
        .action
        .map(|(href, label)| {
            format!(
                "<a class=\"btn\" href=\"{}\">{} / {}</a>",
                escape(href),
                escape(label.zh),
                escape(label.en)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{tzh} / {ten}</title>\
<style>{STYLE}</style></head><body><main><h1>{tzh}</h1><h2>{ten}</h2><p>{mzh}</p><p class=\"en\">{men}</p>{extra}{action}\
<p class=\"code\">HTTP {code} · wxgate</p></main></body></html>",
        tzh = escape(p.title.zh),
        ten = escape(p.title.en),
        mzh = escape(p.message.zh),
        men = escape(p.message.en),
        extra = p.extra_html.unwrap_or_default(),
        code = p.status.as_u16(),
    );
    respond(p.status, HTML, html)
}

/// "Open this page in WeChat", with a QR code of `url` to scan.
pub fn open_in_wechat(url: &str) -> Response<Body> {
    let svg = qrcode::QrCode::new(url.as_bytes())
        .map(|qr| {
            qr.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
        })
        .ok();
    // The SVG document starts with an XML declaration; inline only the <svg> element.
    let svg = svg.map(|s| match s.find("<svg") {
        Some(i) => s[i..].to_string(),
        None => s,
    });
    render(Page {
        status: StatusCode::OK,
        title: Text {
            zh: "请在微信中打开",
            en: "Open this page in WeChat",
        },
        message: Text {
            zh: "本站仅支持在微信内登录。请用微信扫描下方二维码打开本页。",
            en: "This site signs you in inside WeChat only. Scan the QR code below with WeChat to open this page there.",
        },
        action: None,
        extra_html: svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn qr_page_has_svg() {
        let r = open_in_wechat("https://app.example.com/_wxgate/login?rd=%2F");
        assert_eq!(r.status(), StatusCode::OK);
    }
}
