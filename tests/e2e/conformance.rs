//! The conformance suite: the example mapper and token authorizer of every language
//! (`examples/plugins/<language>/`) run through the real server against one table of
//! requests, and every language must give exactly what the Rust reference gives —
//! config reading, logging, header case, JSON rewriting and direct answers, binary,
//! non-UTF-8, empty and 1 MiB bodies, allow and deny — on fresh and on reused instances.

use bytes::Bytes;
use weir_tests::artifacts::{POLYGLOT, POLYGLOT_SKIPPED};
use weir_tests::{Client, Reply, Seen, Upstream, Weir};

use crate::{toml_path, weir};

/// Where a case is sent (under `/<language>`).
#[derive(Clone, Copy, Debug)]
enum Via {
    /// The mapper, a fresh instance per call.
    Fresh,
    /// The mapper with `reuse = 8`.
    Reused,
    /// The authorizer, then the mapper.
    Auth,
    /// The mapper with a config it must refuse.
    BadConfig,
}

impl Via {
    fn prefix(self) -> &'static str {
        match self {
            Via::Fresh => "m",
            Via::Reused => "r",
            Via::Auth => "a",
            Via::BadConfig => "bad",
        }
    }
}

/// What came back, and what the upstream received (if the request got that far),
/// without what legitimately differs between runs (request ids, trace ids, ports).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    headers: Vec<(String, String)>,
    /// The gateway's or plugin's own answer; upstream answers echo request ids, so only
    /// their status and headers are compared.
    body: Option<Bytes>,
    upstream: Option<Forwarded>,
}

/// The request as the upstream received it.
#[derive(Debug, PartialEq, Eq)]
struct Forwarded {
    method: String,
    /// Path and query, with the language's path prefix replaced by `/LANG/`.
    uri: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Outcome {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn seen_header(&self, name: &str) -> Vec<&str> {
        let forwarded = self.upstream.as_ref().expect("reached the upstream");
        forwarded
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn seen_body(&self) -> &[u8] {
        &self.upstream.as_ref().expect("reached the upstream").body
    }
}

const VOLATILE: &[&str] = &[
    "date",
    "x-request-id",
    "traceparent",
    "host",
    "x-forwarded-for",
];

fn headers(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter(|(n, _)| !VOLATILE.contains(&n.as_str()))
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn outcome(r: Reply, seen: Option<Seen>, lang: &str) -> Outcome {
    let upstream = seen.map(|s| Forwarded {
        method: s.method,
        uri: s.uri.replacen(&format!("/{lang}/"), "/LANG/", 1),
        headers: headers(&s.headers),
        body: s.body,
    });
    let mut response_headers = headers(&r.headers);
    if upstream.is_some() {
        // The upstream's answer echoes the path, which names the language.
        response_headers.retain(|(n, _)| n != "content-length");
    }
    Outcome {
        status: r.status.as_u16(),
        headers: response_headers,
        body: upstream.is_none().then_some(r.body),
        upstream,
    }
}

struct Case {
    name: &'static str,
    via: Via,
    method: &'static str,
    /// Below `/<language>/<via prefix>`.
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Bytes,
    /// Checked for every language (they must also all equal the Rust outcome).
    expect: fn(&Outcome),
}

fn case(name: &'static str, via: Via, method: &'static str, path: &'static str) -> Case {
    Case {
        name,
        via,
        method,
        path,
        headers: Vec::new(),
        body: Bytes::new(),
        expect: |_| {},
    }
}

impl Case {
    fn header(mut self, n: &'static str, v: &'static str) -> Case {
        self.headers.push((n, v));
        self
    }
    fn body(mut self, b: impl Into<Bytes>) -> Case {
        self.body = b.into();
        self
    }
    fn expect(mut self, f: fn(&Outcome)) -> Case {
        self.expect = f;
        self
    }
}

fn malformed(o: &Outcome) {
    assert_eq!(o.status, 400);
    assert_eq!(
        o.body.as_deref(),
        Some(&br#"{"message":"malformed JSON body"}"#[..])
    );
    assert_eq!(o.header("content-type"), ["application/json"]);
    assert!(
        o.upstream.is_none(),
        "a direct answer never reaches the upstream"
    );
}

fn nested(depth: usize) -> String {
    format!("{{\"a\":{}0{}}}", "[".repeat(depth), "]".repeat(depth))
}

fn table() -> Vec<Case> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mib: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 + i / 256) as u8).collect();
    let big_json = format!(
        "{{\"items\":[{}],\"source\":\"client\"}}",
        (0..4000)
            .map(|i| format!("{{\"id\":{i},\"tag\":\"t\\u00e9{i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut cases = vec![
        case("headers renamed, added and lower-cased", Via::Fresh, "POST", "/headers")
            .header("X-Client-ID", "c-42")
            .header("X-Keep", "Yes")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("content-type", "text/plain")
            .body("hello")
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert_eq!(o.seen_header("x-user"), ["c-42"], "renamed case-insensitively");
                assert!(o.seen_header("x-client-id").is_empty());
                assert_eq!(o.seen_header("x-keep"), ["Yes"]);
                assert_eq!(o.seen_header("x-multi"), ["one", "two"]);
                assert_eq!(o.seen_header("x-gateway"), ["weir"]);
                assert_eq!(o.seen_header("x-empty"), [""]);
                assert_eq!(o.seen_header("x-body-bytes"), ["5"]);
                assert!(o.seen_header("x-principal").is_empty());
                assert_eq!(o.seen_body(), b"hello");
                assert_eq!(o.header("x-mapped-by"), ["weir-example"]);
                assert_eq!(o.header("x-response-case"), ["Kept"], "response header name lower-cased");
            }),
        case("JSON field replaced and appended", Via::Fresh, "POST", "/json")
            .header("Content-Type", "Application/JSON; charset=utf-8")
            .body(r#"{"user":"u1", "source" : "client","nested":{"source":"keep"},"n":1.50e+3}"#)
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert_eq!(
                    o.seen_body(),
                    r#"{"user":"u1", "source" : "gateway","nested":{"source":"keep"},"n":1.50e+3,"note":"café \"quoted\"\n\ttab \u0001"}"#
                        .as_bytes()
                );
                assert_eq!(o.seen_header("x-body-bytes"), ["73"], "the length the client sent");
            }),
        case("JSON with escapes and non-ASCII keeps them", Via::Fresh, "PUT", "/unicode")
            .header("content-type", "application/json")
            .body("{ \"name\": \"Zo\u{eb} \\u00e9 \\ud83d\\ude00 \u{1F600}\", \"source\": [1, {\"x\": null}], \"note\": true }\n")
            .expect(|o| {
                assert_eq!(
                    o.seen_body(),
                    "{ \"name\": \"Zo\u{eb} \\u00e9 \\ud83d\\ude00 \u{1F600}\", \"source\": \"gateway\", \"note\": \"café \\\"quoted\\\"\\n\\ttab \\u0001\" }\n".as_bytes()
                );
            }),
        case("empty JSON object gets the fields", Via::Fresh, "POST", "/empty-object")
            .header("content-type", "application/json")
            .body("{}")
            .expect(|o| {
                // Fields are applied in config order; weir.toml tables reach plugins
                // with their keys sorted.
                assert_eq!(
                    o.seen_body(),
                    r#"{"note":"café \"quoted\"\n\ttab \u0001","source":"gateway"}"#.as_bytes()
                );
            }),
        case("malformed JSON is answered with 400", Via::Fresh, "POST", "/malformed")
            .header("content-type", "application/json")
            .body(r#"{"user":"#)
            .expect(malformed),
        case("a JSON array is not an object", Via::Fresh, "POST", "/array")
            .header("content-type", "application/json")
            .body("[1,2]")
            .expect(malformed),
        case("JSON that is not UTF-8", Via::Fresh, "POST", "/latin1")
            .header("content-type", "application/json")
            .body(&b"{\"a\":\"caf\xe9\"}"[..])
            .expect(malformed),
        case("trailing garbage after the object", Via::Fresh, "POST", "/trailing")
            .header("content-type", "application/json")
            .body("{} {}")
            .expect(malformed),
        case("nesting at the limit", Via::Fresh, "POST", "/deep-ok")
            .header("content-type", "application/json")
            .body(nested(63))
            .expect(|o| assert_eq!(o.status, 200)),
        case("nesting past the limit", Via::Fresh, "POST", "/deep-bad")
            .header("content-type", "application/json")
            .body(nested(64))
            .expect(malformed),
        case("binary body passes byte for byte", Via::Fresh, "POST", "/binary")
            .header("content-type", "application/octet-stream")
            .body(all_bytes)
            .expect(|o| {
                assert_eq!(o.seen_body(), (0..=255u8).collect::<Vec<_>>());
                assert_eq!(o.seen_header("x-body-bytes"), ["256"]);
            }),
        case("non-UTF-8 text is not touched", Via::Fresh, "POST", "/latin1-text")
            .header("content-type", "text/plain; charset=latin1")
            .body(&b"caf\xe9 \xff\xfe\x00end"[..])
            .expect(|o| assert_eq!(o.seen_body(), b"caf\xe9 \xff\xfe\x00end")),
        case("empty JSON body is forwarded", Via::Fresh, "POST", "/empty")
            .header("content-type", "application/json")
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert_eq!(o.seen_body(), b"");
                assert_eq!(o.seen_header("x-body-bytes"), ["0"]);
            }),
        case("GET with a query string", Via::Fresh, "GET", "/query?a=1&b=%20x&c")
            .expect(|o| {
                let f = o.upstream.as_ref().unwrap();
                assert_eq!((f.method.as_str(), f.uri.as_str()), ("GET", "/LANG/m/query?a=1&b=%20x&c"));
            }),
        case("1 MiB body", Via::Fresh, "POST", "/mib")
            .header("content-type", "application/octet-stream")
            .body(mib)
            .expect(|o| {
                assert_eq!(o.seen_body().len(), 1 << 20);
                assert_eq!(o.seen_header("x-body-bytes"), ["1048576"]);
            }),
        case("a 100 KiB JSON body is rewritten", Via::Fresh, "POST", "/big-json")
            .header("content-type", "application/json")
            .body(big_json)
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert!(o.seen_body().ends_with(
                    r#""source":"gateway","note":"café \"quoted\"\n\ttab \u0001"}"#.as_bytes()
                ));
            }),
        case("reused instance: headers", Via::Reused, "POST", "/headers")
            .header("X-Client-ID", "c-42")
            .body("hello")
            .expect(|o| assert_eq!(o.seen_header("x-user"), ["c-42"])),
        case("reused instance: malformed JSON", Via::Reused, "POST", "/malformed")
            .header("content-type", "application/json")
            .body("{,}")
            .expect(malformed),
        case("reused instance: JSON after a 400", Via::Reused, "POST", "/json")
            .header("content-type", "application/json")
            .body(r#"{"source":1}"#)
            .expect(|o| {
                assert_eq!(
                    o.seen_body(),
                    r#"{"source":"gateway","note":"café \"quoted\"\n\ttab \u0001"}"#.as_bytes()
                );
            }),
        case("reused instance: 1 MiB body", Via::Reused, "POST", "/mib")
            .body(vec![0xa5u8; 1 << 20])
            .expect(|o| assert_eq!(o.seen_body(), vec![0xa5u8; 1 << 20])),
        case("authorizer: no bearer scheme", Via::Auth, "GET", "/basic")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .expect(|o| {
                assert_eq!(o.status, 401);
                assert_eq!(o.body.as_deref(), Some(&br#"{"message":"expected a bearer token"}"#[..]));
            }),
        case("authorizer: empty bearer token", Via::Auth, "GET", "/empty-token")
            .header("authorization", "Bearer   ")
            .expect(|o| assert_eq!(o.status, 401)),
        case("authorizer: unknown token", Via::Auth, "GET", "/unknown")
            .header("authorization", "Bearer tok-mallory")
            .expect(|o| {
                assert_eq!(o.status, 403);
                assert_eq!(o.body.as_deref(), Some(&br#"{"message":"unknown token"}"#[..]));
            }),
        case("authorizer: allowed, principal reaches the mapper", Via::Auth, "GET", "/alice")
            .header("authorization", "bEaReR  tok-alice ")
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert_eq!(o.seen_header("x-principal"), ["alice"]);
            }),
        case("authorizer: a second token", Via::Auth, "GET", "/bob")
            .header("authorization", "Bearer tok-bob")
            .expect(|o| assert_eq!(o.seen_header("x-principal"), ["bob"])),
        case("mapper config of the wrong type", Via::BadConfig, "GET", "/anything")
            .expect(|o| {
                assert_eq!(o.status, 500);
                assert_eq!(o.body.as_deref(), Some(&br#"{"message":"plugin misconfigured"}"#[..]));
            }),
    ];
    // Where JSON parsers tend to be lenient: each must be refused as RFC 8259 says.
    let refused: [&'static [u8]; 24] = [
        br#"{"a":01}"#,
        br#"{"a":1,}"#,
        br#"{"a":[1,2,]}"#,
        br#"{'a':1}"#,
        br#"{a:1}"#,
        br#"{"a":NaN}"#,
        br#"{"a":Infinity}"#,
        br#"{"a":-Infinity}"#,
        br#"{"a":undefined}"#,
        br#"{"a":1.}"#,
        br#"{"a":.5}"#,
        br#"{"a":+1}"#,
        br#"{"a":-}"#,
        br#"{"a":1e}"#,
        br#"{"a":0x10}"#,
        br#"{"a":tru}"#,
        br#"{"a" 1}"#,
        br#"{"a":"\x"}"#,
        br#"{"a":"\u00"}"#,
        br#"{"a":1}}"#,
        b"{\"a\":\"\x01\"}",
        b"\x0c{\"a\":1}",
        b"{\"a\":1}\x00",
        b"{\"a\":\"\xed\xa0\x80\"}",
    ];
    for body in refused {
        cases.push(
            case(
                format!("lenient JSON is refused: {}", body.escape_ascii()).leak(),
                Via::Fresh,
                "POST",
                "/strict",
            )
            .header("content-type", "application/json")
            .body(body)
            .expect(malformed),
        );
    }
    cases.extend([
        case("JSON: a lone surrogate escape is valid", Via::Fresh, "POST", "/surrogate")
            .header("content-type", "application/json")
            .body(r#"{"a":"\ud800","source":null}"#)
            .expect(|o| {
                assert_eq!(o.status, 200);
                assert!(o.seen_body().starts_with(br#"{"a":"\ud800","source":"gateway","note":"#));
            }),
        case("JSON: every top-level duplicate is set, nested ones kept", Via::Fresh, "POST", "/dup")
            .header("content-type", "application/json")
            .body(r#"{"2":1,"source":1,"x":{"source":2},"1":[],"source":{"a":[1,"}"]}}"#)
            .expect(|o| {
                assert_eq!(
                    o.seen_body(),
                    r#"{"2":1,"source":"gateway","x":{"source":2},"1":[],"source":"gateway","note":"café \"quoted\"\n\ttab \u0001"}"#
                        .as_bytes()
                );
            }),
        case("JSON: spaced values and escaped keys", Via::Fresh, "POST", "/spaced")
            .header("content-type", "application/json")
            .body("{\"source\" : { \"a\" : [ 1 ] } , \"sou\\u0072ce\":-0.0E-0,\"note\":[\"note\"]}\r\n")
            .expect(|o| {
                assert_eq!(
                    o.seen_body(),
                    "{\"source\" : \"gateway\" , \"sou\\u0072ce\":-0.0E-0,\"note\":\"café \\\"quoted\\\"\\n\\ttab \\u0001\"}\r\n"
                        .as_bytes()
                );
            }),
    ]);
    cases
}

const MAPPER_CONFIG: &str = r#"
[plugins.LANG-map.config]
rename_headers = { "X-Client-ID" = "X-User" }
add_headers = { "X-Gateway" = "weir", "x-empty" = "" }
json_fields = { source = "gateway", note = "café \"quoted\"\n\ttab \u0001" }
response_headers = { "x-mapped-by" = "weir-example", "X-Response-Case" = "Kept" }
"#;

/// One server with every language's plugins, each under its own path prefix.
fn config(up: &Upstream) -> String {
    let mut config = String::new();
    for (lang, mapper, authorizer) in POLYGLOT {
        let mapper_config = MAPPER_CONFIG.replace("LANG", lang);
        config.push_str(&format!(
            r#"
[plugins.{lang}-map]
file = {mapper}
world = "mapper"
deadline = "2s"
{mapper_config}
[plugins.{lang}-map-reused]
file = {mapper}
world = "mapper"
deadline = "2s"
reuse = 8
config = {reused_config}

[plugins.{lang}-auth]
file = {authorizer}
world = "authorizer"
deadline = "2s"
config = {{ tokens = {{ tok-alice = "alice", tok-bob = "bob" }} }}

[plugins.{lang}-bad]
file = {mapper}
world = "mapper"
config = {{ add_headers = "not a table" }}

[[routes]]
key = "ANY /{lang}/m/{{rest+}}"
integration = {{ type = "http", url = "{base}/{lang}/m/{{rest}}" }}
request_mapping = "{lang}-map"
response_mapping = "{lang}-map"

[[routes]]
key = "ANY /{lang}/r/{{rest+}}"
integration = {{ type = "http", url = "{base}/{lang}/r/{{rest}}" }}
request_mapping = "{lang}-map-reused"
response_mapping = "{lang}-map-reused"

[[routes]]
key = "GET /{lang}/a/{{rest+}}"
integration = {{ type = "http", url = "{base}/{lang}/a/{{rest}}" }}
authorizer = {{ plugin = "{lang}-auth", ttl = "0s" }}
request_mapping = "{lang}-map"
response_mapping = "{lang}-map"

[[routes]]
key = "ANY /{lang}/bad/{{rest+}}"
integration = {{ type = "http", url = "{base}/{lang}/bad/{{rest}}" }}
request_mapping = "{lang}-bad"
"#,
            mapper = toml_path(mapper),
            authorizer = toml_path(authorizer),
            reused_config = inline_table(&mapper_config),
            base = up.base(),
        ));
    }
    config
}

/// The `[plugins.X.config]` table of `MAPPER_CONFIG` as an inline table.
fn inline_table(section: &str) -> String {
    let body: Vec<&str> = section
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('['))
        .collect();
    format!("{{ {} }}", body.join(", "))
}

async fn run(c: &Client, gw: &Weir, up: &Upstream, lang: &str, case: &Case) -> Outcome {
    let before = up.seen().len();
    let path = format!("/{lang}/{}{}", case.via.prefix(), case.path);
    let r = c
        .send(
            case.method,
            &gw.url(&path),
            &case.headers,
            case.body.clone(),
        )
        .await;
    let seen = up.seen();
    assert!(seen.len() <= before + 1);
    outcome(r, seen.get(before).cloned(), lang)
}

#[tokio::test]
async fn every_language_behaves_like_the_rust_reference() {
    if !POLYGLOT_SKIPPED.is_empty() {
        eprintln!(
            "conformance: WEIR_SKIP_POLYGLOT=1, skipping {POLYGLOT_SKIPPED:?}; checking {:?} only",
            POLYGLOT.iter().map(|p| p.0).collect::<Vec<_>>()
        );
    }
    assert_eq!(POLYGLOT[0].0, "rust", "Rust is the reference");
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let cases = table();

    let mut reference = Vec::new();
    for case in &cases {
        let o = run(&c, &gw, &up, "rust", case).await;
        (case.expect)(&o);
        reference.push(o);
    }
    for (lang, _, _) in &POLYGLOT[1..] {
        for (case, want) in cases.iter().zip(&reference) {
            let got = run(&c, &gw, &up, lang, case).await;
            assert_eq!(
                &got, want,
                "{lang}: `{}` differs from the Rust reference",
                case.name
            );
            (case.expect)(&got);
        }
    }

    // Guest log lines reach the gateway's log, tagged with the plugin that wrote them.
    let logs = gw.logs();
    for (lang, _, _) in POLYGLOT {
        for (needle, plugin) in [
            (
                "map-request POST /{lang}/m/json (73 body bytes)",
                format!("{lang}-map"),
            ),
            ("malformed JSON body", format!("{lang}-map")),
            ("allow alice", format!("{lang}-auth")),
            ("deny 403: unknown token", format!("{lang}-auth")),
            ("bad config", format!("{lang}-bad")),
        ] {
            let needle = needle.replace("{lang}", lang);
            assert!(
                logs.lines().any(|l| l.contains(&needle)
                    && l.contains(&format!("plugin={plugin}"))
                    || l.contains(&needle) && l.contains(&format!("plugin=\"{plugin}\""))),
                "{lang}: no log line {needle:?} tagged {plugin}:\n{logs}"
            );
        }
    }
}
