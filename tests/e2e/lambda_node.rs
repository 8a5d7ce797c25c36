//! `type = "lambda"` with Node functions run by the real `aws-lambda-ric` (npm, pinned by
//! `tests/lambda-node/package-lock.json`): async and callback handlers, both payload
//! formats, binary bodies, errors, crashes, timeouts, and an Express app behind the
//! serverless-http adapter.

use bytes::Bytes;
use weir_tests::Client;
use weir_tests::lambda::{NodeRuntime, node_runtime};

use crate::lambda::{check_timeout_kills_and_recovers, metric, route, start, wait_ready};

fn runtime() -> &'static NodeRuntime {
    node_runtime(env!("CARGO_BIN_EXE_weir"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_payload_formats_answers_and_binary_bodies() {
    let rt = runtime();
    let mut config = rt.function(
        "app",
        "app.echo",
        "TABLE = \"orders\"",
        "concurrency = 2\nmin_warm = 1\ntimeout = \"7s\"",
    );
    let answers = ["hello", "plain", "cookies", "multi", "binary", "shout"];
    for name in answers {
        config.push_str(&rt.function(name, &format!("app.{name}"), "", ""));
    }
    config.push_str(&route("ANY /v2/{proxy+}", "app", "2.0"));
    config.push_str(&route("ANY /v1/{id}", "app", "1.0"));
    for name in answers {
        let format = if name == "multi" { "1.0" } else { "2.0" };
        config.push_str(&route(&format!("POST /{name}"), name, format));
    }
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;

    // Both payload formats as the Node handler receives them, and the context
    // aws-lambda-ric made from the Runtime API's headers: as under Python.
    crate::lambda::check_echoed_events(&c, &gw).await;

    // Answers as AWS reads them: a string from an async handler, an object through
    // the callback, a full response, 1.0's multiValueHeaders.
    crate::lambda::check_answers(&c, &gw).await;
    let r = c.send("POST", &gw.url("/multi"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let xb: Vec<_> = r.headers.get_all("x-b").iter().collect();
    assert_eq!(xb, ["1", "2"]);
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["c=3", "d=4"]);
    assert_eq!(r.text(), "multi");

    // console.log and console.error reach the log, tagged with the function.
    let r = c.send("POST", &gw.url("/shout"), &[], "").await;
    assert_eq!(r.text(), "printed");
    let logs = gw.wait_for_logs("after the node line", 1).await;
    let line = logs
        .lines()
        .find(|l| l.contains("from the node handler"))
        .expect("the handler's line");
    assert!(
        line.contains("weir::function") && line.contains("shout"),
        "{line}"
    );

    assert!(
        metric(
            &c,
            &gw,
            "weir_function_invocations_total{function=\"app\",outcome=\"ok\"}"
        )
        .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_errors_crashes_and_timeouts() {
    let rt = runtime();
    let failing = [
        "fail",
        "failCallback",
        "uncaught",
        "reject",
        "crash",
        "malformed",
    ];
    let mut config = String::new();
    for name in failing {
        config.push_str(&rt.function(name, &format!("app.{name}"), "", ""));
        config.push_str(&route(&format!("GET /{name}"), name, "2.0"));
        config.push_str(&route(&format!("GET /v1/{name}"), name, "1.0"));
    }
    config.push_str(&rt.function("slow", "app.slow", "", "timeout = \"1s\"\nmin_warm = 1"));
    config.push_str(&route("GET /slow", "slow", "2.0"));
    let gw = start(&config);
    let c = Client::default();
    let internal = serde_json::json!({"message": "Internal Server Error"});

    // A thrown exception, an error through the callback, an exception thrown from a
    // timer (the runtime reports it, then exits), a rejection with no Error, a malformed
    // answer, a process that exits: each a 502, twice (the second time in a new process
    // where the first one exited).
    for _ in 0..2 {
        for name in failing {
            let r = c.get(&gw.url(&format!("/{name}"))).await;
            assert_eq!(
                (r.status.as_u16(), r.json()),
                (502, internal.clone()),
                "{name}"
            );
        }
    }
    // The runtime logs what it reported.
    let logs = gw.wait_for_logs("boom", 1).await;
    assert!(
        logs.lines()
            .any(|l| l.contains("TypeError") && l.contains("function=\"fail\"")),
        "{logs}"
    );
    gw.wait_for_logs("called back", 1).await;
    gw.wait_for_logs("thrown later", 1).await;

    // Past the function's timeout: 504, the process is killed, the next call works.
    check_timeout_kills_and_recovers(&c, &gw).await;

    let metrics = c.get(&gw.admin_url("/metrics")).await.text();
    for (function, outcome) in [
        ("fail", "error"),
        ("failCallback", "error"),
        ("uncaught", "error"),
        ("reject", "error"),
        ("crash", "crash"),
        ("malformed", "malformed"),
        ("slow", "timeout"),
        ("slow", "ok"),
    ] {
        assert!(
            metrics.contains(&format!(
                "weir_function_invocations_total{{function=\"{function}\",outcome=\"{outcome}\"}}"
            )),
            "{function} {outcome}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_express_app_behind_serverless_http() {
    let rt = runtime();
    let mut config = rt.function("api", "api.handler", "", "min_warm = 1");
    config.push_str(&route("ANY /api/{proxy+}", "api", "2.0"));
    config.push_str(&route("ANY /v1/api/{proxy+}", "api", "1.0"));
    let gw = start(&config);
    let c = Client::default();
    wait_ready(&c, &gw).await;

    for prefix in ["/api", "/v1/api"] {
        let r = c
            .send(
                "GET",
                &gw.url(&format!("{prefix}/items/42?q=red%20shoes")),
                &[("user-agent", "weir-test")],
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"id": "42", "q": "red shoes", "ua": "weir-test"}),
            "{prefix}"
        );
        assert_eq!(r.header("x-item"), Some("42"), "{prefix}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{prefix}"
        );
        assert_eq!(r.header("set-cookie"), Some("seen=42; Path=/"), "{prefix}");

        let r = c
            .send(
                "POST",
                &gw.url(&format!("{prefix}/items")),
                &[("content-type", "application/json")],
                r#"{"name":"boots"}"#,
            )
            .await;
        assert_eq!(r.status, 201, "{prefix}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"created": {"name": "boots"}}),
            "{prefix}"
        );

        let r = c.get(&gw.url(&format!("{prefix}/bytes"))).await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        assert_eq!(
            r.body,
            Bytes::from_static(&[0, 159, 146, 150, 255]),
            "{prefix}"
        );

        // The app's own errors are its answers, not function errors.
        let r = c.get(&gw.url(&format!("{prefix}/broken"))).await;
        assert_eq!(r.status, 500, "{prefix}: {}", r.text());
        assert!(r.text().contains("the route broke"), "{prefix}");
        let r = c.get(&gw.url(&format!("{prefix}/nowhere"))).await;
        assert_eq!(r.status, 404, "{prefix}: {}", r.text());
    }
    assert_eq!(
        metric(
            &c,
            &gw,
            "weir_function_invocations_total{function=\"api\",outcome=\"ok\"}"
        )
        .await,
        10.0
    );
}
