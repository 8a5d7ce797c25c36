//! Route selection expressions: which route a WebSocket message goes to.
//!
//! Two forms, as Amazon API Gateway has them: `$request.body.action` (one JSON path) and
//! templates such as `${request.body.service}/${request.body.action}` (literal text
//! around any number of JSON paths). A message that is not a JSON object, or lacks a
//! path, or has a path that is not a string, number or boolean, selects no route.

use std::fmt;

const BODY: &str = "request.body.";

/// A parsed route selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A JSON path into the message body, one key per element.
    Body(Vec<String>),
}

impl std::str::FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix('$')
            && !rest.starts_with('{')
        {
            let path = rest.strip_prefix(BODY).ok_or_else(|| {
                format!(
                    "`{s}`: expected `$request.body.PATH` or a `${{request.body.PATH}}` template"
                )
            })?;
            return Ok(Selection(vec![Part::Body(json_path(path, s)?)]));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`{s}`: unclosed `${{`"))?;
            let path = after[..end].strip_prefix(BODY).ok_or_else(|| {
                format!(
                    "`{s}`: `${{{}}}` must refer to `request.body.PATH`",
                    &after[..end]
                )
            })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Body(json_path(path, s)?));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Body(_))) {
            return Err(format!(
                "`{s}`: must refer to the message body, e.g. `$request.body.action`"
            ));
        }
        Ok(Selection(parts))
    }
}

fn json_path(path: &str, whole: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
    if keys
        .iter()
        .any(|k| k.is_empty() || k.contains(['{', '}', '$']))
    {
        return Err(format!("`{whole}`: invalid JSON path `{path}`"));
    }
    Ok(keys)
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [Part::Body(keys)] = self.0.as_slice() {
            return write!(f, "$request.body.{}", keys.join("."));
        }
        for part in &self.0 {
            match part {
                Part::Literal(s) => f.write_str(s)?,
                Part::Body(keys) => write!(f, "${{request.body.{}}}", keys.join("."))?,
            }
        }
        Ok(())
    }
}

impl Selection {
    /// The route key a message selects, if any.
    pub fn select(&self, message: &[u8]) -> Option<String> {
        // Only a JSON object can hold the paths; skip parsing anything else.
        let first = message.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(message).ok()?;
        let mut key = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(s) => key.push_str(s),
                Part::Body(path) => {
                    let mut v = &body;
                    for k in path {
                        v = v.as_object()?.get(k)?;
                    }
                    match v {
                        serde_json::Value::String(s) => key.push_str(s),
                        serde_json::Value::Number(n) => key.push_str(&n.to_string()),
                        serde_json::Value::Bool(b) => {
                            key.push_str(if *b { "true" } else { "false" })
                        }
                        _ => return None,
                    }
                }
            }
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selection {
        s.parse().unwrap()
    }

    #[test]
    fn selects_by_one_path() {
        let s = sel("$request.body.action");
        assert_eq!(s.select(br#"{"action":"send"}"#).as_deref(), Some("send"));
        assert_eq!(s.select(br#" {"action":7}"#).as_deref(), Some("7"));
        assert_eq!(s.select(br#"{"action":true}"#).as_deref(), Some("true"));
        assert_eq!(s.select(br#"{"other":"send"}"#), None);
        assert_eq!(s.select(br#"{"action":{"x":1}}"#), None);
        assert_eq!(s.select(br#"{"action":null}"#), None);
        assert_eq!(s.select(b"send"), None);
        assert_eq!(s.select(br#"["send"]"#), None);
        assert_eq!(s.select(br#"{"action":"#), None);
        assert_eq!(s.select(b"\xff\xfe"), None);
        assert_eq!(s.select(b""), None);
    }

    #[test]
    fn selects_nested_paths_and_templates() {
        let s = sel("$request.body.meta.kind");
        assert_eq!(
            s.select(br#"{"meta":{"kind":"chat"}}"#).as_deref(),
            Some("chat")
        );
        assert_eq!(s.select(br#"{"meta":"chat"}"#), None);
        let t = sel("${request.body.service}/${request.body.action}");
        assert_eq!(
            t.select(br#"{"service":"rooms","action":"join"}"#)
                .as_deref(),
            Some("rooms/join")
        );
        assert_eq!(t.select(br#"{"service":"rooms"}"#), None);
        let t = sel("v1:${request.body.a.b}!");
        assert_eq!(t.select(br#"{"a":{"b":"x"}}"#).as_deref(), Some("v1:x!"));
    }

    #[test]
    fn rejects_bad_expressions() {
        for (bad, want) in [
            ("$request.header.x", "expected `$request.body.PATH`"),
            ("$request.body.", "invalid JSON path"),
            ("$request.body.a..b", "invalid JSON path"),
            ("${request.body.a", "unclosed"),
            ("${request.header.a}", "must refer to `request.body.PATH`"),
            ("action", "must refer to the message body"),
            ("", "must refer to the message body"),
        ] {
            let err = bad.parse::<Selection>().unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_as_written() {
        for s in [
            "$request.body.a.b",
            "${request.body.a}/${request.body.b}",
            "x${request.body.a}",
        ] {
            assert_eq!(sel(s).to_string(), s);
        }
    }
}
