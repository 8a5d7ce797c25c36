//! The shipped `cors` plugin as the API-wide policy.

use bytes::Bytes;
use weir_tests::artifacts::CORS;
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_CORS: bool = true;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[plugins.cors]
file = {cors}
world = "cors"
config = {{ allow_origins = ["https://app.example"], allow_methods = ["GET", "POST"], allow_headers = ["content-type", "x-token"], expose_headers = ["x-request-id"], max_age = 600, allow_credentials = true }}

[api]
cors = "cors"

[[routes]]
key = "ANY /{{proxy+}}"
integration = {{ type = "http", url = "{base}/{{proxy+}}" }}
"#,
        cors = toml_path(CORS),
        base = up.base(),
    )
}

/// An `OPTIONS /items` request with `headers`.
async fn preflight(
    c: &Client,
    gw: &weir_tests::Weir,
    headers: &[(&str, &str)],
) -> weir_tests::Reply {
    c.send("OPTIONS", &gw.url("/items"), headers, Bytes::new())
        .await
}

#[tokio::test]
async fn preflight_is_answered_without_an_options_route() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = preflight(
        &c,
        &gw,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = r
        .header("access-control-allow-methods")
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .contains("content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.header("x-request-id").is_some());

    let r = preflight(
        &c,
        &gw,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert!(r.header("access-control-allow-origin").is_none());
    let r = preflight(
        &c,
        &gw,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "DELETE"),
        ],
    )
    .await;
    assert!(
        r.header("access-control-allow-methods")
            .is_none_or(|m| !m.contains("DELETE"))
    );
    let huge = "v".repeat(10_300);
    let r = preflight(
        &c,
        &gw,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("x-big", &huge),
        ],
    )
    .await;
    assert_eq!(r.status, 431, "size limits apply to preflights too");
    assert!(
        up.seen().is_empty(),
        "preflights never reach the integration"
    );
}

#[tokio::test]
async fn simple_requests_are_decorated_and_backend_cors_headers_replaced() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = c
        .send(
            "GET",
            &gw.url("/cors"),
            &[("origin", "https://app.example")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example"),
        "the backend's `*` was replaced"
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(
        r.header("vary")
            .unwrap()
            .to_ascii_lowercase()
            .contains("origin")
    );

    let r = c
        .send(
            "GET",
            &gw.url("/cors"),
            &[("origin", "https://evil.example")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "backend header removed, none added"
    );

    let r = c.get(&gw.url("/plain")).await;
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(r.header("vary"), Some("origin"));

    let r = c
        .send(
            "GET",
            &gw.url("/status/404"),
            &[("origin", "https://app.example")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example"),
        "errors are decorated too"
    );
}

#[tokio::test]
async fn cached_policy_headers_match_the_uncached_ones_with_one_call_per_key() {
    let up = Upstream::start().await;
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    // The policy says its answers may not be reused: asked for every response.
    let never = config(&up).replace(
        "allow_credentials = true",
        "allow_credentials = true, cache_seconds = 0",
    );
    let plain = weir(&format!("{admin}{never}"));
    // The shipped policy declares its answers reusable (host.cacheable): once per key.
    let declared = weir(&format!("{admin}{}", config(&up)));
    // The operator forces a lifetime on a policy that declares none.
    let forced = weir(&format!(
        "{admin}{}",
        never.replace("cors = \"cors\"", "cors = \"cors\"\ncors_cache = \"5m\"")
    ));
    let c = Client::default();
    let cors_headers = |r: &weir_tests::Reply| {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("access-control-") || *n == "vary")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        h
    };
    let requests = [
        ("GET", "/cors", "https://app.example"),
        ("GET", "/cors", "https://evil.example"),
        ("POST", "/cors", "https://app.example"),
        ("GET", "/items/1", "https://app.example"),
        ("GET", "/status/404", "https://app.example"),
    ];
    // Every request three times: the cached gateway asks the policy once per key.
    for _ in 0..3 {
        for (method, path, origin) in requests {
            let mut replies = Vec::new();
            for gw in [&plain, &declared, &forced] {
                let r = c
                    .send(method, &gw.url(path), &[("origin", origin)], Bytes::new())
                    .await;
                replies.push((r.status, cors_headers(&r)));
            }
            assert_eq!(replies[0], replies[1], "{method} {path} from {origin}");
            assert_eq!(replies[0], replies[2], "{method} {path} from {origin}");
            assert!(
                replies[0]
                    .1
                    .iter()
                    .any(|(n, v)| n == "vary" && v.contains("origin")),
                "{replies:?}"
            );
        }
    }
    let calls = |gw: &weir_tests::Weir| {
        let gw_url = gw.admin_url("/metrics");
        let c = c.clone();
        async move {
            let m = c.get(&gw_url).await.text();
            m.lines()
                .find(|l| l.starts_with(r#"weir_plugin_calls_total{plugin="cors",outcome="ok"}"#))
                .and_then(|l| l.rsplit(' ').next())
                .map(|n| n.parse::<u64>().unwrap())
        }
    };
    assert_eq!(calls(&plain).await, Some(15));
    // The first call learns that answers may be reused; then one call per key.
    assert_eq!(calls(&declared).await, Some(6));
    assert_eq!(calls(&forced).await, Some(5));
}
