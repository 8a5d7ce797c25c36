//! The client's address behind trusted proxies, and address allow and deny lists: a
//! refused address gets `403` before any throttle or plugin; `X-Forwarded-For` from a
//! peer that is not a trusted proxy changes nothing.

use bytes::Bytes;
use weir_tests::{Client, Upstream};

use crate::{refused_at_start, weir};

fn config(up: &Upstream, server: &str, api: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[api]
{api}
[[routes]]
key = "GET /up"
integration = {{ type = "http", url = "{base}/up" }}
[[routes]]
key = "GET /closed"
integration = {{ type = "mock", body = "no" }}
ip_deny = ["203.0.113.0/28"]
"#,
        base = up.base(),
    )
}

async fn get(c: &Client, url: &str, xff: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
    let r = c.send("GET", url, &headers, Bytes::new()).await;
    (r.status.as_u16(), r.text())
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let up = Upstream::start().await;
    let gw = weir(&config(
        &up,
        r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#,
        r#"ip_allow = ["203.0.113.0/24", "2001:db8::/32"]"#,
    ));
    let c = Client::default();
    // The loopback peer is a trusted proxy: the client is the hop it names.
    let (status, _) = get(&c, &gw.url("/up"), Some("203.0.113.9")).await;
    assert_eq!(status, 200);
    // A spoofed hop on the left is the client's own claim: the rightmost untrusted
    // hop decides (here an inner proxy at 10.1.1.1 passed it on).
    let (status, body) = get(&c, &gw.url("/up"), Some("203.0.113.9, 198.51.100.1")).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    let (status, _) = get(
        &c,
        &gw.url("/up"),
        Some("198.51.100.1, 203.0.113.9, 10.1.1.1"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(&c, &gw.url("/up"), Some("[2001:db8::5]:443")).await;
    assert_eq!(status, 200);
    // No header: the proxy itself is the client, and it is not allowed.
    let (status, _) = get(&c, &gw.url("/up"), None).await;
    assert_eq!(status, 403);
    // The route's own deny list narrows the API's allow list.
    let (status, _) = get(&c, &gw.url("/closed"), Some("203.0.113.9")).await;
    assert_eq!(status, 403);
    let (status, _) = get(&c, &gw.url("/closed"), Some("203.0.113.99")).await;
    assert_eq!(status, 200);
    // The access log and the upstream see the resolved client; the upstream's
    // x-forwarded-for chain gets the peer appended, as a proxy's does.
    gw.wait_for_logs("sourceIp=\"203.0.113.9\"", 1).await;
    let seen = up.seen();
    let xff = seen[0]
        .headers
        .get("x-forwarded-for")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(xff, "203.0.113.9, 127.0.0.1");
}

#[tokio::test]
async fn a_refused_address_costs_no_tokens() {
    let up = Upstream::start().await;
    let gw = weir(&config(
        &up,
        "trusted_proxies = [\"127.0.0.1\"]\n[throttle]\nrate = 1\nburst = 1",
        r#"ip_deny = ["203.0.113.9"]"#,
    ));
    let c = Client::default();
    for _ in 0..5 {
        let (status, body) = get(&c, &gw.url("/up"), Some("203.0.113.9")).await;
        assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    }
    // A preflight is refused as well, before any CORS policy.
    let r = c
        .send(
            "OPTIONS",
            &gw.url("/up"),
            &[
                ("origin", "https://a.example"),
                ("x-forwarded-for", "203.0.113.9"),
                ("access-control-request-method", "GET"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(up.seen().is_empty());
    // The refusals took no tokens: the account bucket (burst 1) still has its one.
    assert_eq!(get(&c, &gw.url("/up"), Some("198.51.100.1")).await.0, 200);
    assert_eq!(get(&c, &gw.url("/up"), Some("198.51.100.1")).await.0, 429);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let up = Upstream::start().await;
    let c = Client::default();
    // No trusted proxies: the header is the client's own claim.
    let deny = weir(&config(&up, "", r#"ip_deny = ["127.0.0.0/8"]"#));
    let (status, _) = get(&c, &deny.url("/up"), Some("203.0.113.9")).await;
    assert_eq!(status, 403);
    let allow = weir(&config(&up, "", r#"ip_allow = ["203.0.113.0/24"]"#));
    let (status, _) = get(&c, &allow.url("/up"), Some("203.0.113.9")).await;
    assert_eq!(status, 403);
    // Trusting another network does not make loopback's header believed either.
    let other = weir(&config(
        &up,
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
        r#"ip_allow = ["203.0.113.0/24"]"#,
    ));
    let (status, _) = get(&c, &other.url("/up"), Some("203.0.113.9")).await;
    assert_eq!(status, 403);
    assert!(up.seen().is_empty());
}

#[test]
fn bad_lists_are_refused_by_name() {
    let dir = weir_tests::test_dir();
    refused_at_start(
        &dir,
        "trusted_proxies = [\"10.0.0.0/40\"]",
        "server.trusted_proxies: `10.0.0.0/40` is not an address or a CIDR block",
    );
    std::fs::write(
        dir.join("weir.toml"),
        "[api]\nip_allow = [\"nope\"]\n[[routes]]\nkey = \"GET /x\"\nintegration = { type = \"mock\" }\nip_deny = [\"1.2.3.4/99\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(dir.join("weir.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("api.ip_allow: `nope`"), "{stderr}");
    assert!(
        stderr.contains("routes[0] (`GET /x`).ip_deny: `1.2.3.4/99`"),
        "{stderr}"
    );
}
