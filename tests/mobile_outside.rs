//! Issue 14.4: a phone browser outside WeChat gets a page (200) telling the user to open the
//! link in WeChat, with the link and a copy button; never a QR code of the page on the phone
//! itself. PCs still get the QR login, WeChat the official account. WeChat on a phone with only
//! the website app gets a page saying to open the link on a computer.

mod common;

use common::*;
use http::StatusCode;

const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const IPAD_SAFARI: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";

fn browser(ua: &str) -> Browser {
    Browser {
        ua: ua.into(),
        cookies: vec![],
    }
}

async fn phone_page(env: &Env, ua: &str) {
    let mut b = browser(ua);
    // A protected page sends the phone to login as usual ...
    let r = fetch(env, &mut b, "/orders?id=7").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let login = r.location();
    assert_eq!(login, "/_wxgate/login?rd=%2Forders%3Fid%3D7");
    // ... which explains how to open it in WeChat.
    let r = b.nav(&env.gw.url(&login)).await;
    assert_eq!(r.status, StatusCode::OK, "{ua}: {}", r.text());
    let page = r.text();
    assert!(page.contains("请在微信中打开"), "{page}");
    assert!(page.contains("Open this link in WeChat"), "{page}");
    let link = env.gw.url("/_wxgate/login?rd=%2Forders%3Fid%3D7");
    assert_eq!(
        find_link(&page, "open-link").as_deref(),
        Some(link.as_str())
    );
    assert!(
        page.contains(&format!("id=\"link\" readonly value=\"{}\"", link)),
        "{page}"
    );
    assert!(page.contains("<button id=\"copy\""), "{page}");
    assert!(page.contains("addEventListener('click'"), "{page}");
    assert!(!page.contains("<svg"), "no QR code on the phone itself");
    // Served like every gateway page; the CSP does not block the inline copy script.
    assert_eq!(
        r.headers["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    // No login was started: no login state, no login cookie, no trip to WeChat.
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test]
async fn mobile_safari_gets_the_open_in_wechat_page() {
    let env = env("").await;
    phone_page(&env, IPHONE_SAFARI).await;
}

#[tokio::test]
async fn android_and_ipad_get_it_too() {
    let env = env("").await;
    phone_page(&env, ANDROID_CHROME).await;
    phone_page(&env, IPAD_SAFARI).await;
}

#[tokio::test]
async fn pc_still_gets_the_qr_login_and_wechat_the_official_account() {
    let env = env("").await;
    let mut pc = Browser::pc();
    let r = pc.nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        r.location().starts_with(&format!(
            "{}/connect/qrconnect?appid={}",
            env.mock.url(),
            fixtures::WEBSITE_APPID
        )),
        "{}",
        r.location()
    );
    let mut wx = Browser::wechat();
    let r = wx.nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    assert!(
        r.location().starts_with(&format!(
            "{}/connect/oauth2/authorize?appid={}",
            env.mock.url(),
            fixtures::OFFICIAL_APPID
        )),
        "{}",
        r.location()
    );
    // And the same phone inside WeChat logs in.
    let mut inside = browser(&format!(
        "{IPHONE_SAFARI} MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI"
    ));
    assert_eq!(login(&env, &mut inside, "/in", "alice").await, "/in");
}

#[tokio::test]
async fn phone_page_with_only_a_website_app() {
    // No official account: a phone still cannot scan the website's QR code on its own screen.
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let gw = start_gateway(&config_toml(up.addr, &mock.url(), "")).await;
    let env = Env { up, mock, gw };
    phone_page(&env, IPHONE_SAFARI).await;
}

#[tokio::test]
async fn wechat_on_a_phone_with_only_a_website_app_gets_the_open_on_a_computer_page() {
    // No official account: inside WeChat on a phone, the website's QR code could only be shown
    // on the phone itself, which cannot scan it. DESIGN: "If the needed app is not configured:
    // a page that says so".
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let gw = start_gateway(&config_toml(up.addr, &mock.url(), "")).await;
    let env = Env { up, mock, gw };
    let iphone_wechat = format!("{IPHONE_SAFARI} MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI");
    for mut b in [Browser::wechat(), browser(&iphone_wechat)] {
        let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2Forders")).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", b.ua, r.text());
        let page = r.text();
        assert!(page.contains("请在电脑上打开"), "{page}");
        assert!(page.contains("Open this link on a computer"), "{page}");
        let link = env.gw.url("/_wxgate/login?rd=%2Forders");
        assert_eq!(
            find_link(&page, "open-link").as_deref(),
            Some(link.as_str())
        );
        assert!(page.contains("<button id=\"copy\""), "{page}");
        assert!(!page.contains("<svg"), "no QR code on the phone itself");
        assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    }
    // WeChat on a computer (Windows, macOS) can show the QR code: the website's login.
    for ua in [
        "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 Chrome/81 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) WindowsWechat(0x63090a13) XWEB/9129",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) MicroMessenger/6.8.0(0x16080000) MacWechat/3.8.7(0x13080710) Reporter/5.0",
    ] {
        let r = browser(ua)
            .nav(&env.gw.url("/_wxgate/login?rd=%2Forders"))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{ua}: {}", r.text());
        assert!(
            r.location().starts_with(&format!(
                "{}/connect/qrconnect?appid={}",
                env.mock.url(),
                fixtures::WEBSITE_APPID
            )),
            "{ua}: {}",
            r.location()
        );
    }
    assert_eq!(env.up.hits(), 0);
}
