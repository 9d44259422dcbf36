//! The grant block inside session records (`grant.rs` + `record.rs`): records carry it, and
//! version-3 records (without it) still read.

use bytes::Bytes;

use super::{Grant, NewSession, Origin, Session};

fn grant() -> Grant {
    Grant {
        access_token: "AT_ACCESS".into(),
        refresh_token: "RT_REFRESH_TOKEN".into(),
        access_expires_at: 1_900_000_000,
        granted_at: 1_800_000_000,
    }
}

#[test]
fn records_carry_the_grant_and_version_3_still_reads() {
    let s = Session::new(&NewSession {
        openid: "oOpen",
        unionid: None,
        appid: "wxA",
        origin: Origin {
            provider: 0,
            kind: 1,
        },
        nickname: "王🐼",
        avatar: "https://a/0",
        expires_at: 99,
    });
    assert_eq!(s.grant(), None);
    let with = s.with_grant(Some(&grant()));
    assert_eq!(with.grant(), Some(grant()));
    assert_eq!(with.granted_at(), Some(1_800_000_000));
    assert_eq!(
        (with.openid(), with.unionid(), with.nickname()),
        ("oOpen", None, "王🐼")
    );
    assert_eq!(with.as_bytes()[0], 4);
    let back = Session::from_bytes(with.as_bytes().clone()).unwrap();
    assert_eq!(back.grant(), Some(grant()));
    assert_eq!(with.with_grant(None), s);
    // Who the session is, without the tokens: the same bytes with the grant as without it.
    assert_eq!(with.without_grant(), s.as_bytes().as_ref());
    // A version-3 record (the same strings, neither the link block — its last two bytes
    // here, both "absent" — nor a grant) still reads.
    let mut v3 = s.as_bytes()[..s.as_bytes().len() - 2].to_vec();
    assert_eq!(&s.as_bytes()[v3.len()..], &[255, 255]);
    v3[0] = 3;
    let old = Session::from_bytes(Bytes::from(v3.clone())).unwrap();
    assert_eq!(
        (old.openid(), old.avatar(), old.grant()),
        ("oOpen", "https://a/0", None)
    );
    // Version 3 never had a grant block; a damaged one is no session.
    let mut v3_tail = v3;
    v3_tail.extend_from_slice(&with.as_bytes()[s.as_bytes().len()..]);
    assert!(Session::from_bytes(Bytes::from(v3_tail)).is_none());
    let cut = with.as_bytes().slice(..with.as_bytes().len() - 1);
    assert!(Session::from_bytes(cut).is_none());
    // Account linking and the grant live side by side: either can change without the other.
    let linked = with.with_link(Some("42"), Some("+8613800000000"));
    assert_eq!(linked.grant(), Some(grant()));
    assert_eq!(linked.user_id(), Some("42"));
    let back = Session::from_bytes(linked.as_bytes().clone()).unwrap();
    assert_eq!(
        (back.grant(), back.phone()),
        (Some(grant()), Some("+8613800000000"))
    );
    let regranted = back.with_grant(None);
    assert_eq!((regranted.grant(), regranted.user_id()), (None, Some("42")));
    assert_eq!(regranted, s.with_link(Some("42"), Some("+8613800000000")));
}
