//! HTTP integrations against a real upstream, and mock integrations.

use bytes::Bytes;
use weir_tests::{Client, TestCa, Upstream};

use crate::{toml_path, weir};

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

/// A route to `up`, with `server` added to `[server]`.
fn tls_config(up: &Upstream, server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[[routes]]
key = "GET /secure/{{id}}"
integration = {{ type = "http", url = "{base}/v1/{{id}}" }}
"#,
        base = up.base()
    )
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_trusted_certificates() {
    let ca = TestCa::new();
    let up = Upstream::start_tls(&ca).await;
    assert!(up.base().starts_with("https://127.0.0.1:"));
    let dir = weir_tests::test_dir();
    let ca_file = dir.join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let gw = weir(&tls_config(
        &up,
        &format!(
            "upstream_ca_file = {}",
            toml_path(ca_file.to_str().unwrap())
        ),
    ));
    let c = Client::default();
    for id in ["1", "2"] {
        let r = c.get(&gw.url(&format!("/secure/{id}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], format!("/v1/{id}"));
    }
    assert_eq!(
        up.seen().len(),
        2,
        "both requests reached the upstream over TLS"
    );

    // Without the authority the upstream's certificate is refused: 502, nothing sent.
    let up2 = Upstream::start_tls(&TestCa::new()).await;
    let gw2 = weir(&tls_config(&up2, ""));
    let r = c.get(&gw2.url("/secure/3")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(up2.seen().is_empty());
    // The reason is in the log.
    gw2.wait_for_logs("UnknownIssuer", 1).await;
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_upstreams_that_ask() {
    let ca = TestCa::new();
    let up = Upstream::start_tls_requiring_client_cert(&ca).await;
    let dir = weir_tests::test_dir();
    let (cert, key) = ca.client_cert();
    for (name, text) in [
        ("ca.pem", &ca.ca_pem),
        ("client.pem", &cert),
        ("client.key", &key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = |name: &str| toml_path(dir.join(name).to_str().unwrap());
    let c = Client::default();

    let gw = weir(&tls_config(
        &up,
        &format!(
            "upstream_ca_file = {}\nupstream_client_cert = {}\nupstream_client_key = {}",
            path("ca.pem"),
            path("client.pem"),
            path("client.key")
        ),
    ));
    let r = c.get(&gw.url("/secure/7")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen().len(), 1);

    // Without it the upstream ends the handshake: 502, nothing reaches it.
    let gw = weir(&tls_config(
        &up,
        &format!("upstream_ca_file = {}", path("ca.pem")),
    ));
    let r = c.get(&gw.url("/secure/8")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.seen().len(), 1);
}

#[test]
fn unusable_upstream_tls_files_stop_the_start() {
    let dir = weir_tests::test_dir();
    let file = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        toml_path(dir.join(name).to_str().unwrap())
    };
    let empty = file("empty.pem", "not a certificate\n");
    let (cert, _) = TestCa::new().client_cert();
    let cert = file("client.pem", &cert);
    let missing = toml_path(dir.join("missing.pem").to_str().unwrap());
    for (settings, want) in [
        (format!("upstream_ca_file = {missing}"), "upstream_ca_file"),
        (
            format!("upstream_ca_file = {empty}"),
            "no certificates in it",
        ),
        (
            format!("upstream_client_key = {empty}"),
            "upstream_client_key needs upstream_client_cert",
        ),
        (
            format!("upstream_client_cert = {cert}"),
            "upstream_client_cert needs upstream_client_key",
        ),
        (
            format!("upstream_client_cert = {cert}\nupstream_client_key = {empty}"),
            "upstream_client_key",
        ),
    ] {
        crate::refused_at_start(&dir, &settings, want);
    }
}

/// A worker keeps its connections to a plain-HTTP upstream: requests one after the other
/// share one, whatever their method or status; an upstream named by host name is
/// reached too; and a connection whose answer was not read to its end (here, one over
/// `max_response_body`) is not given to the next request.
#[tokio::test]
async fn plain_http_upstream_connections_are_kept_and_given_back_only_when_read_whole() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
[limits]
max_response_body = "2KiB"
[[routes]]
key = "ANY /ip/{{proxy+}}"
integration = {{ type = "http", url = "http://{addr}/{{proxy+}}" }}
[[routes]]
key = "ANY /name/{{proxy+}}"
integration = {{ type = "http", url = "http://localhost:{port}/{{proxy+}}" }}
"#,
        addr = up.addr,
        port = up.addr.port(),
    ));
    let c = Client::default();
    let exchanges = [
        ("GET", "/ip/a?x=1", 200),
        ("POST", "/ip/b", 200),
        ("HEAD", "/ip/c", 200),
        ("GET", "/ip/status/404", 404),
        ("DELETE", "/ip/status/503", 503),
        ("PUT", "/ip/d", 200),
    ];
    for round in 0..3 {
        for (method, path, status) in exchanges {
            let body = if method == "POST" || method == "PUT" {
                Bytes::from_static(b"{\"n\":1}")
            } else {
                Bytes::new()
            };
            let r = c.send(method, &gw.url(path), &[], body).await;
            assert_eq!(r.status, status, "{method} {path} (round {round})");
            if method != "HEAD" {
                assert_eq!(r.header("server"), Some("test-upstream"));
            }
        }
    }
    assert_eq!(
        up.connections(),
        1,
        "one worker, one client: one connection"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 18);
    assert_eq!(seen[0].uri, "/a?x=1", "the request line is in origin form");

    // By host name: another authority, so another connection, kept as well.
    for _ in 0..3 {
        let r = c.get(&gw.url("/name/by-name")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], "/by-name");
    }
    assert_eq!(up.connections(), 2);

    // An answer over max_response_body is 502; its connection is not reused.
    let big = Bytes::from(vec![b'x'; 4096]);
    let r = c.send("POST", &gw.url("/ip/big"), &[], big).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let r = c.get(&gw.url("/ip/after")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.connections(),
        3,
        "the unread answer's connection was not reused"
    );
    let r = c.get(&gw.url("/ip/again")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.connections(), 3);
}

/// An upstream that closes every connection as soon as it accepts it: a quick 502, and
/// a bounded number of attempts (the first send and the resends of an idempotent
/// request), not a new connection after another until the route's timeout.
#[tokio::test]
async fn an_upstream_that_closes_every_connection_at_once_gets_a_quick_502() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let gw = weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
[[routes]]
key = "ANY /gone"
integration = {{ type = "http", url = "http://{addr}/" }}
timeout = "10s"
"#
    ));
    let c = Client::default();
    for method in ["GET", "POST"] {
        let before = accepted.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let r = c.send(method, &gw.url("/gone"), &[], Bytes::new()).await;
        assert_eq!(r.status, 502, "{method}: {}", r.text());
        assert!(r.json()["message"].is_string());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{method}: {:?}",
            started.elapsed()
        );
        let tries = accepted.load(Ordering::SeqCst) - before;
        let most = if method == "GET" { 3 } else { 1 };
        assert!((1..=most).contains(&tries), "{method}: {tries} connections");
    }
}
