//! Deliberately hostile plugin output: deep recursion, huge bodies and header lists,
//! header injection (CR/LF), invalid UTF-8, impossible status codes. Each fails only its
//! own request with a documented 500, on both sides of the integration; nothing of it
//! reaches a client or upstream; an optional (`fail_open`) mapper is passed over.

use std::time::{Duration, Instant};

use weir_tests::artifacts::{ECHO_MAPPER, HOSTILE};
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_HOSTILE: bool = true;

const KINDS: [&str; 8] = [
    "recurse",
    "huge-body",
    "many-headers",
    "crlf",
    "bad-name",
    "bad-utf8",
    "status-99",
    "status-600",
];

fn config(up: &Upstream) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[limits]
max_body = "1MiB"
max_response_body = "1MiB"

[plugins.hostile]
file = {hostile}
world = "mapper"
[plugins.optional]
file = {hostile}
world = "mapper"
failure = "fail_open"
[plugins.echo]
file = {echo}
world = "mapper"

[[routes]]
key = "GET /in/{{kind}}"
integration = {{ type = "http", url = "{base}/in/{{kind}}" }}
request_mapping = "hostile"
[[routes]]
key = "GET /out/{{kind}}"
integration = {{ type = "http", url = "{base}/out/{{kind}}" }}
response_mapping = "hostile"
[[routes]]
key = "GET /optional/{{kind}}"
integration = {{ type = "http", url = "{base}/optional/{{kind}}" }}
request_mapping = "optional"
response_mapping = "optional"
[[routes]]
key = "GET /good"
integration = {{ type = "http", url = "{base}/good" }}
request_mapping = "echo"
"#,
        hostile = toml_path(HOSTILE),
        echo = toml_path(ECHO_MAPPER),
        base = up.base(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn hostile_output_fails_only_its_own_request() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();

    // Good traffic on another route, in parallel with everything below.
    let good = {
        let (c, url) = (c.clone(), gw.url("/good"));
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..100 {
                let r = c.get(&url).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.json()["headers"]["x-mapped"], "echo");
                ok += 1;
            }
            ok
        })
    };

    // Framing headers from a plugin are ignored: the body it returned is what is sent,
    // with its real length.
    for side in ["in", "out"] {
        let r = c.get(&gw.url(&format!("/{side}/bad-length"))).await;
        assert_eq!(r.status, 200, "{side}");
        assert_eq!(r.text(), "0123456789");
        assert_eq!(r.header("content-length"), Some("10"));
        assert!(r.header("transfer-encoding").is_none());
    }

    let check = |side: &'static str| {
        let (c, gw_url) = (c.clone(), gw.url(""));
        async move {
            for kind in KINDS {
                let started = Instant::now();
                let r = c.get(&format!("{gw_url}/{side}/{kind}")).await;
                let took = started.elapsed();
                assert_eq!(r.status, 500, "{side}/{kind}: {}", r.text());
                assert_eq!(
                    r.text(),
                    r#"{"message":"Internal Server Error"}"#,
                    "{side}/{kind}"
                );
                assert!(r.headers.get("x-injected").is_none());
                assert!(r.headers.len() < 20, "{side}/{kind}");
                // Generous on a shared 2-core machine; the deadline is 100 ms.
                assert!(took < Duration::from_secs(2), "{side}/{kind} took {took:?}");
            }
        }
    };
    check("in").await;
    check("out").await;
    assert_eq!(good.await.unwrap(), 100);
    // The request side never reached the upstream.
    assert!(up.seen().iter().all(|s| !s.uri.starts_with("/in/")));

    // An optional mapper is passed over: the request and response go on unmapped.
    for kind in KINDS {
        let r = c.get(&gw.url(&format!("/optional/{kind}"))).await;
        assert_eq!(r.status, 200, "optional/{kind}: {}", r.text());
        assert_eq!(r.json()["path"], format!("/optional/{kind}"));
    }
    let metrics = c.get(&gw.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains(r#"weir_plugin_failed_open_total{plugin="optional"} 16"#),
        "{metrics}"
    );
    for line in [
        "plugin `hostile` returned an invalid value for header `x-a`",
        "header list (20000 headers",
        "status code 600",
    ] {
        gw.wait_for_logs(line, 1).await;
    }

    // Many more rounds: memory settles where it was after the first one.
    let pid = gw.pid();
    let baseline = rss_kib(pid);
    for _ in 0..10 {
        check("in").await;
        check("out").await;
    }
    let after = rss_kib(pid);
    assert!(
        after < baseline + 64 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
    assert_eq!(c.get(&gw.admin_url("/health")).await.status, 200);
}
