//! `type = "function"`: a `wasi:http/proxy` component answers in process, in a fresh
//! instance per request, within the route's timeout; it reaches only the origins its
//! plugin's `allow_outbound` lists.

use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::artifacts::HELLO_FUNCTION;
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_HELLO_FUNCTION: bool = true;

fn config(up: &Upstream, allow: &str) -> String {
    format!(
        r#"
[limits]
max_response_body = "1MiB"
[plugins.hello]
file = {file}
world = "function"
{allow}
[[routes]]
key = "ANY /fn/{{proxy+}}"
integration = {{ type = "function", plugin = "hello" }}
timeout = "1s"
[[routes]]
key = "GET /up/{{proxy+}}"
integration = {{ type = "http", url = "{base}" }}
"#,
        file = toml_path(HELLO_FUNCTION),
        base = up.base(),
    )
}

#[tokio::test]
async fn a_component_answers_requests_in_process() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up, ""));
    let c = Client::default();
    let r = c
        .send(
            "POST",
            &gw.url("/fn/hello?a=1"),
            &[("x-in", "1")],
            Bytes::from_static(b"12345"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "hello from a function: Method::Post /fn/hello query=a=1 body=5"
    );
    assert_eq!(r.header("x-function"), Some("hello"));
    assert!(r.header("x-request-id").is_some());
    gw.wait_for_logs("hello-function served /fn/hello", 1).await;

    // A trap, no answer at all, an answer over max_response_body: 502, and the next
    // request is served by a fresh instance as if nothing happened.
    for path in ["/fn/trap", "/fn/silent", "/fn/big"] {
        let r = c.get(&gw.url(path)).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(
            c.get(&gw.url("/fn/hello")).await.status,
            200,
            "after {path}"
        );
    }
    // Past the route's timeout (a sleep in a host call): 504, in time.
    let started = Instant::now();
    let r = c.get(&gw.url("/fn/sleep")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn outbound_requests_reach_only_the_allowed_origins() {
    let up = Upstream::start().await;
    let target = format!("{}/from-function", up.base());
    let c = Client::default();

    // No allow_outbound: the component's request is denied; nothing reaches the upstream.
    let closed = weir(&config(&up, ""));
    let r = c.get(&closed.url(&format!("/fn/fetch?{target}"))).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-fetch-error"), Some("yes"));
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    assert!(up.seen().is_empty());

    // Listed: it goes out through the gateway's client and comes back.
    let open = weir(&config(
        &up,
        &format!("allow_outbound = [\"{}\"]", up.base()),
    ));
    let r = c.get(&open.url(&format!("/fn/fetch?{target}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fetched-status"), Some("200"));
    assert!(r.text().contains("/from-function"), "{}", r.text());
    assert_eq!(up.seen().len(), 1);
    // An answer its origin lets be kept is fetched once for every call that asks.
    let cacheable = format!("{}/cacheable", up.base());
    for _ in 0..3 {
        let r = c.get(&open.url(&format!("/fn/fetch?{cacheable}"))).await;
        assert_eq!(r.header("x-fetched-status"), Some("200"));
        assert!(r.text().contains("/cacheable"), "{}", r.text());
    }
    assert_eq!(
        up.seen().len(),
        2,
        "the second and third came from the cache"
    );
    // Another port on the same host is another origin.
    let other = format!("http://127.0.0.1:{}/x", weir_tests::closed_port());
    let r = c.get(&open.url(&format!("/fn/fetch?{other}"))).await;
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
}

/// What went wrong outside reaches the component as the `wasi:http` error it is:
/// nothing listening, a certificate the gateway does not trust.
#[tokio::test]
async fn outbound_failures_arrive_as_their_error_codes() {
    let up = Upstream::start().await;
    let untrusted = Upstream::start_tls(&weir_tests::TestCa::new()).await;
    let closed = format!("http://127.0.0.1:{}", weir_tests::closed_port());
    let gw = weir(&config(
        &up,
        &format!("allow_outbound = [\"{closed}\", \"{}\"]", untrusted.base()),
    ));
    let c = Client::default();
    for (url, code) in [
        (format!("{closed}/x"), "ConnectionRefused"),
        (format!("{}/x", untrusted.base()), "TlsCertificateError"),
    ] {
        let r = c.get(&gw.url(&format!("/fn/fetch?{url}"))).await;
        assert_eq!(r.header("x-fetch-error"), Some("yes"), "{url}");
        assert!(r.text().contains(code), "{url}: {}", r.text());
    }
    assert!(untrusted.seen().is_empty());
}

#[test]
fn outbound_settings_are_checked() {
    let dir = weir_tests::test_dir();
    let path = dir.join("weir.toml");
    for (extra, world, want) in [
        (
            "allow_outbound = [\"ftp://x\"]",
            "function",
            "plugins.p.allow_outbound: `ftp://x`",
        ),
        (
            "allow_outbound = [\"http://127.0.0.1:9\"]",
            "mapper",
            "only `function` and `authorizer` plugins make outbound requests",
        ),
    ] {
        std::fs::write(
            &path,
            format!(
                "[plugins.p]\nfile = {}\nworld = \"{world}\"\n{extra}\n",
                toml_path(HELLO_FUNCTION)
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "{stderr}");
    }
}

/// The components of `examples/function/` (Rust, and Python by componentize-py) answer
/// as their README says.
#[tokio::test]
async fn the_example_functions_serve() {
    use weir_tests::artifacts::EXAMPLE_FUNCTIONS;
    assert!(!EXAMPLE_FUNCTIONS.is_empty());
    let c = Client::default();
    for (lang, file) in EXAMPLE_FUNCTIONS {
        let prefix = if *lang == "rust" { "rs" } else { "py" };
        let gw = weir(&format!(
            r#"
[plugins.hello]
file = {file}
world = "function"
[[routes]]
key = "ANY /{prefix}/{{proxy+}}"
integration = {{ type = "function", plugin = "hello" }}
timeout = "5s"
"#,
            file = toml_path(file),
        ));
        let r = c.get(&gw.url(&format!("/{prefix}/hello?name=ann"))).await;
        assert_eq!(r.status, 200, "{lang}: {}", r.text());
        let json: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(json["message"], "hello, ann", "{lang}");
        assert_eq!(json["language"], *lang);
        assert_eq!(json["forwardedFor"], "127.0.0.1", "{lang}");
        assert_eq!(
            json["requestId"].as_str(),
            r.header("x-request-id"),
            "{lang}"
        );
        let r = c
            .send(
                "POST",
                &gw.url(&format!("/{prefix}/words")),
                &[],
                Bytes::from_static(b"one two  three\n"),
            )
            .await;
        let json: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(r.status, 200, "{lang}");
        assert_eq!(json["words"], 3, "{lang}");
        let r = c.get(&gw.url(&format!("/{prefix}/nope"))).await;
        assert_eq!(r.status, 404, "{lang}");
    }
}

/// Calls in a row — one in 100 trapping — leave no descriptor or memory behind. The
/// count is `WEIR_FUNCTION_CALLS` (default 2000; `bench/serverless.py` runs far more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_leak_nothing() {
    use weir_tests::lambda::footprint;
    let total: usize = std::env::var("WEIR_FUNCTION_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let up = Upstream::start().await;
    let gw = weir(&config(&up, ""));
    let c = Client::default();
    let run = async |n: usize| {
        let per = n / 4;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (c, hello, trap) = (c.clone(), gw.url("/fn/hello"), gw.url("/fn/trap"));
                tokio::spawn(async move {
                    for j in 0..per {
                        let trapping = i == 0 && j % 100 == 0;
                        let r = c.get(if trapping { &trap } else { &hello }).await;
                        assert_eq!(r.status, if trapping { 502 } else { 200 });
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    };
    run(total / 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds_before, rss_before) = footprint(gw.pid());
    run(total).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds_after, rss_after) = footprint(gw.pid());
    eprintln!(
        "{total} calls: fds {fds_before} -> {fds_after}, rss {rss_before} -> {rss_after} KiB"
    );
    assert!(fds_after <= fds_before + 4, "{fds_before} -> {fds_after}");
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
}
