//! The identity headers of recent sessions, kept per worker thread so that the next request of
//! the same session inserts them as they are.
//!
//! A session's unsigned identity headers are a function of its record (without the grant
//! block: [`Session::without_grant`](crate::session::Session::without_grant)) and of the
//! providers' settings alone. Building them checks every value byte by byte (`HeaderValue`),
//! and percent-encodes the nickname: about half of what the identity headers cost per request.
//! The records come back from the session store as clones of the same buffer, so a small table
//! by the record's address finds them again without hashing anything.
//!
//! Bounded: [`SLOTS`] entries per worker thread, each a copy of the record's bytes up to its
//! grant block (never the provider's tokens: an ended session's stay nowhere) and its headers.
//! The headers are built from that copy, so their values (zero-copy slices of a record) point
//! into it and never keep the record handed in, grant and all, alive.
//! A slot taken by another record is overwritten. An entry is used only for equal bytes and the
//! same registry (a reload builds a new one, see [`next_generation`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::provider::IdentityHeaders;
use crate::session::Session;

/// Entries per worker thread. An entry is 56 bytes in the table plus its record and headers:
/// about 700 bytes for a usual WeChat user, at most about 11 KiB (a 2 048-byte nickname, encoded,
/// and avatar). Full: under 1 MiB per worker as a rule, 11 MiB at the very most, and only for
/// logged-in sessions.
const SLOTS: usize = 1024;

struct Entry {
    generation: u64,
    /// The record up to its grant block; the headers' values are slices of it.
    record: Bytes,
    headers: Box<[(&'static http::HeaderName, http::HeaderValue)]>,
}

thread_local! {
    static TABLE: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
}

/// A number no other registry of this process has: the entries built under one registry are
/// not used under the next (its providers' settings may differ).
pub(super) fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The slot of a record: its address, mixed (Fibonacci hashing) so that records a fixed size
/// apart spread over the table.
fn slot_of(record: &[u8]) -> usize {
    let addr = record.as_ptr() as usize as u64;
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Calls `each` with every identity header of `session`: from the table when it holds them,
/// else built by `build` from the session without its grant (and then kept).
pub(super) fn for_each(
    generation: u64,
    session: &Session,
    build: impl FnOnce(&Session, &mut IdentityHeaders),
    mut each: impl FnMut(&'static http::HeaderName, &http::HeaderValue),
) {
    let record = session.as_bytes();
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let identity = || session.without_grant();
        let keep = || {
            // A buffer of its own holding the record up to its grant: what the entry keeps,
            // and what the headers' values slice.
            let kept = session.with_grant(None);
            let mut headers = IdentityHeaders::new();
            build(&kept, &mut headers);
            (kept.as_bytes().clone(), headers)
        };
        let e = lookup(&mut t, slot_of(record), generation, record, identity, keep);
        for (name, value) in e.headers.iter() {
            each(name, value);
        }
    })
}

/// Whether `kept` (a record up to its grant block) is `record`'s part before its grant,
/// `identity(record)`. A record of the same length is compared as it is: equal bytes parse the
/// same, so it has no grant either, and the usual record (without one) is never parsed.
fn holds<'r>(kept: &[u8], record: &'r [u8], identity: impl Fn() -> &'r [u8]) -> bool {
    if kept.len() == record.len() {
        kept == record
    } else {
        kept == identity()
    }
}

/// The entry for `record` in `slot`, made there by `keep` (the record up to its grant block,
/// equal to `identity(record)`, and the headers built from it) when the slot holds another.
fn lookup<'t, 'r>(
    table: &'t mut Vec<Option<Entry>>,
    slot: usize,
    generation: u64,
    record: &'r [u8],
    identity: impl Fn() -> &'r [u8],
    keep: impl FnOnce() -> (Bytes, IdentityHeaders),
) -> &'t Entry {
    if table.is_empty() {
        table.resize_with(SLOTS, || None);
    }
    let cell = &mut table[slot];
    match cell {
        Some(e) if e.generation == generation && holds(&e.record, record, &identity) => {}
        _ => {
            let (record, headers) = keep();
            *cell = Some(Entry {
                generation,
                record,
                headers: headers.into_boxed_slice(),
            });
        }
    }
    cell.as_ref().expect("the slot was filled above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    static NAME: HeaderName = HeaderName::from_static("x-test");

    /// Looks `record` up in `slot`; the value built is `built`, and whether it was built is
    /// returned with the value found.
    fn get(
        t: &mut Vec<Option<Entry>>,
        slot: usize,
        generation: u64,
        record: &[u8],
        built: &'static str,
    ) -> (String, bool) {
        let mut was_built = false;
        let e = lookup(
            t,
            slot,
            generation,
            record,
            || record,
            || {
                was_built = true;
                let h = vec![(&NAME, HeaderValue::from_static(built))];
                (Bytes::copy_from_slice(record), h)
            },
        );
        let v = e.headers[0].1.to_str().unwrap().to_string();
        (v, was_built)
    }

    #[test]
    fn a_record_is_built_once_then_found() {
        let mut t = Vec::new();
        let r = Bytes::from(b"record one".to_vec());
        assert_eq!(get(&mut t, 3, 1, &r, "a"), ("a".into(), true));
        assert_eq!(get(&mut t, 3, 1, &r.clone(), "b"), ("a".into(), false));
        // Equal bytes in another buffer are the same record.
        let copy = Bytes::from(b"record one".to_vec());
        assert_eq!(get(&mut t, 3, 1, &copy, "c"), ("a".into(), false));
        assert_eq!(t.len(), SLOTS);
    }

    #[test]
    fn another_record_or_registry_rebuilds() {
        let mut t = Vec::new();
        let one = Bytes::from(b"record one".to_vec());
        let two = Bytes::from(b"record two".to_vec());
        assert!(get(&mut t, 5, 1, &one, "one").1);
        // The same slot, another record: built, and it takes the slot.
        assert_eq!(get(&mut t, 5, 1, &two, "two"), ("two".into(), true));
        assert_eq!(get(&mut t, 5, 1, &one, "one"), ("one".into(), true));
        // The same record under a new registry (a reload): built again.
        assert_eq!(
            get(&mut t, 5, 2, &one, "reloaded"),
            ("reloaded".into(), true)
        );
        // What counts is the bytes: a slice of another buffer equal to the record finds it, the
        // whole of that buffer does not.
        let longer = Bytes::from(b"record one!".to_vec());
        assert_eq!(
            get(&mut t, 5, 2, &longer.slice(..10), "x"),
            ("reloaded".into(), false)
        );
        assert!(get(&mut t, 5, 2, &longer, "longer").1);
    }

    #[test]
    fn the_grant_is_neither_compared_nor_kept() {
        let mut t = Vec::new();
        let mut built = 0;
        // Records whose part before the grant is their first three bytes.
        let mut find = |t: &mut Vec<Option<Entry>>, r: &[u8]| {
            let e = lookup(
                t,
                1,
                1,
                r,
                || &r[..3],
                || {
                    built += 1;
                    let h = vec![(&NAME, HeaderValue::from_static("v"))];
                    (Bytes::copy_from_slice(&r[..3]), h)
                },
            );
            e.record.to_vec()
        };
        assert_eq!(find(&mut t, b"whoTOKEN"), b"who");
        assert_eq!(find(&mut t, b"whoNEWTOKEN"), b"who");
        assert_eq!(find(&mut t, b"who"), b"who");
        assert_eq!(find(&mut t, b"cat"), b"cat");
        assert_eq!(built, 2);
    }

    #[test]
    fn slots_spread_and_stay_in_the_table() {
        let records: Vec<Bytes> = (0..256)
            .map(|i| Bytes::from(format!("record {i}").into_bytes()))
            .collect();
        let slots: std::collections::HashSet<usize> = records.iter().map(|r| slot_of(r)).collect();
        assert!(slots.iter().all(|&s| s < SLOTS));
        assert!(slots.len() > 128, "{} slots for 256 records", slots.len());
    }

    #[test]
    fn generations_are_unique() {
        let a = next_generation();
        let b = next_generation();
        assert_ne!(a, b);
    }
}
