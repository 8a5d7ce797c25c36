//! How the stages compose, driven in process: `pipeline::handle` on a gateway built
//! from a config (real plugins, compiled in this process) and requests made in memory,
//! with a real upstream on loopback where one is needed. No socket on the client side.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use weir::connections::LocalConnections;
use weir::integrate::{Upstream, UpstreamTls, UpstreamTlsFiles};
use weir::plugin::PluginHost;
use weir::reload::Reloader;
use weir::respond::Body;
use weir::usage::UsageState;
use weir::worker::Shared;
use weir_tests::artifacts::{CORS, COUNTING_AUTHORIZER, ECHO_MAPPER};
use weir_tests::{Upstream as TestUpstream, test_dir};

/// A TOML string literal for a path.
fn toml_path(path: &str) -> String {
    format!("{path:?}")
}

/// A gateway serving `config`, and the reloader that holds its plugins.
async fn gateway(config: &str) -> (Arc<Shared>, Arc<Reloader>) {
    let dir = test_dir();
    let path = dir.join("weir.toml");
    std::fs::write(&path, config).unwrap();
    let host = Arc::new(PluginHost::new().unwrap());
    let reloader = Reloader::new(&path, host, Arc::new(UsageState::default()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tls = UpstreamTls::load(&UpstreamTlsFiles::default()).unwrap();
    let shared = Shared::new(
        reloader.live().clone(),
        Arc::new(LocalConnections::default()),
        Upstream::new(&tls),
    );
    (Arc::new(shared), reloader)
}

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

async fn send(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response<Body>, Bytes) {
    let mut req = Request::builder().method(method).uri(path);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = weir::pipeline::handle(shared, req, CLIENT, false, None).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, weir::respond::empty_body()),
        body,
    )
}

#[tokio::test]
async fn throttling_runs_before_the_authorizer_so_a_flood_never_reaches_plugin_code() {
    let (shared, reloader) = gateway(&format!(
        r#"
[plugins.auth]
file = {auth}
world = "authorizer"
[[routes]]
key = "GET /x"
integration = {{ type = "mock", body = "ok" }}
authorizer = {{ plugin = "auth", identity_source = ["$request.header.token"], ttl = "0s" }}
throttle = {{ rate = 0.01, burst = 2 }}
"#,
        auth = toml_path(COUNTING_AUTHORIZER),
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (resp, _) = send(&shared, "GET", "/x", &[("token", "let-me-in")]).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    let plugins = reloader.list();
    let auth = plugins.iter().find(|p| p.name == "auth").unwrap();
    assert_eq!(
        auth.calls.ok, 2,
        "the authorizer ran for throttled requests"
    );
}

#[tokio::test]
async fn errors_pass_through_the_cors_policy_like_any_answer() {
    let (shared, _reloader) = gateway(&format!(
        r#"
[plugins.cors]
file = {cors}
world = "cors"
config = {{ allow_origins = ["https://app.example"], allow_methods = ["GET"] }}
[api]
cors = "cors"
[[routes]]
key = "GET /x"
integration = {{ type = "mock", body = "ok" }}
"#,
        cors = toml_path(CORS),
    ))
    .await;
    for (path, status) in [("/x", 200), ("/nowhere", 404)] {
        let (resp, _) = send(&shared, "GET", path, &[("origin", "https://app.example")]).await;
        assert_eq!(resp.status(), status);
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://app.example",
            "{path}"
        );
    }
    // A refused preflight never reaches routing: no route answers OPTIONS here.
    let (resp, _) = send(
        &shared,
        "OPTIONS",
        "/nowhere",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_ne!(resp.status(), 404);
}

#[tokio::test]
async fn a_mapper_that_answers_itself_skips_the_integration_and_the_response_mapper() {
    let up = TestUpstream::start().await;
    let (shared, _reloader) = gateway(&format!(
        r#"
[plugins.echo]
file = {echo}
world = "mapper"
[[routes]]
key = "GET /{{any+}}"
integration = {{ type = "http", url = "{base}" }}
request_mapping = "echo"
response_mapping = "echo"
"#,
        echo = toml_path(ECHO_MAPPER),
        base = up.base(),
    ))
    .await;
    let (resp, body) = send(&shared, "GET", "/a/direct", &[]).await;
    assert_eq!(resp.status(), 418);
    assert_eq!(body, "short-circuit");
    assert!(!resp.headers().contains_key("x-mapped-response"));
    assert!(up.seen().is_empty(), "the integration was called");

    // Otherwise both mappers run around the integration.
    let (resp, body) = send(&shared, "GET", "/a/b", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mapped-response"], "yes");
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["x-mapped"], "echo");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn the_integrate_stage_forwards_the_client_and_continues_its_trace() {
    let up = TestUpstream::start().await;
    let (shared, _reloader) = gateway(&format!(
        r#"
[[routes]]
key = "GET /x"
integration = {{ type = "http", url = "{base}/x" }}
"#,
        base = up.base(),
    ))
    .await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (resp, _) = send(
        &shared,
        "GET",
        "/x",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("traceparent", parent),
            ("host", "api.example"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = &up.seen()[0];
    let h = |n: &str| seen.headers[n].to_str().unwrap().to_owned();
    assert_eq!(h("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(h("x-forwarded-host"), "api.example");
    let tp = h("traceparent");
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{tp}"
    );
    assert!(
        !tp.contains("b7ad6b7169203331"),
        "the gateway is the new parent: {tp}"
    );
    assert_eq!(
        h("x-request-id"),
        resp.headers()["x-request-id"].to_str().unwrap()
    );
}
