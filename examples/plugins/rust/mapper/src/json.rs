//! A strict JSON scanner (RFC 8259) that finds the top-level members of an object by
//! byte span, so a field can be replaced without re-encoding the rest of the body.
//! Every language's example implements these same rules, so they all agree on which
//! bodies are malformed and produce byte-identical output.

/// Deepest nesting of arrays and objects accepted; deeper is malformed.
pub const MAX_DEPTH: usize = 64;

/// One top-level member: its key as written between the quotes (escapes not decoded)
/// and the byte range of its value.
struct Member {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, None),
            b'[' => {
                if depth + 1 > MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat(b']').is_some() {
                        return Some(());
                    }
                    self.eat(b',')?;
                }
            }
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object; with `members`, records each member's key and value spans.
    fn object(&mut self, depth: usize, mut members: Option<&mut Vec<Member>>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key_start = self.i + 1;
            self.string()?;
            let key = key_start..self.i - 1;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let value_start = self.i;
            self.value(depth)?;
            if let Some(m) = members.as_deref_mut() {
                m.push(Member {
                    key,
                    value: value_start..self.i,
                });
            }
            self.ws();
            if self.eat(b'}').is_some() {
                return Some(());
            }
            self.eat(b',')?;
        }
    }

    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if self.eat(b'0').is_none() && self.digits() == 0 {
            return None;
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}

/// `s` as a JSON string: `"` and `\` escaped, `\n`, `\r`, `\t`, other control
/// characters as `\u00xx`; everything else as it is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sets each top-level `field` of the JSON object `body` to the string `value`:
/// every member whose key is written exactly as `field` gets the new value, and a field
/// that is absent is appended before the closing brace. `None` when `body` is not valid
/// UTF-8, not a JSON object, or not JSON.
pub fn set_fields(body: &[u8], fields: &[(String, String)]) -> Option<Vec<u8>> {
    std::str::from_utf8(body).ok()?;
    let mut s = Scanner { b: body, i: 0 };
    let mut members = Vec::new();
    s.ws();
    if s.peek() != Some(b'{') {
        return None;
    }
    s.object(1, Some(&mut members))?;
    let close = s.i - 1;
    s.ws();
    if s.i != body.len() {
        return None;
    }

    // (range to replace, replacement), in body order.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut added = String::new();
    let mut count = members.len();
    for (field, value) in fields {
        let mut found = false;
        for m in &members {
            if &body[m.key.clone()] == field.as_bytes() {
                edits.push((m.value.clone(), quote(value)));
                found = true;
            }
        }
        if !found {
            if count > 0 {
                added.push(',');
            }
            added.push_str(&quote(field));
            added.push(':');
            added.push_str(&quote(value));
            count += 1;
        }
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(body.len() + added.len() + 16);
    let mut at = 0;
    for (range, text) in edits {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(text.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(&body[at..close]);
    out.extend_from_slice(added.as_bytes());
    out.extend_from_slice(&body[close..]);
    Some(out)
}
