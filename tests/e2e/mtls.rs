//! Mutual TLS on the listener (`[server] client_ca_file`, `client_auth`): certificates
//! verified at the handshake, their identity in the access log, and a truststore that
//! changes on disk without a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::{Client, TestCa};

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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("client_ca_file"), "{stderr}");
}
