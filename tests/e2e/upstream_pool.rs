//! `[upstreams.NAME]` pools against real backends on loopback: weights, hash affinity,
//! health checks and passive ejection, retries (and where they are refused), a target
//! killed and restarted under load, streamed answers and h2c targets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use weir_tests::backend::Backend;
use weir_tests::{Client, closed_port};

use crate::weir;

/// Sends `n` GETs to `url`, `concurrency` at a time, and counts answers by
/// `x-backend` (or by status, for answers without it).
async fn spread(url: &str, n: usize, concurrency: usize) -> BTreeMap<String, usize> {
    let client = Client::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let r = client.get(&url).await;
                let who = match r.header("x-backend") {
                    Some(b) if r.status == 200 => b.to_owned(),
                    _ => format!("status {}", r.status.as_u16()),
                };
                *seen.entry(who).or_insert(0) += 1;
            }
            seen
        }));
    }
    let mut total = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    total
}

fn pool_config(pool: &str, route: &str) -> String {
    format!(
        r#"
[upstreams.pets]
{pool}

[[routes]]
key = "ANY /pets/{{proxy+}}"
integration = {{ type = "http", upstream = "pets", path = "/{{proxy+}}" }}
{route}
"#
    )
}

#[tokio::test]
async fn weights_hold_over_ten_thousand_requests() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    // Round robin is exact over every window; least request follows the loads it
    // sees, which the weights set only on average.
    for (balance, tolerance) in [("round_robin", 0.005), ("least_request", 0.04)] {
        let gw = weir(&pool_config(
            &format!(
                r#"balance = "{balance}"
targets = [{{ url = "{}", weight = 5 }}, {{ url = "{}", weight = 3 }}, {{ url = "{}", weight = 2 }}]"#,
                a.base(),
                b.base(),
                c.base()
            ),
            "",
        ));
        let n = 10_000;
        let seen = spread(&gw.url("/pets/x"), n, 8).await;
        for (name, weight) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
            let share = seen.get(name).copied().unwrap_or(0) as f64 / n as f64;
            assert!(
                (share - weight).abs() < tolerance,
                "{balance}: {name} got {share:.3} of requests, weight says {weight}: {seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn hash_keeps_each_user_on_one_target() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let gw = weir(&pool_config(
        &format!(
            r#"balance = "hash:$request.header.x-user"
targets = [{{ url = "{}" }}, {{ url = "{}" }}, {{ url = "{}" }}]"#,
            a.base(),
            b.base(),
            c.base()
        ),
        "",
    ));
    let client = Client::default();
    let mut used = BTreeMap::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let mut backends = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let r = client
                .send(
                    "GET",
                    &gw.url("/pets/x"),
                    &[("x-user", &user)],
                    Bytes::new(),
                )
                .await;
            backends.insert(r.header("x-backend").unwrap().to_owned());
        }
        assert_eq!(backends.len(), 1, "{user} went to {backends:?}");
        *used.entry(backends.pop_first().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(used.len(), 3, "30 users over 3 targets: {used:?}");
}

#[tokio::test]
async fn an_unhealthy_target_is_left_out_and_comes_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = weir(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pool_config(
            &format!(
                r#"targets = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "100ms", timeout = "50ms", unhealthy = 2, healthy = 2 }}"#,
                a.base(),
                b.base()
            ),
            "",
        )
    ));
    let client = Client::default();
    let seen = spread(&gw.url("/pets/x"), 40, 2).await;
    assert_eq!((seen["a"], seen["b"]), (20, 20));

    b.set_health(500);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = client.get(&gw.admin_url("/metrics")).await.text();
    let healthy_b = format!(
        "weir_upstream_healthy{{upstream=\"pets\",target=\"{}\"}} 0",
        b.base()
    );
    assert!(metrics.contains(&healthy_b), "{metrics}");
    let before = b.hits();
    let seen = spread(&gw.url("/pets/x"), 40, 2).await;
    assert_eq!(seen.get("a"), Some(&40), "{seen:?}");
    assert_eq!(b.hits(), before, "no request reaches an unhealthy target");

    b.set_health(200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = spread(&gw.url("/pets/x"), 40, 2).await;
    assert_eq!(
        seen.get("b"),
        Some(&20),
        "back after two good checks: {seen:?}"
    );
    let metrics = client.get(&gw.admin_url("/metrics")).await.text();
    for needle in [
        format!(
            "weir_upstream_requests_total{{upstream=\"pets\",target=\"{}\"}}",
            a.base()
        ),
        format!(
            "weir_upstream_healthy{{upstream=\"pets\",target=\"{}\"}} 1",
            b.base()
        ),
    ] {
        assert!(metrics.contains(&needle), "{needle} in {metrics}");
    }
}

#[tokio::test]
async fn every_target_unavailable_is_503() {
    let gw = weir(&pool_config(
        &format!(
            r#"targets = [{{ url = "http://127.0.0.1:{}" }}]
health = {{ path = "/health", interval = "100ms", timeout = "50ms", unhealthy = 1 }}"#,
            closed_port()
        ),
        "",
    ));
    let client = Client::default();
    // The first check runs at start; until it fails, the connect does (502).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client.get(&gw.url("/pets/x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["message"], "Service Unavailable");
}

#[tokio::test]
async fn passive_ejection_takes_a_failing_target_out() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.set_status(502);
    let gw = weir(&pool_config(
        &format!(
            r#"targets = [{{ url = "{}" }}, {{ url = "{}" }}]
passive = {{ consecutive_failures = 3, eject = "1s" }}
retries = {{ attempts = 0 }}"#,
            a.base(),
            b.base()
        ),
        "",
    ));
    let seen = spread(&gw.url("/pets/x"), 50, 1).await;
    assert_eq!(
        seen.get("status 502"),
        Some(&3),
        "three failures, then out: {seen:?}"
    );
    assert_eq!(b.hits(), 3);
    assert_eq!(seen.get("a"), Some(&47));
    // Back after `eject`.
    b.set_status(200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let seen = spread(&gw.url("/pets/x"), 20, 1).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
}

#[tokio::test]
async fn retries_go_to_another_target_for_idempotent_requests_only() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(503);
    let target = format!(
        r#"targets = [{{ url = "{}" }}, {{ url = "{}" }}]
passive = {{ consecutive_failures = 0 }}
retries = {{ budget = "100%" }}"#,
        a.base(),
        b.base()
    );
    let gw = weir(&format!(
        "{}\n[[routes]]\nkey = \"POST /any/{{proxy+}}\"\nintegration = {{ type = \"http\", upstream = \"pets\", path = \"/{{proxy+}}\", retry_any_method = true }}\n",
        pool_config(&target, "")
    ));
    let client = Client::default();
    for _ in 0..10 {
        let r = client.get(&gw.url("/pets/x")).await;
        assert_eq!((r.status.as_u16(), r.header("x-backend")), (200, Some("b")));
    }
    let retried = a.hits();
    assert!(retried >= 4, "half the first attempts went to a: {retried}");

    let mut refused = 0;
    for _ in 0..10 {
        let r = client.send("POST", &gw.url("/pets/x"), &[], "order").await;
        match r.status.as_u16() {
            503 => refused += 1,
            200 => assert_eq!(r.header("x-backend"), Some("b")),
            s => panic!("status {s}"),
        }
    }
    assert!(
        refused >= 4,
        "a POST answered 503 is not sent again: {refused}"
    );
    assert_eq!(
        a.hits() - retried,
        refused,
        "each 503 came from one attempt on a"
    );

    for _ in 0..10 {
        let r = client.send("POST", &gw.url("/any/x"), &[], "order").await;
        assert_eq!(r.status, 200, "retry_any_method retries POST");
    }
}

#[tokio::test]
async fn a_target_killed_and_restarted_under_load_costs_no_request() {
    let (a, mut b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let gw = weir(&pool_config(
        &format!(
            r#"targets = [{{ url = "{}" }}, {{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "100ms", timeout = "50ms", unhealthy = 2, healthy = 1 }}
passive = {{ consecutive_failures = 3, eject = "300ms" }}"#,
            a.base(),
            b.base(),
            c.base()
        ),
        "",
    ));
    let url = gw.url("/pets/x");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (k, v) in spread(&url, 40, 4).await {
                    *seen.entry(k).or_insert(0) += v;
                }
                rounds += 1;
            }
            (seen, rounds)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.stop().await;
    let down_at = b.hits();
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.restart().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, rounds) = load.await.unwrap();
    let failed: usize = seen
        .iter()
        .filter(|(k, _)| k.starts_with("status"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failed, 0, "{seen:?}");
    assert!(rounds > 10, "the load ran throughout: {rounds} rounds");
    assert!(
        b.hits() > down_at,
        "b serves again after its restart: {seen:?}"
    );
    let _ = (a, c);
}

#[tokio::test]
async fn streamed_events_arrive_before_the_upstream_finishes() {
    let up = Backend::start("sse").await;
    let gw = weir(&format!(
        r#"
[upstreams.sse]
targets = [{{ url = "{base}" }}]

[[routes]]
key = "GET /stream"
integration = {{ type = "http", upstream = "sse", path = "/events" }}
stream = true

[[routes]]
key = "GET /buffered"
integration = {{ type = "http", url = "{base}/events" }}

[[routes]]
key = "GET /limited"
integration = {{ type = "http", url = "{base}/bytes" }}
stream = true

[limits]
max_response_body = "1MiB"
"#,
        base = up.base()
    ));
    // Five events 200 ms apart: the upstream finishes after 800 ms.
    for (path, streamed) in [
        ("/stream?n=5&gap=200", true),
        ("/buffered?n=5&gap=200", false),
    ] {
        let started = Instant::now();
        let resp = raw_get(&gw.url(path)).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut events = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                events.push((started.elapsed(), data));
            }
        }
        let text: Vec<u8> = events.iter().flat_map(|(_, d)| d.to_vec()).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
        );
        let first = events[0].0;
        let last = events.last().unwrap().0;
        if streamed {
            assert!(events.len() >= 5, "one frame per event: {events:?}");
            assert!(
                first + Duration::from_millis(600) < last,
                "the first event came at {first:?}, the last at {last:?}"
            );
        } else {
            assert!(first >= Duration::from_millis(750), "buffered: {first:?}");
        }
    }
    // Past max_response_body the streamed answer is cut off, never passed whole.
    let resp = raw_get(&gw.url("/limited?n=4000000")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.into_body().collect().await.is_err(),
        "cut off at 1 MiB"
    );
    let resp = raw_get(&gw.url("/limited?n=100000")).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 100_000);
}

#[tokio::test]
async fn a_one_gib_download_streams_in_flat_memory() {
    let up = Backend::start("files").await;
    let gw = weir(&format!(
        r#"
[limits]
max_response_body = "2GiB"

[upstreams.files]
targets = [{{ url = "{base}" }}]

[[routes]]
key = "GET /download"
integration = {{ type = "http", url = "{base}/bytes" }}
stream = true

[[routes]]
key = "GET /pool"
integration = {{ type = "http", upstream = "files", path = "/bytes" }}
stream = true
"#,
        base = up.base()
    ));
    let peak = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // Warm up (the first requests grow the pools), then measure the peak around
    // downloads of 1 GiB, 32 times the growth allowed.
    for path in ["/download", "/pool"] {
        let _ = raw_get(&gw.url(&format!("{path}?n=1000000")))
            .await
            .into_body()
            .collect()
            .await;
    }
    let before = peak();
    let size: u64 = 1 << 30;
    for path in ["/download", "/pool"] {
        let mut body = raw_get(&gw.url(&format!("{path}?n={size}")))
            .await
            .into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received += data.len() as u64;
            }
        }
        assert_eq!(received, size, "{path}");
        let grown = peak().saturating_sub(before);
        assert!(
            grown < 32 << 20,
            "{path}: the gateway's peak memory grew by {} MiB",
            grown >> 20
        );
    }
}

#[tokio::test]
async fn h2c_targets_are_spoken_to_in_http2() {
    let (a, b) = (Backend::start_h2c("a").await, Backend::start_h2c("b").await);
    let gw = weir(&pool_config(
        &format!(
            r#"protocol = "h2c"
targets = [{{ url = "{}" }}, {{ url = "{}" }}]
health = {{ path = "/health", interval = "100ms", timeout = "50ms" }}"#,
            a.base(),
            b.base()
        ),
        "stream = true",
    ));
    let client = Client::default();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let r = client.get(&gw.url("/pets/dogs")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let echo = r.json();
        assert_eq!(echo["version"], "HTTP/2.0");
        assert_eq!(echo["path"], "/dogs");
        seen.insert(echo["backend"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn grpc_passes_through_with_its_trailers() {
    let up = Backend::start_h2c("grpc").await;
    let gw = weir(&pool_config(
        &format!(
            "protocol = \"h2c\"\ntargets = [{{ url = \"{}\" }}]",
            up.base()
        ),
        "",
    ));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    // One length-prefixed message, as a gRPC client frames it.
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    for (path, status) in [("/pets/grpc", "0"), ("/pets/grpc", "5")] {
        let req = http::Request::post(gw.url(path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-grpc-status", status)
            .body(http_body_util::Full::new(message.clone()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers are kept");
        assert_eq!(trailers["grpc-status"], status);
        assert_eq!(trailers["grpc-message"], "grpc");
        assert_eq!(collected.to_bytes(), message);
    }
    // Server streaming: three messages 200 ms apart arrive one by one, then the status.
    let req = http::Request::post(gw.url("/pets/grpc?n=3&gap=200"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(message.clone()))
        .unwrap();
    let started = Instant::now();
    let mut body = client.request(req).await.unwrap().into_body();
    let (mut messages, mut status) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        match frame.unwrap().into_data() {
            Ok(data) => messages.push((started.elapsed(), data)),
            Err(frame) => status = frame.into_trailers().ok(),
        }
    }
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].0 + Duration::from_millis(300) < messages[2].0,
        "{messages:?}"
    );
    assert_eq!(status.unwrap()["grpc-status"], "0");
    // The gateway's own refusal of a gRPC request is a gRPC status.
    let req = http::Request::post(gw.url("/nowhere"))
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(message.clone()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["grpc-status"],
        "12",
        "UNIMPLEMENTED for no route"
    );
}

#[tokio::test]
async fn a_reload_swaps_targets_without_dropping_requests_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = |target: &Backend| {
        format!(
            "[reload]\nwatch = false\n{}",
            pool_config(
                &format!("targets = [{{ url = \"{}\" }}]", target.base()),
                ""
            )
        )
    };
    let gw = weir(&config(&a));
    let slow = tokio::spawn({
        let url = gw.url("/pets/x?ms=1000");
        async move { Client::default().get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.edit_config_and_hup(&a.base(), &b.base());
    gw.wait_for_logs("config reloaded", 1).await;
    let client = Client::default();
    let r = client.get(&gw.url("/pets/x")).await;
    assert_eq!(
        r.header("x-backend"),
        Some("b"),
        "new requests go to the new target"
    );
    assert!(!slow.is_finished(), "the slow request is still in flight");
    let r = slow.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("x-backend")),
        (200, Some("a")),
        "the request in flight finishes on the old target"
    );
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn http2_over_tls_targets_negotiate_h2_and_carry_grpc() {
    let ca = weir_tests::TestCa::new();
    let up = Backend::start_h2_tls("tls", &ca).await;
    assert!(up.base().starts_with("https://"));
    let dir = weir_tests::test_dir();
    let ca_file = dir.join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let gw = weir(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream_ca_file = {}\n{}",
        crate::toml_path(ca_file.to_str().unwrap()),
        pool_config(
            &format!(
                "protocol = \"http2\"\ntargets = [{{ url = \"{}\" }}]",
                up.base()
            ),
            "",
        )
    ));
    let r = Client::default().get(&gw.url("/pets/cats")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/2.0");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let req = http::Request::post(gw.url("/pets/grpc"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-grpc-status", "7")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"\0\0\0\0\x01x",
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "7");
}

/// A GET whose body the caller reads frame by frame.
async fn raw_get(url: &str) -> http::Response<hyper::body::Incoming> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    client.get(url.parse().unwrap()).await.unwrap()
}
