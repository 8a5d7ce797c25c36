//! Fuzzing entry point for the mapping language: operation keys, value templates and
//! their application to a request and a response.
//!
//! The `param_mapping` target in `fuzz/` calls it, and so does this crate's
//! `fuzz_corpus` test, which replays the checked-in seeds on the host.

use std::collections::BTreeMap;

use weir_sdk::{Context, Headers, Request, Response, query_pairs, query_string};

use crate::expr::Template;
use crate::mapping::{Side, apply_request, apply_response, parse_ops};

/// The input is three sections separated by `\n--\n`: operations as `key=value` lines
/// (the plugin's `request`/`response` tables; both sides are tried), then a request line
/// `METHOD /path?query` followed by `name: value` header lines, then the body (the
/// request's, and the response's).
///
/// Invariants: no panic; parsing a template is deterministic; the query string
/// round-trips through `query_pairs`/`query_string`; a mapped request keeps a path that
/// starts with `/`; a mapped response has a status of 200 to 599; no mapping adds a
/// header value with CR, LF or NUL.
pub fn mapping(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut sections = text.splitn(3, "\n--\n");
    let ops_text = sections.next().unwrap_or_default();
    let head = sections.next().unwrap_or_default();
    let body = sections.next().unwrap_or_default().as_bytes();

    let table: BTreeMap<String, String> = ops_text
        .split('\n')
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for value in table.values() {
        assert_eq!(Template::parse(value), Template::parse(value));
    }

    let mut lines = head.split('\n');
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = request_line
        .split_once(' ')
        .unwrap_or(("GET", request_line));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();

    let pairs = query_pairs(query);
    let encoded = query_string(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        query_pairs(&encoded),
        pairs,
        "{query:?} encodes as {encoded:?}"
    );

    let ctx = Context {
        request_id: "req-1".into(),
        route_key: "GET /pets/{id}".into(),
        stage: "$default".into(),
        path_parameters: vec![("id".into(), "7".into()), ("proxy".into(), "a/b".into())],
        source_ip: "192.0.2.1".into(),
        principal_id: Some("alice".into()),
        authorizer_context: vec![
            ("scope".into(), "read".into()),
            ("sub".into(), "a\nb".into()),
        ],
    };

    if let Ok(ops) = parse_ops(&table, Side::Request) {
        let mut req = Request::new(method, path);
        req.query = query.to_owned();
        req.headers = headers.clone();
        req.body = body.to_vec();
        if let Ok(out) = apply_request(&ops, req, &ctx, None) {
            assert!(
                out.path == path || out.path.starts_with('/'),
                "mapped path {:?}",
                out.path
            );
            no_new_line_breaks(&headers, &out.headers);
        }
    }
    if let Ok(ops) = parse_ops(&table, Side::Response) {
        let resp = Response {
            status: 200,
            headers: headers.clone(),
            body: body.to_vec(),
        };
        if let Ok(out) = apply_response(&ops, resp, &ctx, None) {
            assert!((200..=599).contains(&out.status), "status {}", out.status);
            no_new_line_breaks(&headers, &out.headers);
        }
    }
}

/// Every header of `after` whose value holds CR, LF or NUL was already in `before`.
fn no_new_line_breaks(before: &Headers, after: &Headers) {
    for (n, v) in after.iter() {
        if v.contains(['\r', '\n', '\0']) {
            assert!(
                before
                    .iter()
                    .any(|(bn, bv)| bn.eq_ignore_ascii_case(n) && bv == v),
                "mapping added header `{n}` with value {v:?}"
            );
        }
    }
}
