//! The `json` interface (`weir:plugin@0.1.1` and later): strict JSON checking done natively for
//! guests. An interpreted guest (CPython, a JavaScript engine) spends most of a call
//! turning a body into objects to check it; this returns the offsets of an object's
//! top-level members instead, and the guest slices what it needs.

use super::bindings::mapper::weir::plugin::json::{Host, Member, ObjectIndex};
use super::state::State;

/// Deepest nesting of arrays and objects accepted (the outer object counts as one).
pub const MAX_DEPTH: usize = 64;

/// Largest document `index-object` takes; a larger one fails the call. The index is one
/// uninterruptible host call, and the host's copy of the document and its index are
/// memory the guest's cap does not see, so both are bounded: the document here, the
/// index by what is left of the plugin's `max_memory`.
pub const MAX_DOCUMENT: usize = 16 << 20;

impl Host for State {
    fn index_object(&mut self, document: Vec<u8>) -> wasmtime::Result<Option<ObjectIndex>> {
        if document.len() > MAX_DOCUMENT {
            return Err(wasmtime::format_err!(
                "json.index-object: a document of {} bytes is over the {MAX_DOCUMENT}-byte limit",
                document.len()
            ));
        }
        let left = self.memory.left().saturating_sub(document.len());
        let max_members = left / std::mem::size_of::<Member>();
        match index_object_within(&document, max_members) {
            Ok(index) => Ok(index),
            Err(TooManyMembers) => {
                self.memory.hit = true;
                Err(wasmtime::format_err!(
                    "json.index-object: the index of this document would take more than what is left of max_memory"
                ))
            }
        }
    }
}

/// The index would hold more members than allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyMembers;

/// The top-level members of `doc` and the offset of its closing brace, if `doc` is one
/// JSON object (RFC 8259, UTF-8, at most [`MAX_DEPTH`] levels) with only whitespace
/// around it. Offsets fit `u32`: a guest's memory is at most 4 GiB.
pub fn index_object(doc: &[u8]) -> Option<ObjectIndex> {
    index_object_within(doc, usize::MAX).unwrap_or(None)
}

/// [`index_object`] with at most `max_members` members in the index.
pub fn index_object_within(
    doc: &[u8],
    max_members: usize,
) -> Result<Option<ObjectIndex>, TooManyMembers> {
    if u32::try_from(doc.len()).is_err() || std::str::from_utf8(doc).is_err() {
        return Ok(None);
    }
    let mut p = Parser {
        doc,
        at: 0,
        max_members,
        over: false,
    };
    p.skip_ws();
    let mut members = Vec::new();
    if p.object(1, Some(&mut members)).is_none() {
        return if p.over {
            Err(TooManyMembers)
        } else {
            Ok(None)
        };
    }
    let close = p.at - 1;
    p.skip_ws();
    if p.at != doc.len() {
        return Ok(None);
    }
    Ok(Some(ObjectIndex {
        members,
        close: close as u32,
    }))
}

/// A recursive-descent checker over bytes; every method returns `None` on malformed
/// input and leaves `at` just past what it read otherwise.
struct Parser<'a> {
    doc: &'a [u8],
    at: usize,
    /// Most members the index may hold; past it, `over` is set and parsing stops.
    max_members: usize,
    over: bool,
}

impl Parser<'_> {
    fn next_is(&self, c: u8) -> bool {
        self.doc.get(self.at) == Some(&c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.next_is(c).then(|| self.at += 1)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.doc.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match *self.doc.get(self.at)? {
            b'{' => self.object(depth + 1, None),
            b'[' => self.array(depth + 1),
            b'"' => self.string(),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object at nesting `depth`; with `members`, the key and value span of each of
    /// its members (offsets fit `u32`: the caller checked the document's length). Every
    /// member takes at least 6 bytes of input and 16 of index, so the index is at most
    /// about three times the document (which the guest's memory cap bounds).
    fn object(&mut self, depth: usize, mut members: Option<&mut Vec<Member>>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        self.skip_ws();
        if self.expect(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_ws();
            let key_start = self.at + 1;
            self.string()?;
            let key_end = self.at - 1;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value_start = self.at;
            self.value(depth)?;
            if let Some(members) = members.as_deref_mut() {
                if members.len() >= self.max_members {
                    self.over = true;
                    return None;
                }
                members.push(Member {
                    key_start: key_start as u32,
                    key_end: key_end as u32,
                    value_start: value_start as u32,
                    value_end: self.at as u32,
                });
            }
            self.skip_ws();
            if self.expect(b'}').is_some() {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        self.skip_ws();
        if self.expect(b']').is_some() {
            return Some(());
        }
        loop {
            self.skip_ws();
            self.value(depth)?;
            self.skip_ws();
            if self.expect(b']').is_some() {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// A string; the document is known to be UTF-8, so only escapes and control
    /// characters need checking.
    fn string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            match *self.doc.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    match *self.doc.get(self.at)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.doc.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.doc[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    fn digits(&mut self) -> usize {
        let from = self.at;
        while self.doc.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - from
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let _ = self.expect(b'-');
        if self.expect(b'0').is_none() && self.digits() == 0 {
            return None;
        }
        if self.expect(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.doc.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.doc.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(key, value)` of each member, as text, and the closing brace's offset.
    fn index(doc: &str) -> Option<(Vec<(&str, &str)>, usize)> {
        let ix = index_object(doc.as_bytes())?;
        let text = |a: u32, b: u32| &doc[a as usize..b as usize];
        let members = ix
            .members
            .iter()
            .map(|m| {
                (
                    text(m.key_start, m.key_end),
                    text(m.value_start, m.value_end),
                )
            })
            .collect();
        Some((members, ix.close as usize))
    }

    #[test]
    fn indexes_top_level_members_by_offset() {
        let doc = r#" { "a" : 1 , "b\"c":[1,{"a":2}],"a":"x\u00e9", "e": {} } "#;
        let (members, close) = index(doc).unwrap();
        assert_eq!(
            members,
            [
                ("a", "1"),
                (r#"b\"c"#, r#"[1,{"a":2}]"#),
                ("a", r#""x\u00e9""#),
                ("e", "{}")
            ]
        );
        assert_eq!(close, doc.len() - 2);
        assert_eq!(index("{}").unwrap(), (vec![], 1));
        let (members, _) = index(r#"{"n":-0.5e+10,"t":true,"f":false,"z":null}"#).unwrap();
        assert_eq!(members[0], ("n", "-0.5e+10"));
        assert_eq!(members[3], ("z", "null"));
    }

    #[test]
    fn refuses_what_is_not_one_strict_json_object() {
        for bad in [
            "",
            " ",
            "[]",
            "\"s\"",
            "1",
            "{",
            "{}}",
            "{} {}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{'a':1}"#,
            r#"{a:1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":NaN}"#,
            r#"{"a":Infinity}"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":1}\u{0}",
            "\u{feff}{}",
            "{\"a\":1}\u{a0}",
        ] {
            assert!(index(bad).is_none(), "accepted {bad:?}");
        }
        assert!(
            index_object(b"{\"a\":\"\xff\"}").is_none(),
            "accepted invalid UTF-8"
        );
    }

    #[test]
    fn nesting_is_limited_to_64_levels() {
        let nested = |levels: usize| {
            let mut s = "{\"a\":".to_string();
            s.push_str(&"[".repeat(levels - 1));
            s.push_str(&"]".repeat(levels - 1));
            s.push('}');
            s
        };
        assert!(index(&nested(MAX_DEPTH)).is_some());
        assert!(index(&nested(MAX_DEPTH + 1)).is_none());
        // Deep input is refused without deep recursion.
        assert!(index(&nested(100_000)).is_none());
    }
}
