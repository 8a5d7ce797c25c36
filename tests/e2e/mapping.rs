//! The shipped `param-mapping` plugin: every mapping operation, both directions.

use weir_tests::artifacts::PARAM_MAPPING;
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_PARAM_MAPPING: bool = true;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[plugins.params]
file = {mapping}
world = "mapper"
[plugins.params.config.request]
"append:header.x-added" = "static-value"
"append:header.x-tags" = "second"
"overwrite:header.x-user" = "$request.header.x-user-id"
"overwrite:header.x-auth" = "Bearer $request.querystring.token"
"remove:header.x-secret" = "''"
"overwrite:querystring.page" = "$request.querystring.p"
"append:querystring.id" = "$request.path.id"
"remove:querystring.debug" = "''"
"overwrite:header.x-item" = "$request.body.item.name"
"overwrite:header.x-first-tag" = "$request.body.tags.0"
"overwrite:header.x-req" = "$context.requestId"
"overwrite:header.x-route" = "$context.routeKey"
[plugins.params.config.response]
"overwrite:statuscode" = "201"
"append:header.x-resp" = "$context.requestId"
"overwrite:header.x-upstream-path" = "$response.body.path"
"remove:header.server" = "''"

[plugins.rewrite]
file = {mapping}
world = "mapper"
config = {{ request = {{ "overwrite:path" = "/v2/items/$request.path.id" }} }}

[[routes]]
key = "POST /items/{{id}}"
integration = {{ type = "http", url = "{base}/items/{{id}}" }}
request_mapping = "params"
response_mapping = "params"
[[routes]]
key = "GET /old/{{id}}"
integration = {{ type = "http", url = "{base}/old/{{id}}" }}
request_mapping = "rewrite"
"#,
        mapping = toml_path(PARAM_MAPPING),
        base = up.base(),
    )
}

#[tokio::test]
async fn maps_headers_query_body_and_context_and_the_response() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = c
        .send(
            "POST",
            &gw.url("/items/7?p=3&debug=1&token=abc&keep=yes"),
            &[
                ("x-user-id", "u-9"),
                ("x-secret", "hunter2"),
                ("x-tags", "first"),
                ("content-type", "application/json"),
            ],
            r#"{"item":{"name":"widget"},"tags":["red","blue"]}"#,
        )
        .await;
    assert_eq!(r.status, 201, "overwrite:statuscode; body {}", r.text());
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(r.header("x-resp"), Some(id.as_str()));
    assert_eq!(
        r.header("x-upstream-path"),
        Some("/items/7"),
        "$response.body"
    );
    assert!(
        r.header("server").is_none(),
        "remove:header on the response"
    );

    let seen = &up.seen()[0];
    let h = &seen.headers;
    let one = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(one("x-added").as_deref(), Some("static-value"));
    let tags: Vec<_> = h
        .get_all("x-tags")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["first", "second"], "append keeps the existing value");
    assert_eq!(one("x-user").as_deref(), Some("u-9"));
    assert_eq!(one("x-auth").as_deref(), Some("Bearer abc"));
    assert!(h.get("x-secret").is_none());
    assert_eq!(one("x-item").as_deref(), Some("widget"));
    assert_eq!(one("x-first-tag").as_deref(), Some("red"));
    assert_eq!(one("x-req").as_deref(), Some(id.as_str()));
    assert_eq!(one("x-route").as_deref(), Some("POST /items/{id}"));

    let query = seen.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    assert!(pairs.contains(&("page", "3")), "{query}");
    assert!(pairs.contains(&("id", "7")), "{query}");
    assert!(pairs.contains(&("keep", "yes")), "{query}");
    assert!(!pairs.iter().any(|(k, _)| *k == "debug"), "{query}");
    assert!(seen.uri.starts_with("/items/7?"));
}

#[tokio::test]
async fn overwrites_the_path() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let r = Client::default().get(&gw.url("/old/42?x=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/v2/items/42");
    assert_eq!(r.json()["query"], "x=1");
}

#[tokio::test]
async fn header_values_that_are_not_utf8_pass_a_mapper_unchanged() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    // obs-text (Latin-1 `é`) is legal in an HTTP/1.1 header value; the plugin sees it
    // lossily as a string, the upstream gets the bytes the client sent.
    let r = weir_tests::raw_exchange(
        gw.addr,
        b"GET /old/9 HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nX-Bad: \xff\xfe\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = &up.seen()[0];
    assert_eq!(seen.headers["x-latin"].as_bytes(), b"caf\xe9");
    assert_eq!(seen.headers["x-bad"].as_bytes(), b"\xff\xfe");
}
