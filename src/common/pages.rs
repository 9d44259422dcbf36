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
svg{display:block;margin:1rem auto;width:12rem;height:12rem}\
dl.ids{margin:1rem 0 0;padding:.6rem .8rem;background:#f4f5f7;border-radius:6px;font-size:.85rem}\
dl.ids dt{color:#666;margin-top:.3rem}dl.ids dd{margin:0 0 .3rem}dl.ids code{word-break:break-all;user-select:all}\
@media (max-width:30rem){main{margin:1rem;padding:1.25rem}}";

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
    // The status line only on error pages (an operator reads it off a screenshot).
    let code = if p.status.as_u16() >= 400 {
        format!("<p class=\"code\">HTTP {} · wxgate</p>", p.status.as_u16())
    } else {
        String::new()
    };
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{tzh} / {ten}</title>\
<style>{STYLE}</style></head><body><main><h1>{tzh}</h1><h2>{ten}</h2><p>{mzh}</p><p class=\"en\">{men}</p>{extra}{action}\
{code}</main></body></html>",
        tzh = escape(p.title.zh),
        ten = escape(p.title.en),
        mzh = escape(p.message.zh),
        men = escape(p.message.en),
        extra = p.extra_html.unwrap_or_default(),
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

/// After a logout without `rd`: "signed out", with a link to sign in again (never an
/// automatic new login: inside WeChat that would sign the user straight back in).
pub fn signed_out(login_url: &str) -> Response<Body> {
    render(Page {
        status: StatusCode::OK,
        title: Text {
            zh: "已退出登录",
            en: "Signed out",
        },
        message: Text {
            zh: "您已退出本站。",
            en: "You have signed out of this site.",
        },
        action: Some((
            login_url,
            Text {
                zh: "重新登录",
                en: "Sign in",
            },
        )),
        extra_html: None,
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
        let html = body_text(r);
        assert!(html.contains("<svg"));
        assert!(!html.contains("HTTP 200"), "no status line on a 200 page");
    }

    fn body_text(r: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_lite_block(r.into_body().collect()).unwrap();
        String::from_utf8(bytes.to_bytes().to_vec()).unwrap()
    }

    fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn error_pages_keep_the_status_line() {
        let r = render(Page {
            status: StatusCode::FORBIDDEN,
            title: Text { zh: "a", en: "b" },
            message: Text { zh: "c", en: "d" },
            action: None,
            extra_html: None,
        });
        assert!(body_text(r).contains("HTTP 403 · wxgate"));
    }

    #[test]
    fn signed_out_links_to_login() {
        let r = signed_out("/_wxgate/login?rd=%2F");
        assert_eq!(r.status(), StatusCode::OK);
        let html = body_text(r);
        assert!(html.contains("已退出登录") && html.contains("Signed out"));
        assert!(html.contains("href=\"/_wxgate/login?rd=%2F\""));
    }
}
