//! The JWT authorizer with keys from the issuer: a stand-in OpenID Connect provider
//! (discovery + JWKS, over HTTP and HTTPS) that rotates its keys and goes down, every
//! RS/PS/ES algorithm with keys made here, and `401` whenever there are no keys.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use weir_tests::artifacts::JWT_AUTHORIZER;
use weir_tests::jwt::{ALGORITHMS, SigningKey, now};
use weir_tests::oidc::Provider;
use weir_tests::{Client, TestCa, Weir};

use crate::{toml_path, weir};

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// A gateway whose `jwt` plugin checks tokens of `issuer` for `GET /pets` (no decision
/// cache, so every request meets the keys), reaching `origin`; `server` and `keys` add
/// lines to `[server]` and to the plugin's config.
fn gateway(issuer: &str, origin: &str, server: &str, keys: &str) -> Weir {
    weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[admin]
listen = "127.0.0.1:0"
[plugins.jwt]
file = {file}
world = "authorizer"
allow_outbound = ["{origin}"]
[plugins.jwt.config]
issuer = "{issuer}"
audience = ["pets"]
{keys}
[[routes]]
key = "GET /pets"
integration = {{ type = "mock", body = "pets" }}
authorizer = {{ plugin = "jwt", identity_source = ["$request.header.Authorization"], ttl = "0s" }}
"#,
        file = toml_path(JWT_AUTHORIZER),
    ))
}

fn token(key: &SigningKey, issuer: &str) -> String {
    key.sign(&json!({
        "iss": issuer, "aud": "pets", "sub": format!("user-{}", key.kid),
        "iat": now() - 10, "exp": now() + 600,
    }))
}

async fn status(c: &Client, gw: &Weir, token: &str) -> u16 {
    c.send(
        "GET",
        &gw.url("/pets"),
        &[("authorization", &format!("Bearer {token}"))],
        Bytes::new(),
    )
    .await
    .status
    .as_u16()
}

/// Sleeps until `at`.
async fn until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

#[tokio::test]
async fn rotated_keys_are_followed_without_a_restart_over_https() {
    let ca = TestCa::new();
    let idp = Provider::start_tls(&ca).await;
    let ca_file = weir_tests::test_dir().join("idp-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let issuer = idp.issuer();
    let gw = gateway(
        &issuer,
        &issuer,
        &format!(
            "upstream_ca_file = {}",
            toml_path(ca_file.to_str().unwrap())
        ),
        "",
    );
    let c = Client::default();
    let old = SigningKey::generate("RS256", "old");
    let new = SigningKey::generate("ES256", "new");
    idp.publish(&[&old]);

    let first_fetch = Instant::now();
    assert_eq!(status(&c, &gw, &token(&old, &issuer)).await, 200);
    assert_eq!((idp.requests(DISCOVERY), idp.requests("/jwks")), (1, 1));
    // A key id not in the set asks for the set again, but not within 30 s of the last
    // time: the new key is unknown yet.
    assert_eq!(status(&c, &gw, &token(&new, &issuer)).await, 401);
    assert_eq!(idp.requests("/jwks"), 1, "refetches are rate-limited");

    // The provider rotates: the new key in, the old one out. Until the gateway asks
    // again, the kept keys serve.
    idp.publish(&[&new]);
    assert_eq!(status(&c, &gw, &token(&old, &issuer)).await, 200);
    until(first_fetch + Duration::from_secs(31)).await;
    assert_eq!(
        status(&c, &gw, &token(&new, &issuer)).await,
        200,
        "{}",
        gw.logs()
    );
    assert_eq!(idp.requests("/jwks"), 2, "one refetch for the unknown kid");
    // The old key left the set: its tokens fail now (another unknown kid, and no
    // refetch within 30 s of the last).
    assert_eq!(status(&c, &gw, &token(&old, &issuer)).await, 401);
    assert_eq!(idp.requests("/jwks"), 2);
    assert_eq!(
        idp.requests(DISCOVERY),
        1,
        "discovery is kept for its max-age"
    );
}

#[tokio::test]
async fn the_last_good_keys_serve_while_the_provider_is_down() {
    let idp = Provider::start().await;
    let issuer = idp.issuer();
    let gw = gateway(&issuer, &issuer, "", "");
    let c = Client::default();
    let key = SigningKey::generate("PS256", "k1");
    let stranger = SigningKey::generate("ES384", "k2");
    // No max-age: the keys are used for an hour (and for a day more if the issuer is
    // down).
    idp.publish(&[&key]);
    let fetched = Instant::now();
    assert_eq!(status(&c, &gw, &token(&key, &issuer)).await, 200);

    idp.set_down(true);
    assert_eq!(status(&c, &gw, &token(&key, &issuer)).await, 200);
    // An unknown kid makes the gateway ask again; the provider answers 503, so the last
    // good keys stay (and the gateway says so).
    until(fetched + Duration::from_secs(31)).await;
    assert_eq!(status(&c, &gw, &token(&stranger, &issuer)).await, 401);
    assert_eq!(idp.requests("/jwks"), 2, "the refetch reached the provider");
    gw.wait_for_logs("serving the answer kept before (stale-if-error)", 1)
        .await;
    assert_eq!(status(&c, &gw, &token(&key, &issuer)).await, 200);
    assert_eq!(idp.requests("/jwks"), 2, "no more than one try per 30 s");

    // A gateway that never had keys: 401, never 200, with a line saying why.
    let fresh = gateway(&issuer, &issuer, "", "");
    assert_eq!(status(&c, &fresh, &token(&key, &issuer)).await, 401);
    let logs = fresh
        .wait_for_logs(&format!("no signing keys for issuer {issuer}"), 1)
        .await;
    assert!(logs.contains("answered 503"), "{logs}");
}

#[tokio::test]
async fn no_keys_is_401_and_a_log_line() {
    let c = Client::default();
    let key = SigningKey::generate("ES256", "k1");
    // Nothing listens at the issuer.
    let closed = format!("http://127.0.0.1:{}", weir_tests::closed_port());
    let gw = gateway(&closed, &closed, "", "");
    assert_eq!(status(&c, &gw, &token(&key, &closed)).await, 401);
    gw.wait_for_logs(&format!("no signing keys for issuer {closed}"), 1)
        .await;

    // The issuer's origin is not in allow_outbound: the request never leaves.
    let idp = Provider::start().await;
    let issuer = idp.issuer();
    idp.publish(&[&key]);
    let gw = gateway(&issuer, "http://127.0.0.1:1", "", "");
    assert_eq!(status(&c, &gw, &token(&key, &issuer)).await, 401);
    gw.wait_for_logs("HttpRequestDenied", 1).await;
    assert_eq!(idp.requests(DISCOVERY), 0);

    // A key set over 150,000 bytes is refused.
    let mut big = weir_tests::jwt::jwks(&[&key]);
    big["padding"] = json!("x".repeat(150_000));
    idp.publish_raw(big);
    let gw = gateway(&issuer, &issuer, "", "");
    assert_eq!(status(&c, &gw, &token(&key, &issuer)).await, 401);
    gw.wait_for_logs("over the 150000 allowed", 1).await;
}

#[tokio::test]
async fn every_algorithm_by_discovery_by_jwks_uri_and_inline() {
    let idp = Provider::start().await;
    let issuer = idp.issuer();
    let keys: Vec<SigningKey> = ALGORITHMS
        .iter()
        .map(|alg| SigningKey::generate(alg, &alg.to_lowercase()))
        .collect();
    let all: Vec<&SigningKey> = keys.iter().collect();
    idp.publish(&all);
    idp.cache_control(Some("public, max-age=600"));
    let inline = format!(
        "jwks = '{}'",
        weir_tests::jwt::jwks(&all).to_string().replace('\'', "")
    );
    let by_uri = format!("jwks_uri = \"{issuer}/jwks\"");
    let c = Client::default();
    for (how, extra) in [
        ("discovery", ""),
        ("jwks_uri", by_uri.as_str()),
        ("inline", inline.as_str()),
    ] {
        let gw = gateway(&issuer, &issuer, "", extra);
        for key in &keys {
            let t = token(key, &issuer);
            assert_eq!(status(&c, &gw, &t).await, 200, "{how} {}", key.alg);
            // The same token under another algorithm of the same family: refused.
            let [_, p, s]: [&str; 3] = t.split('.').collect::<Vec<_>>().try_into().unwrap();
            let other = match key.alg {
                "RS256" => "PS256",
                "PS256" => "RS256",
                "ES256" => "ES384",
                _ => "RS256",
            };
            let swapped = header(json!({"alg": other, "kid": key.kid}));
            assert_eq!(
                status(&c, &gw, &format!("{swapped}.{p}.{s}")).await,
                401,
                "{how}: {} as {other}",
                key.alg
            );
        }
        // alg none, and HS256 keyed with an RSA key's public modulus: refused.
        let rs = keys[0].jwk();
        let claims = token(&keys[0], &issuer)
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        let unsigned = format!("{}.{claims}.", header(json!({"alg": "none"})));
        assert_eq!(status(&c, &gw, &unsigned).await, 401, "{how}: alg none");
        let confused = weir_tests::jwt::sign_hs256(
            rs["n"].as_str().unwrap().as_bytes(),
            &json!({"iss": issuer, "aud": "pets", "exp": now() + 600}),
        );
        assert_eq!(
            status(&c, &gw, &confused).await,
            401,
            "{how}: HS256 confusion"
        );
        // Every good token but ES512's was checked by the gateway natively, once.
        let good = r#"weir_plugin_signature_checks_total{plugin="jwt",result="good"}"#;
        let unusable = r#"weir_plugin_signature_checks_total{plugin="jwt",result="unusable"}"#;
        assert_eq!(crate::lambda::metric(&c, &gw, good).await, 8.0, "{how}");
        assert_eq!(crate::lambda::metric(&c, &gw, unusable).await, 0.0, "{how}");
    }
    // One discovery (kept its max-age) and one JWKS per gateway that fetches keys, for
    // every token it checked.
    assert_eq!(
        idp.requests(DISCOVERY),
        1,
        "only the discovery gateway asked"
    );
    assert_eq!(
        idp.requests("/jwks"),
        2,
        "once per gateway that fetches keys"
    );
}

fn header(h: serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_string())
}

#[tokio::test]
async fn concurrent_first_calls_fetch_the_keys_once() {
    let idp = Provider::start().await;
    let issuer = idp.issuer();
    let key = SigningKey::generate("ES256", "k1");
    idp.publish(&[&key]);
    let gw = gateway(&issuer, &issuer, "", "");
    let c = Client::default();
    // Every call starts with nothing kept: they wait for the one fetch of each URL.
    let calls = (0..24).map(|_| {
        let (c, url, t) = (c.clone(), gw.url("/pets"), token(&key, &issuer));
        tokio::spawn(async move {
            c.send(
                "GET",
                &url,
                &[("authorization", &format!("Bearer {t}"))],
                Bytes::new(),
            )
            .await
            .status
            .as_u16()
        })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!((idp.requests(DISCOVERY), idp.requests("/jwks")), (1, 1));
}
