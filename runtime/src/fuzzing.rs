//! Fuzzing entry points for the parsers at the trust boundary, each checking invariants.
//!
//! The `cargo fuzz` targets in `fuzz/` call these, and so does the `fuzz_corpus` test,
//! which replays every checked-in seed on stable. Each function takes arbitrary bytes,
//! must never panic on them, and panics (failing the run) when an invariant breaks.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::gateway;
use crate::map::{MAX_PLUGIN_HEADER_BYTES, MAX_PLUGIN_HEADERS, headers_to_pairs, pairs_to_headers};
use crate::route::{RouteKey, RouteTable, Segment};
use crate::usage::UsageState;
use crate::websocket::select::Selection;

/// Separates header records in [`headers`] input (ASCII RS; never valid in a header).
pub const RECORD: char = '\u{1e}';
/// Separates a header's name from its value in [`headers`] input (ASCII US).
pub const UNIT: char = '\u{1f}';

/// The base directory configs are compiled against: it does not exist.
const NO_DIR: &str = "/nonexistent/weir-fuzzing";

/// `weir.toml` text: parse, then every semantic check of `gateway::plugin_settings` and
/// `gateway::assemble`. No plugin file is read: each defined plugin fails to load, as a
/// missing file would.
///
/// Invariants: no panic; compiling the same config twice gives the same errors, in the
/// same order (the golden tests in `tests/ui` rely on it); a config that compiles arms
/// every timer it sets without overflowing the clock.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let compile = || {
        let mut errors = Vec::new();
        for name in gateway::plugin_settings(&config, &mut errors).keys() {
            errors.push(format!("plugins.{name}.file: not read while fuzzing"));
        }
        gateway::assemble(
            &config,
            BTreeMap::new(),
            Path::new(NO_DIR),
            &UsageState::default(),
            (
                &crate::lambda::Functions::default(),
                &crate::pool::Pools::default(),
            ),
            errors,
        )
        .err()
    };
    let first = compile();
    let second = compile();
    assert_eq!(
        first.as_ref().map(|e| &e.0),
        second.as_ref().map(|e| &e.0),
        "compiling twice gave different errors"
    );
    match first {
        Some(errors) => assert!(!errors.0.is_empty(), "a failed compile names its errors"),
        None => {
            let now = Instant::now();
            for d in timers(&config) {
                assert!(now.checked_add(d).is_some(), "a timer of {d:?} overflows");
            }
        }
    }
}

/// Every duration of a config that arms a timer as `now + duration`.
fn timers(config: &Config) -> Vec<Duration> {
    let server = &config.server;
    let mut all = vec![
        server.header_read_timeout,
        server.body_read_timeout,
        server.shutdown_grace,
        config.limits.integration_timeout,
    ];
    all.extend(config.routes.iter().filter_map(|r| r.timeout));
    for api in config.websocket.values() {
        all.extend([api.limits.max_duration, api.limits.idle_timeout]);
        all.extend(api.routes.iter().filter_map(|r| r.timeout));
    }
    all
}

/// Route keys and lookups. The input is lines: route keys, a blank line, then
/// requests as `METHOD /path` (a line without a space is a `GET`).
///
/// Invariants: no panic; a key displays as text that parses back to it; lookups are
/// deterministic and name a route of the table with exactly its parameters; a route
/// key without parameters matches its own path.
pub fn route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (key_lines, requests) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut keys = Vec::new();
    for line in key_lines.split('\n') {
        let Ok(key) = line.parse::<RouteKey>() else {
            continue;
        };
        let shown = key.to_string();
        assert_eq!(
            shown.parse::<RouteKey>().as_ref(),
            Ok(&key),
            "{line:?} displays as {shown:?}"
        );
        keys.push(key);
    }
    let Ok(table) = RouteTable::new(&keys) else {
        return;
    };
    let check = |method: &str, path: &str| {
        let found = table.lookup(method, path);
        assert_eq!(found, table.lookup(method, path), "{method} {path:?}");
        if let Some(m) = &found {
            let Some(key) = keys.get(m.route) else {
                panic!(
                    "{method} {path:?} matched route {} of {}",
                    m.route,
                    keys.len()
                );
            };
            let got: Vec<&str> = m.params.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(got, param_names(key), "{method} {path:?} matched `{key}`");
        }
        found
    };
    for line in requests.split('\n') {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        check(method, path);
    }
    for (i, key) in keys.iter().enumerate() {
        let RouteKey::Route { method, segments } = key else {
            continue;
        };
        if !segments.iter().all(|s| matches!(s, Segment::Literal(_))) {
            continue;
        }
        let path = if segments.is_empty() {
            "/".to_owned()
        } else {
            segments.iter().fold(String::new(), |mut path, s| {
                if let Segment::Literal(l) = s {
                    path.push('/');
                    path.push_str(l);
                }
                path
            })
        };
        // `ANY` routes are looked up with a method no route names.
        let method = method.as_deref().unwrap_or("FUZZ");
        let found = check(method, &path).map(|m| m.route);
        assert_eq!(
            found,
            Some(i),
            "`{key}` does not match its own path {path:?}"
        );
    }
}

fn param_names(key: &RouteKey) -> Vec<&str> {
    match key {
        RouteKey::Default => Vec::new(),
        RouteKey::Route { segments, .. } => segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(p) | Segment::Greedy(p) => Some(p.as_str()),
                Segment::Literal(_) => None,
            })
            .collect(),
    }
}

/// A WebSocket route selection expression, a newline, then a message.
///
/// Invariants: no panic; an expression displays as text that parses back to it, and
/// both select the same route for the message.
pub fn selection(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (expr, message) = data.split_at(split);
    let message = message.get(1..).unwrap_or_default();
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    let Ok(selection) = expr.parse::<Selection>() else {
        return;
    };
    let shown = selection.to_string();
    let again = shown
        .parse::<Selection>()
        .unwrap_or_else(|e| panic!("{expr:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(again, selection, "{expr:?} displays as {shown:?}");
    assert_eq!(selection.select(message), again.select(message));
}

/// Header lists both ways between hyper and the WIT records. The input is records
/// separated by [`RECORD`], each a name, [`UNIT`] and a value.
///
/// Invariants: no panic; `pairs_to_headers` drops the framing headers
/// (`content-length`, `transfer-encoding`), accepts no other value with CR, LF or NUL,
/// refuses only what is invalid or over the limits, and what it accepts round-trips
/// through `headers_to_pairs` (names lower-cased, values of one name kept in order); and
/// any header map hyper could hold converts to pairs that a plugin may echo back.
pub fn headers(data: &[u8]) {
    // As a plugin would return them: UTF-8 strings.
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split(RECORD)
        .map(|r| {
            let (n, v) = r.split_once(UNIT).unwrap_or((r, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let kept: Vec<(String, String)> = pairs.iter().filter(|(n, _)| !framing(n)).cloned().collect();
    let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    let over_limits = pairs.len() > MAX_PLUGIN_HEADERS || bytes > MAX_PLUGIN_HEADER_BYTES;
    match pairs_to_headers(&pairs, "fuzz") {
        Ok(map) => {
            assert!(!over_limits, "a header list over the limits was accepted");
            assert!(
                !kept.iter().any(|(_, v)| v.contains(['\r', '\n', '\0'])),
                "a value with CR, LF or NUL was accepted"
            );
            assert_eq!(headers_to_pairs(&map), grouped(&kept));
        }
        Err(_) => assert!(
            over_limits
                || kept.iter().any(|(n, v)| {
                    HeaderName::try_from(n.as_str()).is_err()
                        || HeaderValue::try_from(v.as_str()).is_err()
                }),
            "a valid header list was refused"
        ),
    }

    // As hyper would hand them over: any bytes a header value may hold.
    let mut map = HeaderMap::new();
    for record in data.split(|&b| b == RECORD as u8) {
        let split = record.iter().position(|&b| b == UNIT as u8);
        let (n, v) = match split {
            Some(i) => (&record[..i], &record[i + 1..]),
            None => (record, &[][..]),
        };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            map.append(n, v);
        }
    }
    let pairs = headers_to_pairs(&map);
    assert_eq!(pairs.len(), map.len());
    let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    if pairs.len() > MAX_PLUGIN_HEADERS || bytes > MAX_PLUGIN_HEADER_BYTES {
        return;
    }
    let echoed = pairs_to_headers(&pairs, "fuzz")
        .unwrap_or_else(|e| panic!("headers hyper accepted cannot be echoed by a plugin: {e}"));
    let unframed: Vec<_> = map.iter().filter(|(n, _)| !framing(n.as_str())).collect();
    assert_eq!(echoed.len(), unframed.len());
    for ((n, v), (en, ev)) in unframed.into_iter().zip(echoed.iter()) {
        assert_eq!(n, en);
        if let Ok(s) = std::str::from_utf8(v.as_bytes()) {
            assert_eq!(s.as_bytes(), ev.as_bytes(), "value of `{n}` changed");
        }
    }
}

/// A document for the plugins' `json` interface (`index-object`), guest-controlled.
///
/// Invariants: no panic; an index's spans lie in order inside the document, keys
/// between quotes, the closing brace at `close`; the object rebuilt from the indexed
/// keys and values indexes to the same keys and values; and whatever `serde_json`
/// accepts as an object (it is as strict, and stricter on number ranges and lone
/// surrogates) is indexed when it is no deeper than the limit.
pub fn json_index(data: &[u8]) {
    use crate::plugin::json::{MAX_DEPTH, index_object};

    let index = index_object(data);
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice(data) {
        let brackets = data.iter().filter(|&&b| b == b'{' || b == b'[').count();
        if brackets <= MAX_DEPTH {
            assert!(
                index.is_some(),
                "a JSON object serde_json accepts was refused"
            );
        }
    }
    let Some(index) = index else {
        return;
    };
    let close = index.close as usize;
    assert_eq!(data.get(close), Some(&b'}'));
    let mut at = 0;
    let mut pairs = Vec::new();
    for m in &index.members {
        let (ks, ke) = (m.key_start as usize, m.key_end as usize);
        let (vs, ve) = (m.value_start as usize, m.value_end as usize);
        assert!(
            at < ks && ks <= ke && ke < vs && vs < ve && ve <= close,
            "spans out of order"
        );
        assert_eq!(
            (data[ks - 1], data[ke]),
            (b'"', b'"'),
            "a key not between quotes"
        );
        pairs.push((&data[ks..ke], &data[vs..ve]));
        at = ve;
    }
    let mut rebuilt = b"{".to_vec();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            rebuilt.push(b',');
        }
        rebuilt.push(b'"');
        rebuilt.extend_from_slice(k);
        rebuilt.extend_from_slice(b"\":");
        rebuilt.extend_from_slice(v);
    }
    rebuilt.push(b'}');
    let again = index_object(&rebuilt).expect("the rebuilt object is refused");
    let texts: Vec<_> = again
        .members
        .iter()
        .map(|m| {
            let span = |a: u32, b: u32| &rebuilt[a as usize..b as usize];
            (
                span(m.key_start, m.key_end),
                span(m.value_start, m.value_end),
            )
        })
        .collect();
    assert_eq!(texts, pairs, "the rebuilt object indexes differently");
}

/// The headers the gateway sets itself from the body, never from a plugin.
fn framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// `pairs` in the order a `HeaderMap` yields them: names lower-cased, grouped at the
/// first occurrence of each name, values in order.
fn grouped(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in pairs {
        let n = n.to_ascii_lowercase();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for name in names {
        for (n, v) in pairs {
            if n.eq_ignore_ascii_case(&name) {
                out.push((name.clone(), v.clone()));
            }
        }
    }
    out
}
