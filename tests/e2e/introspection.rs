//! The `oauth-introspection` authorizer: opaque tokens checked by an RFC 7662 endpoint
//! through the plugin's allow-listed outbound HTTP, decisions cached by the gateway.

use bytes::Bytes;
use weir_tests::artifacts::OAUTH_INTROSPECTION;
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_OAUTH_INTROSPECTION: bool = true;

fn config(idp: &Upstream, allow: &str, secret: &str) -> String {
    format!(
        r#"
[plugins.introspect]
file = {file}
world = "authorizer"
deadline = "2s"
{allow}
config = {{ endpoint = "{base}/introspect", client_id = "gateway", client_secret = "{secret}" }}
[[routes]]
key = "GET /read"
integration = {{ type = "mock", body = "read" }}
authorizer = {{ plugin = "introspect", identity_source = ["$request.header.Authorization"], scopes = ["read"] }}
[[routes]]
key = "GET /admin"
integration = {{ type = "mock", body = "admin" }}
authorizer = {{ plugin = "introspect", identity_source = ["$request.header.Authorization"], scopes = ["admin"], ttl = "0s" }}
"#,
        file = toml_path(OAUTH_INTROSPECTION),
        base = idp.base(),
    )
}

async fn get(c: &Client, url: &str, token: &str) -> (u16, String) {
    let r = c
        .send("GET", url, &[("authorization", token)], Bytes::new())
        .await;
    (r.status.as_u16(), r.text())
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached() {
    let idp = Upstream::start().await;
    let allow = format!("allow_outbound = [\"{}\"]", idp.base());
    let gw = weir(&config(&idp, &allow, "s3cret:&"));
    let c = Client::default();

    assert_eq!(
        get(&c, &gw.url("/read"), "Bearer good-alice").await,
        (200, "read".to_owned())
    );
    // The endpoint got the token form-encoded, with the client's Basic credentials.
    let seen = idp.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        "token=good-alice&token_type_hint=access_token"
    );
    // The decision is cached (default ttl): no second call for the same token.
    assert_eq!(get(&c, &gw.url("/read"), "Bearer good-alice").await.0, 200);
    assert_eq!(idp.seen().len(), 1);

    // Inactive and expired tokens: 401; a token without the route's scope: 403.
    assert_eq!(get(&c, &gw.url("/read"), "Bearer nope").await.0, 401);
    assert_eq!(get(&c, &gw.url("/read"), "Bearer expired-bob").await.0, 401);
    assert_eq!(get(&c, &gw.url("/admin"), "Bearer good-alice").await.0, 403);
    gw.wait_for_logs("principalId=\"alice\"", 1).await;
}

#[tokio::test]
async fn without_allow_outbound_or_with_bad_credentials_nothing_is_allowed() {
    let idp = Upstream::start().await;
    let c = Client::default();
    // Not allow-listed: the request never leaves; the call fails, the answer is 500.
    let closed = weir(&config(&idp, "", "s3cret:&"));
    let (status, body) = get(&c, &closed.url("/read"), "Bearer good-alice").await;
    assert_eq!(status, 500, "{body}");
    assert!(idp.seen().is_empty());
    closed.wait_for_logs("HttpRequestDenied", 1).await;

    // The endpoint refuses the gateway's credentials: 500, never an allow, not cached.
    let allow = format!("allow_outbound = [\"{}\"]", idp.base());
    let wrong = weir(&config(&idp, &allow, "wrong"));
    for _ in 0..2 {
        assert_eq!(
            get(&c, &wrong.url("/read"), "Bearer good-alice").await.0,
            500
        );
    }
    assert_eq!(idp.seen().len(), 2);
    wrong.wait_for_logs("answered 401", 1).await;

    // An endpoint that is down: 500 as well.
    let down = format!("http://127.0.0.1:{}", weir_tests::closed_port());
    let gone = weir(
        &config(&idp, &format!("allow_outbound = [\"{down}\"]"), "x").replace(&idp.base(), &down),
    );
    assert_eq!(
        get(&c, &gone.url("/read"), "Bearer good-alice").await.0,
        500
    );
}

/// `weir plugin check --request` calls out as the gateway would: only to the origins
/// `--allow-outbound` names.
#[tokio::test]
async fn plugin_check_request_reaches_the_endpoint_it_is_allowed() {
    let idp = Upstream::start().await;
    let dir = weir_tests::test_dir();
    let sample = dir.join("sample.json");
    std::fs::write(
        &sample,
        r#"{"headers": {"Authorization": "Bearer good-alice"}, "scopes": ["read"]}"#,
    )
    .unwrap();
    let config = format!(
        r#"{{"endpoint": "{}/introspect", "client_id": "gateway", "client_secret": "s3cret:&"}}"#,
        idp.base()
    );
    let check = |allow: Option<String>| {
        let (config, sample, base) = (config.clone(), sample.clone(), allow);
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
            cmd.args([
                "plugin",
                "check",
                OAUTH_INTROSPECTION,
                "--world",
                "authorizer",
            ])
            .args(["--config", &config, "--request"])
            .arg(&sample);
            if let Some(origin) = base {
                cmd.args(["--allow-outbound", &origin]);
            }
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (code, stdout, stderr) = check(Some(idp.base())).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer["authorize"]["allow"]["principal_id"], "alice",
        "{answer}"
    );
    assert_eq!(idp.seen().len(), 1);

    let (code, _, stderr) = check(None).await.unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the sample request failed"), "{stderr}");
    assert_eq!(idp.seen().len(), 1, "nothing left without --allow-outbound");
}
