//! The authorize stage: identity sources, decision caching, denials, fail-closed.

use bytes::Bytes;
use weir_tests::artifacts::{COUNTING_AUTHORIZER, TRAP_AUTHORIZER};
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_COUNTING_AUTHORIZER: bool = true;
pub const USES_TRAP_AUTHORIZER: bool = true;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[plugins.auth]
file = {auth}
world = "authorizer"
[plugins.broken]
file = {broken}
world = "authorizer"
smoke_test = false

[[routes]]
key = "GET /cached"
integration = {{ type = "http", url = "{base}/cached" }}
authorizer = {{ plugin = "auth", identity_source = ["$request.header.x-token"], ttl = "300s" }}
[[routes]]
key = "GET /uncached"
integration = {{ type = "http", url = "{base}/uncached" }}
authorizer = {{ plugin = "auth", identity_source = ["$request.querystring.token"], ttl = "0s" }}
[[routes]]
key = "GET /broken"
integration = {{ type = "http", url = "{base}/broken" }}
authorizer = {{ plugin = "broken", identity_source = ["$request.header.x-token"] }}
"#,
        auth = toml_path(COUNTING_AUTHORIZER),
        broken = toml_path(TRAP_AUTHORIZER),
        base = up.base(),
    )
}

async fn get(c: &Client, url: &str, token: Option<&str>) -> weir_tests::Reply {
    let headers: Vec<(&str, &str)> = token.map(|t| ("x-token", t)).into_iter().collect();
    c.send("GET", url, &headers, Bytes::new()).await
}

#[tokio::test]
async fn decisions_are_cached_per_identity_within_ttl() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    for _ in 0..5 {
        let r = get(&c, &gw.url("/cached"), Some("let-me-in")).await;
        assert_eq!(r.status, 200);
    }
    // Denials are cached too.
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url("/cached"), Some("nope")).await.status, 401);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        gw.count_logs("authorize called"),
        2,
        "one call per identity"
    );

    for _ in 0..3 {
        let r = c.get(&gw.url("/uncached?token=let-me-in")).await;
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        gw.count_logs("authorize called"),
        5,
        "ttl 0 calls the plugin every time"
    );
}

#[tokio::test]
async fn denials_and_missing_identity() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = get(&c, &gw.url("/cached"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), serde_json::json!({"message": "Unauthorized"}));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        gw.count_logs("authorize called"),
        0,
        "a missing identity never reaches the plugin"
    );

    let r = get(&c, &gw.url("/cached"), Some("forbidden")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), serde_json::json!({"message": "Forbidden"}));
    let r = get(&c, &gw.url("/cached"), Some("wrong")).await;
    assert_eq!(r.status, 401);
    assert!(
        up.seen().is_empty(),
        "denied requests never reach the upstream"
    );

    let r = get(&c, &gw.url("/cached"), Some("let-me-in")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_failing_authorizer_fails_closed() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = get(&c, &gw.url("/broken"), Some("let-me-in")).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Internal Server Error"})
    );
    assert!(up.seen().is_empty(), "the integration is not called");
    assert_eq!(
        get(&c, &gw.url("/cached"), Some("let-me-in")).await.status,
        200
    );
}
