//! Request-path rules (DESIGN.md "Proxying" → Paths), as pure functions over the raw path.
//!
//! The gateway never rewrites a path: what the upstream receives is the path the client sent.
//! So every decision the gateway takes on a path (gateway endpoint, verification file, public
//! path) must hold for every way an upstream could read that path. Java servers (Tomcat, Jetty,
//! Spring) cut `;parameters` from each segment *before* resolving dot segments, so
//! `/public/..;/private` reaches them as `/private`; others decode `%2e`, overlong UTF-8,
//! fullwidth dots, or take `\` for `/`. Two rules follow:
//!
//! 1. **Refused (400) on every path**: a segment that reads as `.` or `..` once `;parameters`
//!    are cut and percent-escapes are decoded. To cover what the various servers do, segments
//!    are also split at `\`, `%2f` and `%5c`, parameters are also cut at `%3b`, and a dot is any
//!    of `.`, `%2e`/`%2E`, `%u002e`, the overlong UTF-8 forms `%c0%ae`, `%e0%80%ae`,
//!    `%f0%80%80%ae`, and the look-alikes U+FF0E `．`, U+2024 `․`, U+FE52 `﹒` (U+2025 `‥` counts
//!    as two), raw or percent-encoded. A `%00` anywhere is refused too (C-based upstreams cut
//!    the path there). Nothing legitimate has such segments.
//! 2. **Public-path matching** (and the gateway's own prefix) uses the *match form*: the path with
//!    `;parameters` cut from each `/` segment. A public match is granted only to a *plain* path,
//!    one no upstream can read as another path: no `\`, no empty segment inside, no segment of
//!    only dots (and spaces), every `%` followed by two hex digits, no escape that decodes to
//!    `.`, `/`, `\`, `%` (double encoding), `;` or a control character, valid UTF-8 once decoded
//!    (no overlong forms) and no look-alike of `.`, `/` or `\`. Everything else that is not
//!    refused passes through unchanged, but needs a login like any protected path.
//!
//! Other `;parameters` (`/app;jsessionid=1/x`, a trailing `;`) pass through unchanged.
//! [`check_path`] scans the bytes once and allocates nothing; a segment without `%`, `;`, `\`,
//! space or non-ASCII byte (the usual case) is settled by that scan alone. The matches the
//! gateway makes ([`PathView::match_starts_with`], [`PathView::match_in_namespace`]) allocate
//! nothing either; only `PathView::match_form` (tests) may.

#[cfg(test)]
use std::borrow::Cow;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has a segment that reads as `.` or `..` (after `;parameters` are cut and escapes such as `%2e` are decoded)")]
    DotSegment,
    #[error("the path holds an encoded NUL byte (%00)")]
    Nul,
}

/// A path that passed [`check_path`], with what the gateway's decisions need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathView<'a> {
    raw: &'a str,
    /// Some segment carries `;parameters`: the match form differs from the raw path.
    params: bool,
    /// No upstream can read the match form as another path (see the module docs).
    plain: bool,
}

impl<'a> PathView<'a> {
    /// The path as received, and as it goes upstream.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn has_params(&self) -> bool {
        self.params
    }

    /// Whether a public-path match may be granted to this path.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The bytes of the match form: the raw path with `;parameters` cut from each segment.
    fn match_bytes(&self) -> impl Iterator<Item = u8> + 'a {
        let mut in_params = false;
        self.raw.bytes().filter(move |&c| {
            if c == b'/' {
                in_params = false;
                true
            } else if in_params {
                false
            } else if c == b';' {
                in_params = true;
                false
            } else {
                true
            }
        })
    }

    /// The path with `;parameters` cut from each segment (borrowed when there are none).
    #[cfg(test)]
    pub fn match_form(&self) -> Cow<'a, str> {
        if !self.params {
            return Cow::Borrowed(self.raw);
        }
        let bytes: Vec<u8> = self.match_bytes().collect();
        // Only whole `;…` runs (ASCII-delimited) are removed: still UTF-8.
        Cow::Owned(String::from_utf8(bytes).unwrap_or_default())
    }

    /// Whether the match form starts with `prefix`.
    pub fn match_starts_with(&self, prefix: &str) -> bool {
        if !self.params {
            return self.raw.starts_with(prefix);
        }
        let mut it = self.match_bytes();
        prefix.bytes().all(|p| it.next() == Some(p))
    }

    /// Whether the match form is `prefix` or lies under `prefix/`.
    pub fn match_in_namespace(&self, prefix: &str) -> bool {
        if !self.params {
            return in_namespace(self.raw, prefix);
        }
        let mut it = self.match_bytes();
        prefix.bytes().all(|p| it.next() == Some(p)) && matches!(it.next(), None | Some(b'/'))
    }
}

/// `path` is `prefix` or starts with `prefix/`.
pub fn in_namespace(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// Check a request path (the path part of the request target, without the query).
pub fn check_path(raw: &str) -> Result<PathView<'_>, PathError> {
    let b = raw.as_bytes();
    let mut plain = b.first() == Some(&b'/');
    let mut params = false;
    let mut seg_start = 0;
    // Whether the current segment holds `%`, `;`, `\`, a space or a non-ASCII byte.
    let mut special = false;
    let mut only_dots = true;
    let mut i = 0;
    loop {
        if i == b.len() || b[i] == b'/' {
            let seg = &b[seg_start..i];
            let edge = seg_start == 0 || i == b.len();
            if special {
                let s = slow_segment(seg)?;
                params |= s.params;
                plain &= s.plain && (edge || !s.empty);
            } else if seg.is_empty() {
                plain &= edge;
            } else if only_dots {
                if seg.len() <= 2 {
                    return Err(PathError::DotSegment);
                }
                plain = false;
            }
            if i == b.len() {
                break;
            }
            i += 1;
            seg_start = i;
            special = false;
            only_dots = true;
            continue;
        }
        match b[i] {
            b'.' => {}
            // A raw space is no valid URI byte, but if one comes, it counts as in `%20`.
            b'%' | b';' | b'\\' | b' ' | 0x80.. => {
                special = true;
                only_dots = false;
            }
            _ => only_dots = false,
        }
        i += 1;
    }
    Ok(PathView { raw, params, plain })
}

/// What the slow path learns about one `/` segment.
struct Segment {
    params: bool,
    /// The segment's core (before `;`) is plain.
    plain: bool,
    /// The core is empty (`/a/;x/b` has the match form `/a//b`).
    empty: bool,
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The byte of a `%XX` escape at `s[i]`, if there is one.
fn escape_at(s: &[u8], i: usize) -> Option<u8> {
    if s.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*s.get(i + 1)?)? << 4 | hex(*s.get(i + 2)?)?)
}

/// The code point of a `%uXXXX` escape (IIS, old Jetty) at `s[i]`, if there is one.
fn u_escape_at(s: &[u8], i: usize) -> Option<u32> {
    if s.get(i) != Some(&b'%') || !matches!(s.get(i + 1), Some(b'u' | b'U')) {
        return None;
    }
    let mut v = 0u32;
    for k in 0..4 {
        v = v << 4 | u32::from(hex(*s.get(i + 2 + k)?)?);
    }
    Some(v)
}

/// One step of decoding at `s[i]`: the decoded bytes (at most 4) and the raw length consumed.
fn decode_step(s: &[u8], i: usize) -> ([u8; 4], usize, usize) {
    let mut out = [0u8; 4];
    if let Some(v) = escape_at(s, i) {
        out[0] = v;
        return (out, 1, 3);
    }
    if let Some(cp) = u_escape_at(s, i) {
        let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
        let n = c.encode_utf8(&mut out).len();
        return (out, n, 6);
    }
    out[0] = s[i];
    (out, 1, 1)
}

/// Dots, as decoded bytes, that some upstream reads as `.`; the second value is how many.
const DOT_UNITS: &[(&[u8], usize)] = &[
    (b".", 1),
    (&[0xc0, 0xae], 1),             // overlong UTF-8 '.'
    (&[0xe0, 0x80, 0xae], 1),       // overlong UTF-8 '.'
    (&[0xf0, 0x80, 0x80, 0xae], 1), // overlong UTF-8 '.'
    ("\u{ff0e}".as_bytes(), 1),     // fullwidth full stop
    ("\u{2024}".as_bytes(), 1),     // one dot leader
    ("\u{fe52}".as_bytes(), 1),     // small full stop
    ("\u{2025}".as_bytes(), 2),     // two dot leader
];

/// Whether decoded bytes read as `.` or `..`.
fn is_dot_core(mut d: &[u8]) -> bool {
    let mut dots = 0;
    while !d.is_empty() {
        let Some((unit, n)) = DOT_UNITS.iter().find(|(u, _)| d.starts_with(u)) else {
            return false;
        };
        dots += n;
        d = &d[unit.len()..];
    }
    (1..=2).contains(&dots)
}

/// Characters that some upstream (Unicode normalisation, "best fit" mappings) reads as `.`,
/// `/` or `\`: never in a plain path.
fn is_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{2024}'
            | '\u{2025}'
            | '\u{2026}'
            | '\u{2044}'
            | '\u{2215}'
            | '\u{29f5}'
            | '\u{fe52}'
            | '\u{fe68}'
            | '\u{ff0e}'
            | '\u{ff0f}'
            | '\u{ff3c}'
    )
}

/// A streaming UTF-8 check of decoded bytes (escapes and raw bytes mixed), rejecting overlong
/// forms and look-alikes.
#[derive(Default)]
struct Utf8Check {
    buf: [u8; 4],
    have: usize,
    need: usize,
    ok: bool,
}

impl Utf8Check {
    fn new() -> Self {
        Utf8Check {
            ok: true,
            ..Default::default()
        }
    }

    fn push(&mut self, c: u8) {
        if self.need == 0 {
            self.need = match c {
                0x00..=0x7f => return,
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => {
                    self.ok = false;
                    return;
                }
            };
            self.have = 0;
        }
        self.buf[self.have] = c;
        self.have += 1;
        if self.have == self.need {
            self.need = 0;
            match std::str::from_utf8(&self.buf[..self.have]) {
                Ok(s) if !s.chars().any(is_lookalike) => {}
                _ => self.ok = false,
            }
        }
    }

    fn finish(&self) -> bool {
        self.ok && self.need == 0
    }
}

/// The rules for one `/` segment holding `%`, `;`, `\` or a non-ASCII byte.
fn slow_segment(seg: &[u8]) -> Result<Segment, PathError> {
    // Rule 1 (refusal), over sub-segments split at `\`, `%2f`, `%5c`, each cut at `;` / `%3b`.
    // Only a short decoded core can be a dot segment: 8 bytes hold the longest (two 4-byte
    // overlong dots).
    let mut i = 0;
    let mut core = [0u8; 8];
    let mut core_len = 0usize;
    let mut overflow = false;
    let mut cut = false;
    loop {
        if i == seg.len() {
            if !overflow && is_dot_core(&core[..core_len]) {
                return Err(PathError::DotSegment);
            }
            break;
        }
        let (d, dn, n) = decode_step(seg, i);
        let one = (dn == 1).then_some(d[0]);
        // `\`, and `/` or `\` escaped (`%2f`, `%5c`, `%u002f`): a separator for some upstream.
        if seg[i] == b'\\' || (n > 1 && matches!(one, Some(b'/' | b'\\'))) {
            if !overflow && is_dot_core(&core[..core_len]) {
                return Err(PathError::DotSegment);
            }
            core_len = 0;
            overflow = false;
            cut = false;
            i += n;
            continue;
        }
        match one {
            Some(0) => return Err(PathError::Nul),
            // `;` or `%3b`: parameters start.
            Some(b';') => cut = true,
            _ => {}
        }
        if !cut {
            if core_len + dn <= core.len() {
                core[core_len..core_len + dn].copy_from_slice(&d[..dn]);
                core_len += dn;
            } else {
                overflow = true;
            }
        }
        i += n;
    }

    // Rule 2 (plainness of the match form's segment: the part before the first `;`).
    let end = seg.iter().position(|&c| c == b';');
    let params = end.is_some();
    let core = &seg[..end.unwrap_or(seg.len())];
    let mut plain = true;
    let mut utf8 = Utf8Check::new();
    let mut only_dots = true;
    let mut i = 0;
    while i < core.len() && plain {
        let c = core[i];
        let decoded = if c == b'%' {
            match escape_at(core, i) {
                Some(v) => {
                    if v < 0x20 || v == 0x7f || b"./\\%;".contains(&v) {
                        plain = false;
                    }
                    i += 3;
                    v
                }
                None => {
                    plain = false;
                    break;
                }
            }
        } else {
            if c == b'\\' {
                plain = false;
            }
            i += 1;
            c
        };
        if decoded != b'.' && decoded != b' ' {
            only_dots = false;
        }
        utf8.push(decoded);
    }
    // `...`, `..%20`: Windows servers drop trailing dots and spaces.
    let dots_only = only_dots && !core.is_empty();
    plain = plain && utf8.finish() && !dots_only;
    Ok(Segment {
        params,
        plain,
        empty: core.is_empty(),
    })
}

/// A path with nothing an upstream might normalise differently from us: accepted by
/// [`check_path`] and plain (no dot segments, no encoded dots or slashes, no
/// backslashes, no empty segments, no `;parameters` hiding any of these).
#[cfg(test)]
pub fn is_plain_path(path: &str) -> bool {
    check_path(path).is_ok_and(|v| v.is_plain())
}

/// A domain-verification file name (`MP_verify_*.txt` and the like):
/// `^[A-Za-z0-9_-]+_verify_[A-Za-z0-9]+\.txt$`
pub fn is_verification_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".txt") else {
        return false;
    };
    // The tail after the last `_verify_` must be alphanumeric, so the split is the last one.
    let Some(at) = stem.rfind("_verify_") else {
        return false;
    };
    let (head, tail) = (&stem[..at], &stem[at + "_verify_".len()..]);
    !head.is_empty()
        && !tail.is_empty()
        && head
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && tail.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;
