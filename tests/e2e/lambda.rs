//! `type = "lambda"`: functions run by the real `awslambdaric` (PyPI) against the
//! Lambda Runtime API the gateway serves — both payload formats, errors, crashes,
//! timeouts, the queue, functions that cannot start, reloads, shutdown and leaks.

use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::lambda::{PythonRuntime, alive, descendants, footprint, python_runtime};
use weir_tests::{Client, Weir};

const TOKEN: &str = "test-admin-token-0123456789";

fn runtime() -> &'static PythonRuntime {
    python_runtime(env!("CARGO_BIN_EXE_weir"))
}

/// Starts weir with the admin listener (token [`TOKEN`]) and `config`.
pub(crate) fn start(config: &str) -> Weir {
    crate::weir(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n[reload]\nwatch = false\n{config}"
    ))
}

/// A route to `function` (payload format `format`).
pub(crate) fn route(key: &str, function: &str, format: &str) -> String {
    format!(
        "[[routes]]\nkey = \"{key}\"\nintegration = {{ type = \"lambda\", function = \"{function}\", payload_format = \"{format}\" }}\n"
    )
}

pub(crate) async fn metric(c: &Client, gw: &Weir, needle: &str) -> f64 {
    let text = c.get(&gw.admin_url("/metrics")).await.text();
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn wait_ready(c: &Client, gw: &Weir) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(&gw.admin_url("/ready")).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answers of the payload-format tests' `hello` (a string), `plain` (an object),
/// `cookies` (a full response with cookies) and `binary` (base64 both ways) functions,
/// as AWS reads them, whatever the runtime.
pub(crate) async fn check_answers(c: &Client, gw: &Weir) {
    let r = c.send("POST", &gw.url("/hello"), &[], "").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = c.send("POST", &gw.url("/plain"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["message"], "hi");
    let r = c.send("POST", &gw.url("/cookies"), &[], "").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-a"), Some("1"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    assert_eq!(r.text(), "made");
    // Binary both ways.
    let body: Vec<u8> = (0..=255u8).collect();
    let r = c.send("POST", &gw.url("/binary"), &[], body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let mut reversed = body;
    reversed.reverse();
    assert_eq!(r.body, Bytes::from(reversed));
}

/// `GET /slow?s=5` to a function with a 1 s timeout (its handler sleeps `s` seconds):
/// `504` within the timeout, the process killed and said so; the next call is served.
pub(crate) async fn check_timeout_kills_and_recovers(c: &Client, gw: &Weir) {
    wait_ready(c, gw).await;
    let started = Instant::now();
    let r = c.get(&gw.url("/slow?s=5")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let r = c.get(&gw.url("/slow?s=0")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["slept"], "0");
    let logs = gw.logs();
    assert!(
        logs.contains("invocation timed out; process killed"),
        "{logs}"
    );
}

/// Sends the 2.0 and 1.0 requests of the payload-format tests to `gw` (routes
/// `ANY /v2/{proxy+}` and `ANY /v1/{id}` to a function `app` with `TABLE = "orders"`
/// whose handler answers the event and what it saw of its context) and checks both
/// field for field, whatever the runtime; returns what the 2.0 call saw.
pub(crate) async fn check_echoed_events(c: &Client, gw: &Weir) -> serde_json::Value {
    // 2.0, field for field.
    let r = c
        .send(
            "POST",
            &gw.url("/v2/a/b?x=1&x=2&y=%20z"),
            &[
                ("cookie", "s=1; t=2"),
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("user-agent", "weir-test"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ],
            "{\"order\":7}",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    let e = &seen["event"];
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "ANY /v2/{proxy+}");
    assert_eq!(e["rawPath"], "/v2/a/b");
    assert_eq!(e["rawQueryString"], "x=1&x=2&y=%20z");
    assert_eq!(e["cookies"], serde_json::json!(["s=1", "t=2"]));
    assert_eq!(e["headers"]["x-multi"], "a,b");
    assert_eq!(e["queryStringParameters"]["x"], "1,2");
    assert_eq!(e["queryStringParameters"]["y"], " z");
    assert_eq!(e["pathParameters"]["proxy"], "a/b");
    assert_eq!(e["body"], "{\"order\":7}");
    assert_eq!(e["isBase64Encoded"], false);
    let ctx = &e["requestContext"];
    assert_eq!(ctx["http"]["method"], "POST");
    assert_eq!(ctx["http"]["path"], "/v2/a/b");
    assert_eq!(ctx["http"]["protocol"], "HTTP/1.1");
    assert_eq!(ctx["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["http"]["userAgent"], "weir-test");
    assert_eq!(ctx["stage"], "$default");
    assert_eq!(ctx["requestId"], r.header("x-request-id").unwrap());
    assert!(ctx["timeEpoch"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(ctx["domainName"], gw.addr.to_string());
    // The context the runtime client made from the Runtime API's headers.
    assert_eq!(seen["function"], "app");
    assert_eq!(
        seen["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:app"
    );
    assert_eq!(seen["request_id"].as_str().unwrap().len(), 36);
    let remaining = seen["remaining_ms"].as_u64().unwrap();
    assert!((1000..=7000).contains(&remaining), "{remaining}");
    assert!(
        seen["trace"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent="),
        "{seen}"
    );
    let env = &seen["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "app");
    assert_eq!(env["TABLE"], "orders");
    assert!(env.get("WEIR_ADMIN_TOKEN").is_none());

    // 1.0.
    let r = c
        .send(
            "GET",
            &gw.url("/v1/7?a=1&a=2"),
            &[("x-multi", "a"), ("x-multi", "b")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = &r.json()["event"];
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["resource"], "/v1/{id}");
    assert_eq!(e["httpMethod"], "GET");
    assert_eq!(
        e["multiValueHeaders"]["x-multi"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(e["queryStringParameters"]["a"], "2");
    assert_eq!(
        e["multiValueQueryStringParameters"]["a"],
        serde_json::json!(["1", "2"])
    );
    assert_eq!(e["pathParameters"]["id"], "7");
    assert_eq!(e["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(e["body"], serde_json::Value::Null);

    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_formats_answers_and_binary_bodies() {
    let rt = runtime();
    let mut config = rt.function(
        "app",
        "app.echo",
        "TABLE = \"orders\"",
        "concurrency = 2\nmin_warm = 1\ntimeout = \"7s\"",
    );
    for (name, handler) in [
        ("hello", "app.hello"),
        ("plain", "app.plain"),
        ("cookies", "app.cookies"),
        ("binary", "app.binary"),
        ("shout", "app.shout"),
    ] {
        config.push_str(&rt.function(name, handler, "", ""));
    }
    config.push_str(&route("ANY /v2/{proxy+}", "app", "2.0"));
    config.push_str(&route("ANY /v1/{id}", "app", "1.0"));
    for name in ["hello", "plain", "cookies", "binary", "shout"] {
        config.push_str(&route(&format!("POST /{name}"), name, "2.0"));
    }
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;

    let seen = check_echoed_events(&c, &gw).await;
    assert!(
        seen["env"]["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // Answers as AWS reads them.
    check_answers(&c, &gw).await;

    // Output goes to the log, escaped and bounded.
    let r = c.send("POST", &gw.url("/shout"), &[], "").await;
    assert_eq!(r.text(), "printed");
    let logs = gw.wait_for_logs("after the long line", 1).await;
    let line = logs
        .lines()
        .find(|l| l.contains("from the handler"))
        .expect("the handler's line");
    assert!(
        line.contains("weir::function") && line.contains("shout"),
        "{line}"
    );
    assert!(line.contains("\\u{1b}[31mred"), "{line}");
    let long = logs.lines().find(|l| l.contains("xxxxxxxx")).unwrap();
    assert!(
        long.len() < 9000 && long.contains("[line cut]"),
        "{}",
        long.len()
    );

    // Metrics.
    assert!(
        metric(
            &c,
            &gw,
            "weir_function_invocations_total{function=\"app\",outcome=\"ok\"}"
        )
        .await
            >= 2.0
    );
    assert!(metric(&c, &gw, "weir_function_cold_starts_total{function=\"app\"}").await >= 1.0);
    assert!(
        metric(
            &c,
            &gw,
            "weir_function_duration_seconds_count{function=\"app\"}"
        )
        .await
            >= 2.0
    );
    let text = c.get(&gw.admin_url("/metrics")).await.text();
    assert!(
        text.contains("weir_function_processes{function=\"app\",state=\"idle\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_crashes_and_timeouts() {
    let rt = runtime();
    let mut config = String::new();
    config.push_str(&rt.function("fail", "app.fail", "", ""));
    config.push_str(&rt.function("crash", "app.crash", "", ""));
    config.push_str(&rt.function("slow", "app.slow", "", "timeout = \"1s\"\nmin_warm = 1"));
    config.push_str(&rt.function("malformed", "app.malformed", "", ""));
    for name in ["fail", "crash", "malformed"] {
        config.push_str(&route(&format!("GET /{name}"), name, "2.0"));
    }
    config.push_str(&route("GET /slow", "slow", "2.0"));
    let gw = start(&config);
    let c = Client::default();
    let internal = serde_json::json!({"message": "Internal Server Error"});

    let r = c.get(&gw.url("/fail")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), internal);
    gw.wait_for_logs("ValueError: boom", 1).await;

    let r = c.get(&gw.url("/malformed")).await;
    assert_eq!((r.status.as_u16(), r.json()), (502, internal.clone()));

    // A crash fails its invocation; the next one gets a new process.
    for _ in 0..2 {
        let r = c.get(&gw.url("/crash")).await;
        assert_eq!((r.status.as_u16(), r.json()), (502, internal.clone()));
    }

    // Past the function's timeout: 504, the process is killed, the next call works.
    check_timeout_kills_and_recovers(&c, &gw).await;

    let c2 = c.clone();
    let metrics = c2.get(&gw.admin_url("/metrics")).await.text();
    for outcome in ["error", "crash", "timeout", "malformed", "ok"] {
        assert!(
            metrics.contains(&format!("outcome=\"{outcome}\"")),
            "{outcome}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429() {
    let rt = runtime();
    let mut config = rt.function(
        "slow",
        "app.slow",
        "",
        "concurrency = 1\nmin_warm = 1\nmax_queue = 1",
    );
    config.push_str(&route("GET /slow", "slow", "2.0"));
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;
    let url = gw.url("/slow?s=1.5");
    let running = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { c.get(&url).await.status.as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { c.get(&url).await.status.as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.get(&url).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Too Many Requests"})
    );
    assert_eq!(running.await.unwrap(), 200);
    assert_eq!(queued.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_cannot_start_is_502_at_once() {
    let rt = runtime();
    let mut config = rt.function("broken", "broken.handler", "", "min_warm = 1");
    config.push_str("[functions.missing]\ncommand = [\"/nonexistent/bootstrap\"]\n");
    config.push_str(&route("GET /broken", "broken", "2.0"));
    config.push_str(&route("GET /missing", "missing", "1.0"));
    let gw = start(&config);
    let c = Client::default();
    for path in ["/broken", "/missing", "/broken", "/missing"] {
        let started = Instant::now();
        let r = c.get(&gw.url(path)).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "Internal Server Error"})
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let logs = gw.wait_for_logs("function cannot start", 2).await;
    assert!(
        logs.lines().any(|l| l.contains("function cannot start")
            && l.contains("broken")
            && l.contains("this function cannot initialize")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("function cannot start") && l.contains("missing")),
        "{logs}"
    );
    // min_warm = 1 that never comes up: not ready, and the reply says which.
    let r = c.get(&gw.admin_url("/ready")).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["functions_starting"],
        serde_json::json!(["broken"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_keeps_functions() {
    let rt = runtime();
    let kept = rt.function("kept", "app.plain", "", "min_warm = 1");
    let gone = rt.function("gone", "app.plain", "", "min_warm = 1");
    let config = format!(
        "{kept}{gone}{}{}",
        route("GET /kept", "kept", "2.0"),
        route("GET /gone", "gone", "2.0")
    );
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;
    let kept_pid = c.get(&gw.url("/kept")).await.json()["pid"].clone();
    let gone_pid = c.get(&gw.url("/gone")).await.json()["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(alive(gone_pid));

    let added = rt.function("added", "app.hello", "", "");
    let text = std::fs::read_to_string(gw.dir.join("weir.toml")).unwrap();
    let text = text.replace(&gone, &added).replace(
        &route("GET /gone", "gone", "2.0"),
        &route("GET /added", "added", "2.0"),
    );
    std::fs::write(gw.dir.join("weir.toml"), text).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let r = c
        .send(
            "POST",
            &gw.admin_url("/admin/reload"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    assert_eq!(c.get(&gw.url("/added")).await.text(), "hello");
    assert_eq!(c.get(&gw.url("/gone")).await.status, 404);
    // The unchanged function kept its process.
    assert_eq!(c.get(&gw.url("/kept")).await.json()["pid"], kept_pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(gone_pid) {
        assert!(
            Instant::now() < deadline,
            "the removed function's process lives on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_mode_sends_the_mappers_body_and_maps_the_answer() {
    let rt = runtime();
    let mut config = rt.function("raw", "app.raw", "", "");
    config.push_str(&format!(
        "[plugins.echo]\nfile = {:?}\nworld = \"mapper\"\n",
        weir_tests::artifacts::ECHO_MAPPER
    ));
    config.push_str(&route("POST /mapped", "raw", "2.0"));
    config.push_str("request_mapping = \"echo\"\nresponse_mapping = \"echo\"\n");
    let gw = start(&config);
    let c = Client::default();
    let r = c
        .send(
            "POST",
            &gw.url("/mapped"),
            &[],
            r#"{"statusCode": 404, "order": 7}"#,
        )
        .await;
    // The event is the body; the answer reaches the mapper as a 200 JSON body.
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"statusCode": 404, "order": 7}));
    assert_eq!(r.header("x-mapped-response"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_process() {
    let rt = runtime();
    let mut config = rt.function("warm", "app.slow", "", "concurrency = 3\nmin_warm = 2");
    config.push_str(&route("GET /slow", "warm", "2.0"));
    let mut gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;
    // One busy, one idle.
    let busy = tokio::spawn({
        let (c, url) = (c.clone(), gw.url("/slow?s=1"));
        async move { c.get(&url).await.status.as_u16() }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut children = descendants(gw.pid());
    while children.len() < 2 {
        assert!(Instant::now() < deadline, "{children:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        children = descendants(gw.pid());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = gw.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        gw.logs()
    );
    assert_eq!(busy.await.unwrap(), 200, "the running invocation drained");
    let left: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Processes above `min_warm` that waited `idle_timeout` for work are stopped, the warm
/// one stays; and a gateway killed outright (`SIGKILL`, no cleanup of its own) takes
/// its function processes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_processes_scale_down_and_die_with_the_gateway() {
    let rt = runtime();
    let mut config = rt.function(
        "burst",
        "app.slow",
        "",
        "concurrency = 3\nmin_warm = 1\nidle_timeout = \"1s\"",
    );
    config.push_str(&route("GET /slow", "burst", "2.0"));
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;
    let processes = "weir_function_processes{function=\"burst\"";
    // Three at once: three processes.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (c, url) = (c.clone(), gw.url("/slow?s=0.7"));
            tokio::spawn(async move { c.get(&url).await })
        })
        .collect();
    for call in calls {
        let r = call.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(metric(&c, &gw, processes).await, 3.0);
    // A second without work: back to the one warm process.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&c, &gw, processes).await > 1.0 {
        assert!(Instant::now() < deadline, "{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = descendants(gw.pid());
    assert_eq!(left.len(), 1, "{left:?}");
    // The warm one still serves.
    assert_eq!(c.get(&gw.url("/slow?s=0")).await.status, 200);

    drop(gw);
    let deadline = Instant::now() + Duration::from_secs(5);
    while left.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "orphaned: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Invocations in a row leave no process, descriptor or memory behind. The count is
/// `WEIR_LAMBDA_INVOCATIONS` (default 2000; 10,000 were checked by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_invocations_leak_nothing() {
    let total: usize = std::env::var("WEIR_LAMBDA_INVOCATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let rt = runtime();
    let mut config = rt.function("hello", "app.hello", "", "concurrency = 2\nmin_warm = 2");
    config.push_str(&rt.function("crash", "app.crash", "", "concurrency = 1"));
    config.push_str(&route("GET /hello", "hello", "2.0"));
    config.push_str(&route("GET /crash", "crash", "2.0"));
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;
    let run = async |n: usize| {
        let per = n / 4;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (c, hello, crash) = (c.clone(), gw.url("/hello"), gw.url("/crash"));
                tokio::spawn(async move {
                    for j in 0..per {
                        // One in 100 crashes its process (a restart each).
                        let crashing = i == 0 && j % 100 == 0;
                        let url = if crashing { &crash } else { &hello };
                        let r = c.get(url).await;
                        assert_eq!(r.status, if crashing { 502 } else { 200 });
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    };
    run(total / 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_before, rss_before) = footprint(gw.pid());
    let procs_before = descendants(gw.pid()).len();
    run(total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_after, rss_after) = footprint(gw.pid());
    let procs_after = descendants(gw.pid()).len();
    eprintln!(
        "{total} invocations: fds {fds_before} -> {fds_after}, rss {rss_before} -> {rss_after} KiB, processes {procs_before} -> {procs_after}"
    );
    assert!(fds_after <= fds_before + 4, "{fds_before} -> {fds_after}");
    assert!(
        procs_after <= procs_before,
        "{procs_before} -> {procs_after}"
    );
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
}
