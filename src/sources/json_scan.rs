//! A validating scanner for one JSON object: where it ends, and the raw value of each of its
//! top-level members, without building anything.
//!
//! It owns the fast path of reading a content blob (`record::parse_management_blob`). A blob's
//! records are read for four short fields and otherwise only need to be found and checked;
//! serde_json spent most of its time there on per-token dispatch for fields nobody reads, about
//! 30% of the daemon's instructions on small blobs.
//!
//! INVARIANT: whatever this scanner accepts, serde_json accepts too, and reads the same way:
//! the same end, the same members. It checks the grammar serde_json checks when it skips a
//! value (string escapes and control characters, number syntax, literals, commas and colons,
//! whitespace) and gives up (`None`) on anything it does not handle itself: its caller then
//! lets serde_json read the record, so giving up costs time, never a record.

use std::ops::Range;

/// Deeper nesting than this is left to serde_json (audit records nest a few levels).
const MAX_DEPTH: usize = 64;

/// The object starting at `start` (which must be `{`): the position just after its `}`.
///
/// `member` is told each top-level member whose key has no escape: the key's text and its
/// value's range (from the value's first byte to just after its last). It returns `false` to
/// give up. A top-level key with an escape gives up too: only serde_json decodes it the way
/// a field name is compared.
///
/// The input must be valid UTF-8 (checked once for a whole blob): only the JSON grammar is
/// checked here.
pub fn scan_object(b: &[u8], start: usize, mut member: impl FnMut(&[u8], Range<usize>) -> bool) -> Option<usize> {
    if b.get(start) != Some(&b'{') {
        return None;
    }
    // `is_object[d]`: the container at depth `d + 1` is an object (else an array).
    let mut is_object = [false; MAX_DEPTH];
    is_object[0] = true;
    let mut depth = 1;
    let mut key: Range<usize> = 0..0;
    let mut value_start = 0;
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        // At a member of an object, or an element of an array.
        if is_object[depth - 1] {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (end, escaped) = string_end(b, i + 1)?;
            if depth == 1 {
                if escaped {
                    return None;
                }
                key = i + 1..end - 1;
            }
            i = ws(b, end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
        }
        if depth == 1 {
            value_start = i;
        }
        match *b.get(i)? {
            b'"' => i = string_end(b, i + 1)?.0,
            open @ (b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return None;
                }
                is_object[depth] = open == b'{';
                depth += 1;
                i = ws(b, i + 1);
                let close = if open == b'{' { b'}' } else { b']' };
                if b.get(i) != Some(&close) {
                    continue;
                }
                // Empty: the value is complete, as a scalar would be.
                depth -= 1;
                i += 1;
            }
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // A value just ended at `depth`; close whatever ends with it.
        loop {
            if depth == 1 && !member(&b[key.clone()], value_start..i) {
                return None;
            }
            i = ws(b, i);
            let close = if is_object[depth - 1] { b'}' } else { b']' };
            match *b.get(i)? {
                b',' => {
                    i = ws(b, i + 1);
                    break;
                }
                c if c == close => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => return None,
            }
        }
    }
}

/// Past JSON whitespace, which is only these four bytes (as serde_json reads it).
pub fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The string whose first byte (after the opening quote) is at `i`: the position after its
/// closing quote, and whether it holds an escape.
fn string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        i = plain_end(b, i);
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i = escape_end(b, i + 1)?;
            }
            // A control character, which a string may not hold.
            _ => return None,
        }
    }
}

/// Whether a string's byte ends its plain run: a quote, a backslash or a control character.
fn special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The first special byte at or after `i` (or `b.len()`), sixteen bytes at a time: most of a
/// record's bytes are inside strings. SSE2 is part of every x86-64 target.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn plain_end(b: &[u8], i: usize) -> usize {
    // SAFETY: compiled only where the whole build has SSE2.
    unsafe { plain_end_sse2(b, i) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn plain_end_sse2(b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let control = _mm_set1_epi8(0x1f);
    while let Some(block) = b.get(i..i + 16) {
        // SAFETY: `block` is 16 readable bytes, and an unaligned load reads exactly those.
        let x = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        // `max(x, 0x1f) == 0x1f` is "x <= 0x1f" unsigned: SSE2 compares only signed.
        let hits = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            _mm_cmpeq_epi8(_mm_max_epu8(x, control), control),
        );
        let mask = _mm_movemask_epi8(hits) as u32;
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    plain_end_bytewise(b, i)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn plain_end(b: &[u8], i: usize) -> usize {
    plain_end_bytewise(b, i)
}

fn plain_end_bytewise(b: &[u8], i: usize) -> usize {
    b[i.min(b.len())..].iter().position(|&c| special(c)).map_or(b.len(), |n| i + n)
}

/// An escape whose letter is at `i`: the position after it. `\u` takes four hex digits, and
/// (as serde_json when it skips a string) no check that they make a valid code point.
fn escape_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => b.get(i + 1..i + 5)?.iter().all(u8::is_ascii_hexdigit).then_some(i + 5),
        _ => None,
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, the grammar serde_json checks.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => return None,
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the scanner reads of `text`: its end and its top-level members.
    fn scan(text: &str) -> Option<(usize, Vec<(String, String)>)> {
        let mut members = Vec::new();
        let end = scan_object(text.as_bytes(), 0, |k, v| {
            members.push((String::from_utf8(k.to_vec()).unwrap(), text[v].to_string()));
            true
        })?;
        Some((end, members))
    }

    /// What serde_json reads of `text` the way a record is read: one object from the start,
    /// its end, and each member's key and raw value.
    fn serde_reading(text: &str) -> Option<(usize, Vec<(String, String)>)> {
        let mut it = serde_json::Deserializer::from_str(text).into_iter::<Members>();
        let members = it.next()?.ok()?;
        Some((it.byte_offset(), members.0))
    }

    /// An object's members in order, each value kept raw.
    struct Members(Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for Members {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, Box<serde_json::value::RawValue>>()? {
                        out.push((k, v.get().to_string()));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    #[test]
    fn a_record_is_read_to_its_end_with_each_member_raw() {
        let text = r#"{ "Id" : "a-1", "N":-1.5e+3, "A":[1,{"x":[]},"\"}"] ,"O":{},"T":true,"F":false,"Z":null}  ,"#;
        let (end, members) = scan(text).unwrap();
        assert_eq!(&text[..end], &text[..text.find("null}").unwrap() + 5]);
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["Id", "N", "A", "O", "T", "F", "Z"]);
        assert_eq!(members[0].1, r#""a-1""#);
        assert_eq!(members[2].1, r#"[1,{"x":[]},"\"}"]"#);
        assert_eq!(serde_reading(text), Some((end, members)));
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{a:1}"#,
            r#"{"a":1"#,
            r#"{"a":"open"#,
            "{\"a\":\u{a0}1}",
        ] {
            assert_eq!(scan(bad), None, "{bad}");
            assert_eq!(serde_reading(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_escaped_top_level_key_or_deep_nesting_is_left_to_serde() {
        assert_eq!(scan(r#"{"I\u0064":"x"}"#), None);
        assert!(scan(r#"{"a":{"I\u0064":"x"}}"#).is_some());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(scan(&deep), None);
        assert!(serde_reading(&deep).is_some());
    }

    /// JSON-shaped text: valid values and near misses, nested a few levels.
    fn jsonish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("fals".to_string()),
            "-?(0|[1-9][0-9]{0,3}|00)(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            "\"([a-z \\x01\\t/]|\\\\[\"\\\\/bfnrtux]|\\\\u[0-9a-fA-FgG]{4}|\u{e9}|\u{1f600}){0,12}\"?",
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                (proptest::collection::vec(inner.clone(), 0..5), "[ ,\n]{0,2}")
                    .prop_map(|(v, sep)| format!("[{}]", v.join(&format!(",{sep}")))),
                (proptest::collection::vec(("\"[A-Za-z\\\\]{0,4}\"", inner), 0..5), "[ :]{0,2}").prop_map(
                    |(v, sep)| {
                        let members: Vec<String> = v.iter().map(|(k, x)| format!("{k}:{sep}{x}")).collect();
                        format!("{{{}}}", members.join(","))
                    }
                ),
            ]
        })
    }

    proptest! {
        /// The sixteen-byte search finds the first special byte, as the plain one does.
        #[test]
        fn plain_runs_end_where_they_end(b in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(b'a')], 0..80), from in 0usize..90) {
            prop_assert_eq!(plain_end(&b, from), plain_end_bytewise(&b, from));
        }

        /// Whatever the scanner reads, serde_json reads the same way: end and members. As a
        /// record's field, valid or not, a value is read or refused exactly as serde_json does:
        /// plain top-level keys and shallow nesting leave the scanner nothing to give up on.
        #[test]
        fn the_scanner_reads_as_serde_json_reads(body in jsonish(), as_field in any::<bool>(), tail in "[ ,\\]}x]{0,2}") {
            let text = if as_field { format!("{{\"Id\":{body}, \"k\" :{body}}}{tail}") } else { format!("{body}{tail}") };
            let read = scan(&text);
            if as_field {
                prop_assert_eq!(read, serde_reading(&text));
            } else if let Some(read) = read {
                prop_assert_eq!(Some(read), serde_reading(&text));
            }
        }

        /// A valid object is always read by the scanner itself (it only gives up on what it
        /// cannot decide), whatever spacing and content.
        #[test]
        fn every_valid_object_is_read(value in any::<std::collections::BTreeMap<String, (String, i64, f64, bool, Option<Vec<u8>>)>>(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { serde_json::to_string(&value).unwrap() };
            let escaped_key = value.keys().any(|k| serde_json::to_string(k).unwrap().contains('\\'));
            let read = scan(&text);
            if escaped_key {
                prop_assert_eq!(read, None);
            } else {
                prop_assert_eq!(read, serde_reading(&text));
            }
        }

        /// Cut or damaged anywhere, a record is refused or read as serde_json reads it.
        #[test]
        fn damage_is_refused_or_read_the_same(at in any::<proptest::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let text = r#"{"CreationTime":"2026-12-04T05:16:19","Id":"f366b2b2-6780","Operation":"MailItemsAccessed","RecordType":50,"X":-1.25e-3,"OperationProperties":[{"Name":"IsThrottled","Value":"False"}],"E":"a\"b\\c\u00e9","N":null,"T":[true,false,{}]}"#;
            let mut b = text.as_bytes().to_vec();
            let i = at.index(b.len());
            if cut { b.truncate(i) } else { b[i] = byte }
            if let Ok(text) = std::str::from_utf8(&b) && let Some(read) = scan(text) {
                prop_assert_eq!(Some(read), serde_reading(text));
            }
        }
    }
}
