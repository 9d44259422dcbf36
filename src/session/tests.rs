use std::time::Duration;

use bytes::Bytes;

use super::memory::{pending_weight, MemoryStore, MAX_PENDING_BYTES};
use super::record::MAX_FIELD;
use super::*;

/// A provider's kind as the record sees it: two bytes.
const WEBSITE: Origin = Origin {
    provider: 0,
    kind: 0,
};

fn sample(exp: u64) -> Session {
    Session::new(&NewSession {
        openid: "o1",
        unionid: Some("u1"),
        appid: "wx1",
        origin: WEBSITE,
        nickname: "A B",
        avatar: "",
        expires_at: exp,
    })
}

#[test]
fn session_record_round_trip() {
    let n = NewSession {
        openid: "oOpen",
        unionid: None,
        appid: "wxA",
        origin: Origin {
            provider: 7,
            kind: 3,
        },
        nickname: "Alice 🐼\u{7}",
        avatar: "https://a/b/132",
        expires_at: 99,
    };
    let s = Session::new(&n);
    assert_eq!(s.openid(), "oOpen");
    assert_eq!(s.unionid(), None);
    assert_eq!(s.unionid_header(), None);
    assert_eq!(s.appid(), "wxA");
    assert_eq!(
        s.origin(),
        Origin {
            provider: 7,
            kind: 3
        }
    );
    assert_eq!(s.nickname(), "Alice 🐼\u{7}");
    let plain = Session::new(&NewSession {
        nickname: "Bob_1.x~",
        ..n
    });
    assert_eq!(plain.nickname_header_raw().unwrap(), "Bob_1.x~");
    assert_eq!(s.avatar(), "https://a/b/132");
    assert_eq!(s.expires_at(), 99);
    let back = Session::from_bytes(s.as_bytes().clone()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn corrupt_records_rejected() {
    let s = sample(5);
    let b = s.as_bytes().clone();
    assert!(Session::from_bytes(b.slice(..b.len() - 1)).is_none());
    assert!(Session::from_bytes(Bytes::from_static(b"{}")).is_none());
    let mut v = b.to_vec();
    v[0] = 9;
    assert!(Session::from_bytes(Bytes::from(v)).is_none());
    let mut v = b.to_vec();
    v.push(b'x');
    assert!(Session::from_bytes(Bytes::from(v)).is_none());
}

/// A version-2 record (before providers) as the gateway wrote it to Redis, byte by byte.
fn v2_record(source: u8, session_key: Option<&str>) -> Vec<u8> {
    let (openid, unionid, appid, nick, avatar) = ("oOpen", "oUnion", "wxA", "王", "https://a/0");
    let mut v = vec![2, source];
    v.extend_from_slice(&7u32.to_le_bytes()); // created_at
    v.extend_from_slice(&99u32.to_le_bytes()); // expires_at
    v.extend_from_slice(&[openid.len() as u8, unionid.len() as u8, appid.len() as u8]);
    v.extend_from_slice(&(nick.len() as u16).to_le_bytes());
    v.extend_from_slice(&(avatar.len() as u16).to_le_bytes());
    v.push(session_key.map_or(255, |k| k.len() as u8));
    for f in [openid, unionid, appid, nick, avatar] {
        v.extend_from_slice(f.as_bytes());
    }
    v.extend_from_slice(session_key.unwrap_or("").as_bytes());
    v
}

#[test]
fn version_2_records_are_read() {
    for (source, key) in [(0, None), (1, None), (3, Some("k3y=="))] {
        let s = Session::from_bytes(Bytes::from(v2_record(source, key))).unwrap();
        // Provider 0 (WeChat, the only one then); the v2 source byte is its kind.
        assert_eq!(
            s.origin(),
            Origin {
                provider: 0,
                kind: source
            }
        );
        assert_eq!(s.openid(), "oOpen");
        assert_eq!(s.unionid(), Some("oUnion"));
        assert_eq!(s.appid(), "wxA");
        assert_eq!(s.nickname(), "王");
        assert_eq!(s.avatar(), "https://a/0");
        assert_eq!(s.expires_at(), 99);
        // Converted: the session key is gone, and it reads back as itself.
        assert!(!s.as_bytes().windows(5).any(|w| w == b"k3y=="));
        assert_eq!(s.as_bytes()[0], 4);
        assert_eq!(Session::from_bytes(s.as_bytes().clone()), Some(s));
    }
    // A v2 record with an unknown source, or cut short, is no session.
    assert!(Session::from_bytes(Bytes::from(v2_record(4, None))).is_none());
    let v = v2_record(0, None);
    assert!(Session::from_bytes(Bytes::from(v[..v.len() - 1].to_vec())).is_none());
}

#[test]
fn oversized_fields_are_bounded() {
    let long = "é".repeat(5000);
    let s = Session::new(&NewSession {
        openid: "o",
        unionid: None,
        appid: "a",
        origin: WEBSITE,
        nickname: "",
        avatar: &long,
        expires_at: 1,
    });
    assert!(s.avatar().len() <= MAX_FIELD);
    assert!(Session::from_bytes(s.as_bytes().clone()).is_some());
}

#[test]
fn id_round_trip_and_strict_parse() {
    let id = SessionId::random();
    let s = id.encode();
    assert_eq!(s.len(), 22);
    assert_eq!(SessionId::parse(&s), Some(id));
    assert_eq!(SessionId::parse(&s[..21]), None);
    assert_eq!(SessionId::parse(&format!("{s}A")), None);
    assert_eq!(SessionId::parse(&"!".repeat(22)), None);
    // The last character carries 2 spare bits: only the canonical form is accepted.
    let mut alt = s.clone().into_bytes();
    alt[21] = if alt[21] == b'A' { b'B' } else { b'A' };
    let alt = String::from_utf8(alt).unwrap();
    assert_ne!(SessionId::parse(&alt), Some(id));
    assert_ne!(SessionId::random(), id);
    assert!(!format!("{id:?}").contains(&s));
}

#[tokio::test]
async fn pending_is_weighed_by_bytes() {
    let st = MemoryStore::new(&SessionStoreSettings {
        ttl: Duration::from_secs(60),
        idle: Duration::from_secs(60),
        capacity: 10,
        backend: Backend::Memory,
        snapshot: None,
    });
    let big = PendingLogin {
        rd: format!("/{}", "x".repeat(crate::common::redirect::MAX_RD - 1)),
        origin: WEBSITE,
    };
    let per = pending_weight(&"n".repeat(32), &big) as u64;
    let fits = MAX_PENDING_BYTES / per;
    for i in 0..fits + 2000 {
        st.put_pending(&format!("{i:032}"), big.clone(), Duration::from_secs(600))
            .await
            .unwrap();
    }
    st.pending.run_pending_tasks();
    assert!(st.pending.weighted_size() <= MAX_PENDING_BYTES);
    assert!(
        st.pending.entry_count() <= fits,
        "{}",
        st.pending.entry_count()
    );
    // The newest logins are the ones kept.
    let last = format!("{:032}", fits + 1999);
    assert_eq!(st.take_pending(&last).await.unwrap(), Some(big.clone()));
    // An over-long rd is never stored.
    let huge = PendingLogin {
        rd: "/".repeat(crate::common::redirect::MAX_RD + 1),
        origin: WEBSITE,
    };
    assert!(st
        .put_pending("h", huge, Duration::from_secs(1))
        .await
        .is_err());
}
