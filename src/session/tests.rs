use std::time::Duration;

use bytes::Bytes;

use super::memory::{pending_weight, MemoryStore, MAX_PENDING_BYTES};
use super::record::MAX_FIELD;
use super::*;

fn sample(exp: u64) -> Session {
    Session::new(&NewSession {
        openid: "o1",
        unionid: Some("u1"),
        appid: "wx1",
        source: Source::Website,
        nickname: "A B",
        avatar: "",
        created_at: 0,
        expires_at: exp,
        session_key: None,
    })
}

#[test]
fn session_record_round_trip() {
    let n = NewSession {
        openid: "oOpen",
        unionid: None,
        appid: "wxA",
        source: Source::MiniProgram,
        nickname: "Alice 🐼\u{7}",
        avatar: "https://a/b/132",
        created_at: 7,
        expires_at: 99,
        session_key: Some("k3y=="),
    };
    let s = Session::new(&n);
    assert_eq!(s.openid(), "oOpen");
    assert_eq!(s.unionid(), None);
    assert_eq!(s.unionid_header(), None);
    assert_eq!(s.appid(), "wxA");
    assert_eq!(s.source(), Source::MiniProgram);
    assert_eq!(s.nickname(), "Alice 🐼\u{7}");
    let plain = Session::new(&NewSession {
        nickname: "Bob_1.x~",
        ..n
    });
    assert_eq!(plain.nickname_header().unwrap(), "Bob_1.x~");
    assert_eq!(s.nickname_header().unwrap(), "Alice%20%F0%9F%90%BC%07");
    assert_eq!(s.avatar(), "https://a/b/132");
    assert_eq!((s.created_at(), s.expires_at()), (7, 99));
    assert_eq!(s.session_key(), Some("k3y=="));
    assert!(
        !format!("{s:?}").contains("k3y"),
        "Debug hides the session key"
    );
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

#[test]
fn oversized_fields_are_bounded() {
    let long = "é".repeat(5000);
    let s = Session::new(&NewSession {
        openid: "o",
        unionid: None,
        appid: "a",
        source: Source::Website,
        nickname: "",
        avatar: &long,
        created_at: 0,
        expires_at: 1,
        session_key: None,
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
    });
    let big = PendingLogin {
        rd: format!("/{}", "x".repeat(crate::common::redirect::MAX_RD - 1)),
        source: Source::Website,
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
        source: Source::Website,
    };
    assert!(st
        .put_pending("h", huge, Duration::from_secs(1))
        .await
        .is_err());
}
