//! The shipped `jwt-authorizer` plugin with JWTs signed here by real keys.

use bytes::Bytes;
use serde_json::json;
use weir_tests::artifacts::{JWT_AUTHORIZER, PARAM_MAPPING};
use weir_tests::jwt::{RsaKey, now, sign_hs256};
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_JWT_AUTHORIZER: bool = true;

const ISSUER: &str = "https://issuer.example";
const SECRET: &str = "a-shared-secret-of-decent-length";

fn config(up: &Upstream, key: &RsaKey) -> String {
    format!(
        r#"
[plugins.jwt]
file = {jwt}
world = "authorizer"
[plugins.jwt.config]
issuer = "{ISSUER}"
audience = ["pets", "other"]
hs256_secret = "{SECRET}"
jwks = {jwks}

[plugins.claims]
file = {mapping}
world = "mapper"
[plugins.claims.config.request]
"overwrite:header.x-sub" = "$context.authorizer.principalId"
"overwrite:header.x-email" = "$context.authorizer.email"

[[routes]]
key = "GET /pets"
integration = {{ type = "http", url = "{base}/pets" }}
authorizer = {{ plugin = "jwt", identity_source = ["$request.header.Authorization"] }}
request_mapping = "claims"
[[routes]]
key = "DELETE /pets"
integration = {{ type = "http", url = "{base}/pets" }}
authorizer = {{ plugin = "jwt", scopes = ["pets:write", "admin"] }}
"#,
        jwt = toml_path(JWT_AUTHORIZER),
        mapping = toml_path(PARAM_MAPPING),
        jwks = toml_inline(&key.jwks()),
        base = up.base(),
    )
}

/// A JSON value as an inline TOML value.
fn toml_inline(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("{k:?} = {}", toml_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        serde_json::Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "iss": ISSUER, "aud": "pets", "sub": "user-1", "email": "u1@example.com",
        "iat": now() - 10, "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn call(c: &Client, url: &str, method: &str, auth: &str) -> weir_tests::Reply {
    c.send(method, url, &[("authorization", auth)], Bytes::new())
        .await
}

#[tokio::test]
async fn jwt_authorizer_checks_signature_and_claims() {
    let up = Upstream::start().await;
    let key = RsaKey::generate("k1");
    let gw = weir(&config(&up, &key));
    let c = Client::default();
    let url = gw.url("/pets");

    let good = key.sign(&claims(json!({})));
    let r = call(&c, &url, "GET", &format!("Bearer {good}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(h["x-sub"], "user-1", "principal id is the sub claim");
    assert_eq!(
        h["x-email"], "u1@example.com",
        "claims become authorizer context"
    );
    assert_eq!(
        call(&c, &url, "GET", &good).await.status,
        200,
        "raw token without Bearer"
    );

    let other_key = RsaKey::generate("k1");
    let cases = [
        ("expired", key.sign(&claims(json!({"exp": now() - 60})))),
        ("no exp", key.sign(&claims(json!({"exp": null})))),
        (
            "not yet valid",
            key.sign(&claims(json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            key.sign(&claims(json!({"iss": "https://evil.example"}))),
        ),
        ("wrong audience", key.sign(&claims(json!({"aud": "cats"})))),
        ("bad signature", other_key.sign(&claims(json!({})))),
        ("garbage", "not.a.jwt".to_owned()),
        ("tampered", {
            let t = key.sign(&claims(json!({})));
            let forged = key.sign(&claims(json!({"sub": "admin"})));
            let (p, f): (Vec<&str>, Vec<&str>) =
                (t.split('.').collect(), forged.split('.').collect());
            format!("{}.{}.{}", p[0], f[1], p[2])
        }),
    ];
    for (what, token) in cases {
        let r = call(&c, &url, "GET", &format!("Bearer {token}")).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(r.json(), json!({"message": "Unauthorized"}), "{what}");
    }
    let aud_list = key.sign(&claims(json!({"aud": ["x", "other"]})));
    assert_eq!(
        call(&c, &url, "GET", &format!("Bearer {aud_list}"))
            .await
            .status,
        200
    );

    let hs = sign_hs256(SECRET.as_bytes(), &claims(json!({"sub": "hs-user"})));
    let r = call(&c, &url, "GET", &format!("Bearer {hs}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-sub"], "hs-user");
    let hs_bad = sign_hs256(b"another-secret", &claims(json!({})));
    assert_eq!(
        call(&c, &url, "GET", &format!("Bearer {hs_bad}"))
            .await
            .status,
        401
    );

    let r = c.get(&url).await;
    assert_eq!(r.status, 401, "no Authorization header");
    assert_eq!(
        up.seen().len(),
        4,
        "only the four accepted tokens reached the upstream"
    );
}

#[tokio::test]
async fn jwt_authorizer_enforces_route_scopes() {
    let up = Upstream::start().await;
    let key = RsaKey::generate("k1");
    let gw = weir(&config(&up, &key));
    let c = Client::default();
    let url = gw.url("/pets");
    let no_scope = key.sign(&claims(json!({"scope": "pets:read"})));
    let r = call(&c, &url, "DELETE", &format!("Bearer {no_scope}")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let scoped = key.sign(&claims(json!({"scope": "pets:read pets:write"})));
    assert_eq!(
        call(&c, &url, "DELETE", &format!("Bearer {scoped}"))
            .await
            .status,
        200
    );
    let scp = key.sign(&claims(json!({"scp": ["admin"]})));
    assert_eq!(
        call(&c, &url, "DELETE", &format!("Bearer {scp}"))
            .await
            .status,
        200
    );
}
