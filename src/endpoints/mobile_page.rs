//! The pages a phone gets from `/login` when it cannot log in where it is, with the link and a
//! button that copies it: outside WeChat, open this link in WeChat; inside WeChat with only the
//! website's QR login, open it on a computer. Never a QR code: the phone cannot scan its own
//! screen. The copy button is a few lines of inline script; the gateway's pages carry only
//! `Content-Security-Policy: frame-ancestors 'none'`, which leaves inline scripts alone, and
//! the link stays selectable (and copyable by hand) without script.

use http::{Response, StatusCode};

use crate::common::http_util::Body;
use crate::common::pages::{escape, render, Page, Text};

/// The copy button's script: the Clipboard API where the page is a secure context, else the
/// selected input and `execCommand("copy")` (older in-app browsers).
const COPY_SCRIPT: &str = "<script>(function(){var b=document.getElementById('copy'),i=document.getElementById('link');\
if(!b||!i)return;b.addEventListener('click',function(){i.focus();i.select();i.setSelectionRange(0,i.value.length);\
var done=function(){b.textContent='\u{5df2}\u{590d}\u{5236} / Copied'};\
var old=function(){try{document.execCommand('copy');done()}catch(e){}};\
if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(i.value).then(done,old)}else{old()}});})();</script>";

/// The link, a read-only field holding it, and the copy button (HTML, `url` escaped).
fn link_html(url: &str) -> String {
    let u = escape(url);
    format!(
        "<p><a id=\"open-link\" href=\"{u}\" style=\"word-break:break-all\">{u}</a></p>\
<p><input id=\"link\" readonly value=\"{u}\" style=\"width:100%;box-sizing:border-box;padding:.5rem;font-size:.9rem\" aria-label=\"link\">\
<button id=\"copy\" type=\"button\" style=\"margin-top:.6rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#07c160;color:#fff;font-size:1rem\">\
复制链接 / Copy link</button></p>{COPY_SCRIPT}"
    )
}

/// "Open this link in WeChat" for a phone browser (200).
pub(super) fn open_in_wechat_on_phone(url: &str) -> Response<Body> {
    render(Page {
        status: StatusCode::OK,
        title: Text {
            zh: "请在微信中打开",
            en: "Open this link in WeChat",
        },
        message: Text {
            zh: "本站使用微信登录，需在微信内打开。请复制下方链接，在微信中发给自己（例如发到「文件传输助手」），再点击链接打开。",
            en: "This site signs you in with WeChat, inside WeChat. Copy the link below, send it to yourself in WeChat (for example to “File Transfer”), then tap it there.",
        },
        action: None,
        extra_html: Some(link_html(url)),
    })
}

/// "Open this link on a computer" for WeChat on a phone when the site has only the website's
/// QR login (200).
pub(super) fn open_on_computer(url: &str) -> Response<Body> {
    render(Page {
        status: StatusCode::OK,
        title: Text {
            zh: "请在电脑上打开",
            en: "Open this link on a computer",
        },
        message: Text {
            zh: "本站的微信登录需要在电脑浏览器中打开，再用手机微信扫码，无法在手机微信内完成。请复制下方链接，在电脑浏览器中打开（例如发到「文件传输助手」，在电脑上打开）。",
            en: "This site signs you in by scanning, with WeChat on your phone, a code shown in a computer's browser; it cannot be done inside WeChat on the phone. Copy the link below and open it in a browser on your computer (for example, send it to “File Transfer” and open it there).",
        },
        action: None,
        extra_html: Some(link_html(url)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_is_escaped_and_no_qr_code() {
        let html = link_html("https://app.example.com/_wxgate/login?rd=%2F&x=\"<y>");
        assert!(html.contains(
            "href=\"https://app.example.com/_wxgate/login?rd=%2F&amp;x=&quot;&lt;y&gt;\""
        ));
        assert!(html.contains("id=\"copy\""));
        assert!(!html.contains("<svg"));
        assert!(!html.contains("\"<y>"));
        let r = open_in_wechat_on_phone("https://app.example.com/");
        assert_eq!(r.status(), StatusCode::OK);
        let r = open_on_computer("https://app.example.com/");
        assert_eq!(r.status(), StatusCode::OK);
    }
}
