//! The path rules' cases and properties.

use super::*;
use proptest::prelude::*;

fn refused(p: &str) -> Option<PathError> {
    check_path(p).err()
}

#[test]
fn refused_forms() {
    for p in [
        "/a/../b",
        "/a/./b",
        "/..",
        "/.",
        "/a/..",
        "/a/..;/b",
        "/a/..;x=1/b",
        "/a/.;/b",
        "/a/%2e%2e;x/b",
        "/a/%2E%2e/b",
        "/a/.%2e/b",
        "/a/%2e/b",
        "/public/..;/private/secret",
        "/public/..;x=1/private",
        "/public/.;/..;/private",
        "/public/%2e%2e;/private",
        "/public/..%3b/private",
        "/public/..%3Bx/private",
        "/public/a%2f..%2fprivate",
        "/public/a%5C..%5cprivate",
        "/public\\..\\private",
        "/public/%c0%ae%c0%ae/private",
        "/public/%C0%AE/private",
        "/public/%e0%80%ae%e0%80%ae/private",
        "/public/%ef%bc%8e%ef%bc%8e/private",
        "/public/．．/private",
        "/public/‥/private",
        "/public/%u002e%u002e/private",
        "/public/%U002E./private",
        "/_wxgate/..;/x",
        "/_wxgate/%2e%2e/x",
    ] {
        assert_eq!(refused(p), Some(PathError::DotSegment), "{p}");
    }
    assert_eq!(refused("/a%00/b"), Some(PathError::Nul));
    assert_eq!(refused("/a;x=%00/b"), Some(PathError::Nul));
}

#[test]
fn accepted_forms() {
    // (path, plain, match form)
    for (p, plain, form) in [
        ("/", true, "/"),
        ("", false, ""),
        ("*", false, "*"),
        ("/public/", true, "/public/"),
        ("/public/index.jsp", true, "/public/index.jsp"),
        (
            "/public/index.jsp;jsessionid=ABC",
            true,
            "/public/index.jsp",
        ),
        ("/public;jsessionid=1/index.jsp", true, "/public/index.jsp"),
        ("/app;jsessionid=1/x", true, "/app/x"),
        ("/public/x;", true, "/public/x"),
        ("/public/x;/", true, "/public/x/"),
        ("/a/;x/b", false, "/a//b"),
        ("/a//b", false, "/a//b"),
        ("/a/.../b", false, "/a/.../b"),
        ("/a/..%20/b", false, "/a/..%20/b"),
        ("/a/...;/b", false, "/a/.../b"),
        ("/a/.well-known/x", true, "/a/.well-known/x"),
        (
            "/.well-known/acme-challenge/t",
            true,
            "/.well-known/acme-challenge/t",
        ),
        ("/a/..x/b", true, "/a/..x/b"),
        ("/a/x../b", true, "/a/x../b"),
        ("/a/%252e%252e/b", false, "/a/%252e%252e/b"),
        ("/a/%2e%2e%2e/b", false, "/a/%2e%2e%2e/b"),
        ("/a/x%2ejs", false, "/a/x%2ejs"),
        ("/a/%2fb", false, "/a/%2fb"),
        ("/a/%5cb", false, "/a/%5cb"),
        ("/a/%zz", false, "/a/%zz"),
        ("/a/%", false, "/a/%"),
        ("/a/%c0%afb", false, "/a/%c0%afb"),
        ("/a/%ef%bc%8fb", false, "/a/%ef%bc%8fb"),
        ("/a/x\\y", false, "/a/x\\y"),
        ("/中文/文件.png", true, "/中文/文件.png"),
        ("/%E4%B8%AD/x", true, "/%E4%B8%AD/x"),
        ("/%E4%B8/x", false, "/%E4%B8/x"),
        ("/a%20b/c", true, "/a%20b/c"),
        ("/a/;..", true, "/a/"),
        ("/a;../b", true, "/a/b"),
        ("/a;%2e%2e/b", true, "/a/b"),
    ] {
        let v = check_path(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(v.is_plain(), plain, "{p} plain");
        assert_eq!(v.match_form(), form, "{p} match form");
        assert_eq!(v.raw(), p);
    }
}

#[test]
fn matching() {
    let v = check_path("/public;jsessionid=1/index.jsp").unwrap();
    assert!(v.match_starts_with("/public/"));
    assert!(!v.match_starts_with("/public;"));
    let v = check_path("/_wxgate;x/login").unwrap();
    assert!(v.match_in_namespace("/_wxgate"));
    assert!(!in_namespace(v.raw(), "/_wxgate"));
    assert!(check_path("/_wxgate;x")
        .unwrap()
        .match_in_namespace("/_wxgate"));
    assert!(!check_path("/_wxgatex;y")
        .unwrap()
        .match_in_namespace("/_wxgate"));
    assert!(check_path("/_wxgate/x")
        .unwrap()
        .match_in_namespace("/_wxgate"));
    assert!(!check_path("/_wxgat")
        .unwrap()
        .match_in_namespace("/_wxgate"));
}

/// The design's rule, written the slow and obvious way: split at `/`, cut at `;`, read
/// `%2e` as `.`.
fn reference_dot(path: &str) -> bool {
    path.split('/').any(|seg| {
        let core = seg.split(';').next().unwrap_or("");
        let lowered = core.to_ascii_lowercase().replace("%2e", ".");
        lowered == "." || lowered == ".."
    })
}

/// Every way an upstream could decode a segment core: fully percent-decoded.
fn fully_decoded(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        ".",
        ".",
        "..",
        "%2e",
        "%2E",
        ";",
        ";x=1",
        "/",
        "/",
        "\\",
        "%",
        "%2f",
        "%5c",
        "%3b",
        "%25",
        "%252e",
        "%c0%ae",
        "%ef%bc%8e",
        "%u002e",
        "%00",
        "a",
        "b",
        "jsessionid=1",
        " ",
        "%20",
        "．",
        "%e4%b8%ad",
        "中",
    ])
    .prop_map(str::to_string)
}

/// What holds for every accepted path.
fn check_properties(path: &str) -> Result<(), TestCaseError> {
    let Ok(v) = check_path(path) else {
        return Ok(());
    };
    // The design's rule never disagrees with an acceptance.
    prop_assert!(!reference_dot(path), "accepted {path}");
    let form = v.match_form();
    prop_assert_eq!(v.has_params(), path.contains(';'));
    for p in ["/", "/a", "/a/", "/a/b"] {
        prop_assert_eq!(v.match_starts_with(p), form.starts_with(p));
        prop_assert_eq!(v.match_in_namespace(p), in_namespace(&form, p));
    }
    // Appending a jsessionid changes nothing the gateway decides on.
    let with = format!("{path};jsessionid=ABC.node1");
    let w = check_path(&with).expect("still accepted");
    prop_assert_eq!(w.match_form(), form.clone());
    prop_assert_eq!(w.is_plain(), v.is_plain());
    if v.is_plain() {
        // A plain match form decodes to one path however often it is decoded, with no
        // dot segment, no backslash, no empty segment inside.
        let once = fully_decoded(&form);
        prop_assert!(!once.contains(&b'%'), "{path}");
        prop_assert!(!once.contains(&b'\\'), "{path}");
        let once = String::from_utf8(once).expect("plain is UTF-8");
        let segs: Vec<&str> = once.split('/').collect();
        for (k, s) in segs.iter().enumerate() {
            prop_assert!(*s != "." && *s != "..", "{path}");
            prop_assert!(!s.is_empty() || k == 0 || k + 1 == segs.len(), "{path}");
        }
        // The match form is itself a plain path with no parameters.
        let again = check_path(&form).expect("form accepted");
        prop_assert!(again.is_plain());
        prop_assert!(!again.has_params());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_string_never_panics(s in "\\PC*") {
        check_properties(&s)?;
    }

    #[test]
    fn built_paths(pieces in prop::collection::vec(piece(), 0..12)) {
        check_properties(&format!("/{}", pieces.concat()))?;
    }

    #[test]
    fn escape_soup(s in "(%[0-9a-fA-F]{2}|%u[0-9a-fA-F]{4}|[./;\\\\a])*") {
        check_properties(&format!("/{s}"))?;
    }
}

#[test]
fn plain_paths() {
    assert!(is_plain_path("/static/app.js"));
    assert!(is_plain_path("/static/a.b/c"));
    assert!(is_plain_path("/static/app.js;jsessionid=1"));
    assert!(is_plain_path("/static;v=2/app.js"));
    for p in [
        "/static/../admin",
        "/static/%2e%2e/admin",
        "/static/%2E./admin",
        "/static/..%2fadmin",
        "/static//admin",
        "/static\\..\\admin",
        "/static/.",
        "/static/..;/admin",
        "/static/.;/..;/admin",
        "/static/%252e%252e/admin",
        "/static/%c0%ae%c0%ae/admin",
        "/static/a;x/../admin",
        "/static/;x/admin",
    ] {
        assert!(!is_plain_path(p), "{p}");
    }
}

#[test]
fn verification_names() {
    assert!(is_verification_name("MP_verify_abc123.txt"));
    assert!(is_verification_name("WW_verify_Xy9.txt"));
    assert!(is_verification_name("a-b_c_verify_x_verify_9.txt"));
    assert!(!is_verification_name("MP_verify_.txt"));
    assert!(!is_verification_name("_verify_abc.txt"));
    assert!(!is_verification_name("MP_verify_ab-c.txt"));
    assert!(!is_verification_name("MP_verify_abc.txt.bak"));
    assert!(!is_verification_name("MP_verify_abc.TXT"));
    assert!(!is_verification_name("../MP_verify_abc.txt"));
    assert!(!is_verification_name("MP_verify_a%2e.txt"));
}
