use base64::Engine;

use super::*;

#[test]
fn keys_hold_no_usable_id() {
    for _ in 0..64 {
        let id = SessionId::random();
        let key = session_key(&id);
        assert!(key.starts_with("wxgate:s:"), "{key}");
        let lower = key.to_ascii_lowercase();
        assert!(!lower.contains(&hex::encode(id.0)), "{key}");
        assert!(!key.contains(&id.encode()), "{key}");
        for b64 in [
            base64::engine::general_purpose::STANDARD.encode(id.0),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.0),
        ] {
            assert!(!key.contains(b64.trim_end_matches('=')), "{key}");
        }
        // Nor the raw bytes (a key is a String: ASCII hex after the prefix).
        assert!(!key.as_bytes().windows(16).any(|w| w == id.0));
        // Same id, same key; another id, another key.
        assert_eq!(key, session_key(&id));
        assert_ne!(key, session_key(&SessionId::random()));
    }
}

#[test]
fn px_is_whole_milliseconds_at_least_one() {
    assert_eq!(px(Duration::ZERO), 1);
    assert_eq!(px(Duration::from_micros(1500)), 1);
    assert_eq!(px(Duration::from_millis(150)), 150);
    assert_eq!(px(Duration::from_secs(600)), 600_000);
}

#[test]
fn invalidation_messages_round_trip() {
    let key: Digest = digest(&SessionId::random());
    for m in [
        Message::Session { from: 7, key },
        Message::Session {
            from: u64::MAX,
            key: [0; 32],
        },
        Message::Heartbeat { from: 1, ms: 0 },
        Message::Heartbeat {
            from: 0xfeed,
            ms: u64::MAX,
        },
    ] {
        assert_eq!(Message::decode(m.encode().as_bytes()), Some(m));
    }
    // The message names the key digest, never the id.
    let id = SessionId::random();
    let m = Message::Session {
        from: 1,
        key: digest(&id),
    }
    .encode();
    assert!(
        !m.contains(&id.encode()) && !m.contains(&hex::encode(id.0)),
        "{m}"
    );
    for bad in [
        "",
        "s",
        "s:1:00",
        "x:0000000000000001:1",
        "h:0000000000000001:",
        "h:0000000000000001:-1",
        "h:0000000000000001:99999999999999999999999",
        "h:000000000000001:5",
        "s:0000000000000001:zz00000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert_eq!(Message::decode(bad.as_bytes()), None, "{bad:?}");
    }
}

proptest::proptest! {
    #[test]
    fn decoding_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
        let _ = Message::decode(&raw);
    }
}

#[test]
fn a_fill_racing_an_invalidation_leaves_nothing_stale() {
    let c = cache::Cache::new(Duration::from_secs(60), 100);
    c.heartbeat_seen(c.clock_ms());
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let s = Session::new(&crate::session::NewSession {
        openid: "o",
        unionid: None,
        appid: "wx",
        origin: crate::session::Origin {
            provider: 0,
            kind: 1,
        },
        nickname: "",
        avatar: "",
        expires_at: u64::MAX,
    });
    // A read started, an invalidation came in, the read finishes: not cached.
    let e = c.epoch();
    c.invalidate(&a);
    c.fill(a, s.clone(), e);
    assert!(c.get_trusted(&a).is_none());
    // An undisturbed read is cached, and served while trusted.
    let e = c.epoch();
    c.fill(b, s.clone(), e);
    assert!(c.get_trusted(&b).is_some());
    // A lost subscription: nothing is trusted, and nothing is left.
    c.distrust_and_clear();
    assert!(c.get_trusted(&b).is_none());
    assert_eq!(c.len(), 0);
    // Trust ends FRESH after the last heartbeat seen.
    c.put(b, s);
    c.heartbeat_seen(c.clock_ms());
    assert!(c.get_trusted(&b).is_some());
    std::thread::sleep(cache::FRESH + Duration::from_millis(50));
    assert!(!c.trusted() && c.get_trusted(&b).is_none());
    assert!(c.get_any(&b).is_some(), "still there for an outage");
}
