//! Mutual TLS on the listener (`[server] client_ca_file`, `client_auth`): certificates
//! verified at the handshake, their identity in the access log, and a truststore that
//! changes on disk without a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::artifacts::{COUNTING_AUTHORIZER, PARAM_MAPPING};
use weir_tests::{Client, TestCa, Upstream};

use crate::{refused_at_start, toml_path, weir};

/// A `[server]` table serving HTTPS with `server`'s certificate and asking for client
/// certificates signed by the authority in `client_ca` (a file).
fn mtls_server(server: &TestCa, client_ca: &Path, auth: &str) -> String {
    format!(
        "{}\nclient_ca_file = {}\nclient_auth = \"{auth}\"\n[[routes]]\nkey = \"GET /who\"\nintegration = {{ type = \"mock\", body = \"hi\" }}\n",
        crate::tls::tls_server(server),
        toml_path(client_ca.to_str().unwrap()),
    )
}

/// `weir validate CONFIG`: whether it passed, and what it wrote to stderr.
fn validate(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status(c: &Client, url: &str) -> Option<u16> {
    c.try_send("GET", url, &[], Bytes::new())
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

#[tokio::test]
async fn required_client_certificates_are_checked_at_the_handshake() {
    let server = TestCa::new();
    let clients = TestCa::new();
    let dir = weir_tests::test_dir();
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, &clients.ca_pem).unwrap();
    let gw = weir(&mtls_server(&server, &ca_file, "required"));
    let url = gw.url("/who");

    let good = Client::trusting_with_cert(&server, &clients.client_cert());
    assert_eq!(status(&good, &url).await, Some(200));
    let log = gw
        .wait_for_logs("identity.clientCert.subjectDN=\"CN=weir gateway\"", 1)
        .await;
    assert!(log.contains("identity.clientCert.serialNumber="), "{log}");
    // No certificate, or one from another authority: no answer at all.
    assert_eq!(status(&Client::trusting(&server), &url).await, None);
    let stranger = TestCa::new();
    let wrong = Client::trusting_with_cert(&server, &stranger.client_cert());
    assert_eq!(status(&wrong, &url).await, None);
}

#[tokio::test]
async fn optional_client_certificates_and_a_truststore_that_changes() {
    let server = TestCa::new();
    let (first, second) = (TestCa::new(), TestCa::new());
    let dir = weir_tests::test_dir();
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, &first.ca_pem).unwrap();
    let gw = weir(&mtls_server(&server, &ca_file, "optional"));
    let url = gw.url("/who");

    // Without a certificate the request is served, without an identity.
    assert_eq!(status(&Client::trusting(&server), &url).await, Some(200));
    let from_first = Client::trusting_with_cert(&server, &first.client_cert());
    let from_second = Client::trusting_with_cert(&server, &second.client_cert());
    assert_eq!(status(&from_first, &url).await, Some(200));
    // A certificate that does not verify is refused even though one is optional.
    assert_eq!(status(&from_second, &url).await, None);

    // The truststore is replaced on disk: new handshakes follow it, no restart.
    std::fs::write(&ca_file, &second.ca_pem).unwrap();
    let started = Instant::now();
    loop {
        // Fresh clients: a pooled connection keeps the handshake it had.
        let c = Client::trusting_with_cert(&server, &second.client_cert());
        if status(&c, &url).await == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new truststore was not taken up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = Client::trusting_with_cert(&server, &first.client_cert());
    assert_eq!(status(&c, &url).await, None);
    gw.wait_for_logs("listener TLS files changed", 1).await;

    // A broken file leaves the last good truststore serving, and says so.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    gw.wait_for_logs("cannot be used; the previous ones stay", 1)
        .await;
    let c = Client::trusting_with_cert(&server, &second.client_cert());
    assert_eq!(status(&c, &url).await, Some(200));
}

/// The certificate reaches plugins (`host.client-cert`): the shipped mapper names its
/// parts as AWS does (`$context.identity.clientCert.*`), and an authorizer's decisions
/// are cached per certificate as well as per token.
#[tokio::test]
async fn plugins_see_the_client_certificate() {
    let server = TestCa::new();
    let clients = TestCa::new();
    let dir = weir_tests::test_dir();
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, &clients.ca_pem).unwrap();
    let up = Upstream::start().await;
    let config = format!(
        r#"{tls}
client_ca_file = {ca}
client_auth = "optional"
[plugins.params]
file = {mapping}
world = "mapper"
[plugins.params.config.request]
"overwrite:header.x-client-subject" = "$context.identity.clientCert.subjectDN"
"overwrite:header.x-client-issuer" = "$context.identity.clientCert.issuerDN"
"overwrite:header.x-client-serial" = "$context.identity.clientCert.serialNumber"
"overwrite:header.x-client-not-after" = "$context.identity.clientCert.validity.notAfter"
[plugins.auth]
file = {auth}
world = "authorizer"
[[routes]]
key = "GET /who"
integration = {{ type = "http", url = "{base}/who" }}
request_mapping = "params"
authorizer = {{ plugin = "auth", identity_source = ["$request.header.x-token"], ttl = "300s" }}
"#,
        tls = crate::tls::tls_server(&server),
        ca = toml_path(ca_file.to_str().unwrap()),
        mapping = toml_path(PARAM_MAPPING),
        auth = toml_path(COUNTING_AUTHORIZER),
        base = up.base(),
    );
    let gw = weir(&config);
    let url = gw.url("/who");
    let token = [("x-token", "let-me-in")];

    let alice = Client::trusting_with_cert(&server, &clients.client_cert());
    let r = alice.send("GET", &url, &token, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json()["headers"].clone();
    assert_eq!(seen["x-client-subject"], "CN=weir gateway", "{seen}");
    assert_eq!(seen["x-client-issuer"], "CN=weir test CA", "{seen}");
    let serial = seen["x-client-serial"].as_str().unwrap();
    assert!(
        serial.len() >= 2 && serial.split(':').all(|b| b.len() == 2),
        "{serial}"
    );
    assert!(
        seen["x-client-not-after"]
            .as_str()
            .unwrap()
            .ends_with(" GMT"),
        "{seen}"
    );

    // The same token from a second certificate is a new decision; from the first, a
    // cached one.
    let bob = Client::trusting_with_cert(&server, &clients.client_cert());
    let r = bob.send("GET", &url, &token, Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["headers"]["x-client-serial"], serial);
    let r = alice.send("GET", &url, &token, Bytes::new()).await;
    assert_eq!(r.status, 200);
    // Without a certificate (optional): no identity, and a third decision.
    let anonymous = Client::trusting(&server);
    let r = anonymous.send("GET", &url, &token, Bytes::new()).await;
    assert_eq!(r.status, 200);
    let seen = r.json()["headers"].clone();
    assert!(
        seen.get("x-client-subject").is_none_or(|v| v == ""),
        "{seen}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.count_logs("authorize called"), 3, "{}", gw.logs());
}

#[test]
fn client_ca_file_needs_tls_and_a_usable_file() {
    let dir = weir_tests::test_dir();
    refused_at_start(
        &dir,
        "client_ca_file = \"clients.pem\"",
        "client_ca_file needs tls_cert and tls_key",
    );
    let server = TestCa::new();
    let missing = dir.join("missing.pem");
    let config = dir.join("weir.toml");
    std::fs::write(&config, mtls_server(&server, &missing, "required")).unwrap();
    let (ok, stderr) = validate(&config);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("client_ca_file"), "{stderr}");
}

/// `weir validate` names truststore certificates that cannot sign client certificates,
/// and still passes the config (the listener can serve with the others).
#[test]
fn validate_warns_about_unusable_truststore_certificates() {
    let dir = weir_tests::test_dir();
    let (server, clients) = (TestCa::new(), TestCa::new());
    let ca_file = dir.join("clients.pem");
    // A CA, then a client's own certificate, which signs nothing.
    let (leaf, _) = clients.client_cert();
    std::fs::write(&ca_file, format!("{}{leaf}", clients.ca_pem)).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, mtls_server(&server, &ca_file, "required")).unwrap();
    let (ok, stderr) = validate(&config);
    assert!(ok, "{stderr}");
    let warning = format!(
        "warning: client_ca_file {}: certificate 2 (CN=weir gateway): not a CA certificate",
        ca_file.display()
    );
    assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");
    assert!(!stderr.contains("certificate 1 "), "{stderr}");
}
