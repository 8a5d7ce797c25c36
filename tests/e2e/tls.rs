//! The listener over TLS (`[server] tls_cert` and `tls_key`).

use std::time::Duration;

use bytes::Bytes;
use weir_tests::{Client, TestCa, Upstream, raw_exchange};

use crate::{toml_path, weir};

/// A `[server]` table that serves HTTPS with `ca`'s server certificate (its files in a
/// fresh directory).
pub(crate) fn tls_server(ca: &TestCa) -> String {
    let dir = weir_tests::test_dir();
    let (cert, key) = (dir.join("gw.pem"), dir.join("gw.key"));
    std::fs::write(&cert, &ca.server_pem.0).unwrap();
    std::fs::write(&key, &ca.server_pem.1).unwrap();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}",
        toml_path(cert.to_str().unwrap()),
        toml_path(key.to_str().unwrap())
    )
}

#[tokio::test]
async fn serves_https_with_http1_and_http2_and_says_so_upstream() {
    let ca = TestCa::new();
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
{server}
[[routes]]
key = "GET /items/{{id}}"
integration = {{ type = "http", url = "{base}/items/{{id}}" }}
"#,
        server = tls_server(&ca),
        base = up.base(),
    ));
    assert_eq!(gw.scheme, "https", "the start-up line names https");

    for (client, id) in [
        (Client::trusting(&ca), "1"),
        (Client::trusting_http2(&ca), "2"),
    ] {
        let r = client.get(&gw.url(&format!("/items/{id}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], format!("/items/{id}"));
        assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    }

    // A client that does not trust the certificate gets no answer; nor does plain HTTP.
    let refused = Client::default()
        .try_send("GET", &gw.url("/items/3"), &[], Bytes::new())
        .await;
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    let plain = raw_exchange(
        gw.addr,
        b"GET /items/4 HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        !plain.contains("HTTP/1.1 200"),
        "plain HTTP was served: {plain}"
    );
    assert_eq!(
        up.seen().len(),
        2,
        "only the two TLS requests went upstream"
    );
}

#[test]
fn tls_cert_and_key_come_together_and_must_be_usable() {
    let dir = weir_tests::test_dir();
    let ca = TestCa::new();
    let file = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        toml_path(dir.join(name).to_str().unwrap())
    };
    let cert = file("gw.pem", &ca.server_pem.0);
    let other_key = file("other.key", &TestCa::new().server_pem.1);
    for (settings, want) in [
        (format!("tls_cert = {cert}"), "tls_cert needs tls_key"),
        (format!("tls_key = {other_key}"), "tls_key needs tls_cert"),
        (format!("tls_cert = {cert}\ntls_key = {cert}"), "tls_key"),
        (
            format!("tls_cert = {other_key}\ntls_key = {other_key}"),
            "tls_cert",
        ),
    ] {
        crate::refused_at_start(&dir, &settings, want);
    }
}

#[tokio::test]
async fn websocket_apis_work_over_tls() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let ca = TestCa::new();
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
{server}
[websocket.chat]
path = "/chat"
[[websocket.chat.routes]]
key = "$default"
integration = {{ type = "http", url = "{base}/default" }}
route_response = true
"#,
        server = tls_server(&ca),
        base = up.base(),
    ));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client_config()))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://{}/chat", gw.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    ws.send(Message::text("hello over tls")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a route response")
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["path"], "/default");
    assert_eq!(reply["body"], "hello over tls");
}
