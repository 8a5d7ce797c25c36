//! Throttling, API keys, usage plans and quotas, through the real server. Rates are
//! 0.01/s (one token per 100 s), so nothing refills while a test runs.

use bytes::Bytes;
use weir_tests::artifacts::COUNTING_AUTHORIZER;
use weir_tests::{Client, Reply, Upstream};

use crate::{toml_path, weir};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef";
const CAROL: &str = "carol-key-0123456789abcdef";

async fn get(c: &Client, url: &str, key: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    c.send("GET", url, &headers, Bytes::new()).await
}

fn assert_throttled(r: &Reply) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.text(), r#"{"message":"Too Many Requests"}"#);
    // 0.01/s: the next token is (almost) 100 s away.
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((90..=100).contains(&secs), "retry-after {secs}");
}

fn keys(plan: &str) -> String {
    format!(
        r#"
[[api_keys]]
name = "alice"
value = "{ALICE}"
plan = "{plan}"
[[api_keys]]
name = "bob"
value = "{BOB}"
plan = "{plan}"
[[api_keys]]
name = "carol"
value = "{CAROL}"
plan = "{plan}"
enabled = false
"#
    )
}

#[tokio::test]
async fn a_burst_above_the_bucket_gets_exactly_the_excess_as_429s() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[routes]]
key = "GET /limited"
integration = {{ type = "http", url = "{base}/limited" }}
throttle = {{ rate = 0.01, burst = 5 }}
[[routes]]
key = "GET /free"
integration = {{ type = "http", url = "{base}/free" }}
"#,
        base = up.base()
    ));
    let c = Client::default();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = get(&c, &gw.url("/limited"), None).await;
        if r.status == 429 {
            assert_throttled(&r);
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [[200; 5].as_slice(), &[429; 7]].concat());
    // The upstream never saw a throttled request; other routes are not limited.
    assert_eq!(up.seen().len(), 5);
    for _ in 0..10 {
        assert_eq!(get(&c, &gw.url("/free"), None).await.status, 200);
    }
    let metrics = c.get(&gw.admin_url("/metrics")).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"weir_throttled_total{level="route"} 7"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_account_limit_spans_routes() {
    let gw = weir(
        r#"
[throttle]
rate = 0.01
burst = 4
[[routes]]
key = "GET /a"
integration = { type = "mock" }
[[routes]]
key = "GET /b"
integration = { type = "mock" }
"#,
    );
    let c = Client::default();
    for path in ["/a", "/b", "/a", "/b"] {
        assert_eq!(get(&c, &gw.url(path), None).await.status, 200);
    }
    // Unrouted requests take no token: 404 comes before the throttle.
    assert_eq!(get(&c, &gw.url("/nowhere"), None).await.status, 404);
    assert_throttled(&get(&c, &gw.url("/a"), None).await);
    assert_throttled(&get(&c, &gw.url("/b"), None).await);
}

#[tokio::test]
async fn routes_that_require_a_key_refuse_missing_unknown_and_disabled_keys() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[usage_plans.basic]
{keys}
[[routes]]
key = "GET /private"
integration = {{ type = "http", url = "{base}/private" }}
api_key_required = true
[[routes]]
key = "GET /public"
integration = {{ type = "http", url = "{base}/public" }}
"#,
        keys = keys("basic"),
        base = up.base()
    ));
    let c = Client::default();
    for key in [
        None,
        Some(""),
        Some("not-a-key-not-a-key-not-a-key"),
        Some(CAROL),
    ] {
        let r = get(&c, &gw.url("/private"), key).await;
        assert_eq!(r.status, 403, "{key:?}");
        assert_eq!(r.text(), r#"{"message":"Forbidden"}"#);
    }
    assert_eq!(up.seen().len(), 0);
    assert_eq!(get(&c, &gw.url("/private"), Some(ALICE)).await.status, 200);
    assert_eq!(get(&c, &gw.url("/private"), Some(BOB)).await.status, 200);
    assert_eq!(get(&c, &gw.url("/public"), None).await.status, 200);
    // The key reaches the upstream as sent.
    assert_eq!(up.seen()[0].headers["x-api-key"], ALICE);
}

#[tokio::test]
async fn each_key_has_its_own_bucket_and_routes_can_override_it() {
    let gw = weir(&format!(
        r#"
[usage_plans.tiny]
throttle = {{ rate = 0.01, burst = 2 }}
route_throttle = {{ "GET /override" = {{ rate = 0.01, burst = 1 }} }}
{keys}
[[routes]]
key = "GET /x"
integration = {{ type = "mock" }}
api_key_required = true
[[routes]]
key = "GET /override"
integration = {{ type = "mock" }}
api_key_required = true
"#,
        keys = keys("tiny"),
    ));
    let c = Client::default();
    let url = gw.url("/x");
    assert_eq!(get(&c, &url, Some(ALICE)).await.status, 200);
    assert_eq!(get(&c, &url, Some(ALICE)).await.status, 200);
    assert_throttled(&get(&c, &url, Some(ALICE)).await);
    // Bob's bucket is his own.
    assert_eq!(get(&c, &url, Some(BOB)).await.status, 200);
    assert_eq!(get(&c, &url, Some(BOB)).await.status, 200);
    assert_throttled(&get(&c, &url, Some(BOB)).await);
    // On the overriding route, alice has a separate bucket of one.
    let url = gw.url("/override");
    assert_eq!(get(&c, &url, Some(ALICE)).await.status, 200);
    assert_throttled(&get(&c, &url, Some(ALICE)).await);
}

#[tokio::test]
async fn a_used_up_quota_gets_limit_exceeded_even_after_a_restart() {
    let up = Upstream::start().await;
    let mut gw = weir(&format!(
        r#"
[api]
quota_headers = true
[usage_plans.metered]
quota = {{ limit = 3, period = "MONTH" }}
{keys}
[[routes]]
key = "GET /metered"
integration = {{ type = "http", url = "{base}/metered" }}
api_key_required = true
"#,
        keys = keys("metered"),
        base = up.base()
    ));
    let c = Client::default();
    for left in ["2", "1", "0"] {
        let r = get(&c, &gw.url("/metered"), Some(ALICE)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-quota-limit"), Some("3"));
        assert_eq!(r.header("x-quota-remaining"), Some(left));
        assert!(r.header("x-quota-reset").is_some());
    }
    let over = get(&c, &gw.url("/metered"), Some(ALICE)).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.text(), r#"{"message":"Limit Exceeded"}"#);
    let secs: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=31 * 86_400).contains(&secs), "{secs}");
    assert_eq!(up.seen().len(), 3);
    // Bob's quota is his own.
    assert_eq!(get(&c, &gw.url("/metered"), Some(BOB)).await.status, 200);

    gw.restart();
    let file = std::fs::read_to_string(gw.dir.join("weir-quotas.json")).unwrap();
    assert!(file.contains(r#""alice":{"period":"MONTH""#), "{file}");
    assert!(!file.contains(ALICE), "the file must not hold key values");
    let r = get(&c, &gw.url("/metered"), Some(ALICE)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let r = get(&c, &gw.url("/metered"), Some(BOB)).await;
    assert_eq!(r.header("x-quota-remaining"), Some("1"));
    assert_eq!(up.seen().len(), 5);
}

#[tokio::test]
async fn keys_can_come_from_the_authorizer() {
    let gw = weir(&format!(
        r#"
[api]
api_key_source = "authorizer"
[plugins.auth]
file = {auth}
world = "authorizer"
[usage_plans.tiny]
throttle = {{ rate = 0.01, burst = 2 }}
{keys}
[[routes]]
key = "GET /x"
integration = {{ type = "mock" }}
authorizer = {{ plugin = "auth", identity_source = ["$request.header.x-token"] }}
api_key_required = true
"#,
        auth = toml_path(COUNTING_AUTHORIZER),
        keys = keys("tiny"),
    ));
    let c = Client::default();
    let send = |token: String| {
        let c = c.clone();
        let url = gw.url("/x");
        async move {
            c.send("GET", &url, &[("x-token", token.as_str())], Bytes::new())
                .await
        }
    };
    // Allowed, but with no usage key, or an unknown or disabled one: 403.
    for token in [
        "let-me-in".to_owned(),
        "key:nope".into(),
        format!("key:{CAROL}"),
    ] {
        assert_eq!(send(token).await.status, 403);
    }
    // A header key is ignored when the authorizer is the source.
    let r = c
        .send("GET", &gw.url("/x"), &[("x-api-key", ALICE)], Bytes::new())
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(send(format!("key:{ALICE}")).await.status, 200);
    assert_eq!(send(format!("key:{ALICE}")).await.status, 200);
    assert_throttled(&send(format!("key:{ALICE}")).await);
    assert_eq!(send(format!("key:{BOB}")).await.status, 200);
}
