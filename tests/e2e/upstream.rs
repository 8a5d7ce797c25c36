//! HTTP integrations against a real upstream, and mock integrations.

use bytes::Bytes;
use weir_tests::{Client, Upstream};

use crate::weir;

#[tokio::test]
async fn proxies_with_params_query_and_forwarding_headers() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[[routes]]
key = "GET /pets/{{id}}"
integration = {{ type = "http", url = "{base}/v1/animals/{{id}}" }}
[[routes]]
key = "ANY /files/{{proxy+}}"
integration = {{ type = "http", url = "{base}/store/{{proxy+}}" }}
[[routes]]
key = "ANY /raw/{{proxy+}}"
integration = {{ type = "http", url = "{base}" }}
"#,
        base = up.base()
    ));
    let c = Client::default();
    let r = c
        .send(
            "GET",
            &gw.url("/pets/42?color=red&size=s"),
            &[
                ("x-custom", "kept"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "hop"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "10.0.0.1"),
                ("host", "api.example"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("server"),
        Some("test-upstream"),
        "upstream headers come back"
    );
    let echo = r.json();
    assert_eq!(echo["path"], "/v1/animals/42");
    assert_eq!(echo["query"], "color=red&size=s");
    let h = &echo["headers"];
    assert_eq!(h["x-custom"], "kept");
    assert!(
        h.get("x-drop").is_none(),
        "headers named by Connection are stripped"
    );
    assert!(h.get("keep-alive").is_none());
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example");
    assert_eq!(h["host"], up.addr.to_string());
    assert_eq!(h["x-request-id"], r.header("x-request-id").unwrap());

    let r = c
        .send("PUT", &gw.url("/files/a/b/c.txt"), &[], "payload")
        .await;
    let echo = r.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/store/a/b/c.txt");
    assert_eq!(echo["body"], "payload");

    let r = c.get(&gw.url("/raw/x/y?q=1")).await;
    assert_eq!(
        r.json()["path"],
        "/raw/x/y",
        "a URL without a path forwards the client's path"
    );
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn upstream_statuses_pass_through() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[[routes]]
key = "ANY /{{proxy+}}"
integration = {{ type = "http", url = "{}/{{proxy+}}" }}
"#,
        up.base()
    ));
    let c = Client::default();
    for code in [201, 404, 500, 503] {
        let r = c.get(&gw.url(&format!("/status/{code}"))).await;
        assert_eq!(r.status.as_u16(), code);
    }
}

#[tokio::test]
async fn mock_integration_needs_no_upstream() {
    let gw = weir(
        r#"
[[routes]]
key = "GET /health"
integration = { type = "mock", status = 200, body = '{"ok":true}', headers = { content-type = "application/json" } }
"#,
    );
    let r = Client::default().get(&gw.url("/health")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"ok": true}));
    assert_eq!(r.header("content-type"), Some("application/json"));
}
