//! The admin listener: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use weir_tests::artifacts::{ECHO_MAPPER, TRAP};
use weir_tests::{Client, Upstream, Weir};

use crate::{toml_path, weir};

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_and_metrics() {
    let up = Upstream::start().await;
    let mut gw = weir(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[plugins.echo]
file = {echo}
world = "mapper"
[plugins.trap]
file = {trap}
world = "mapper"
smoke_test = false
[[routes]]
key = "GET /pets/{{id}}"
integration = {{ type = "http", url = "{base}/pets/{{id}}" }}
request_mapping = "echo"
[[routes]]
key = "GET /trap"
integration = {{ type = "mock" }}
request_mapping = "trap"
[[routes]]
key = "GET /slow/{{ms}}"
integration = {{ type = "http", url = "{base}/slow/{{ms}}" }}
"#,
        echo = toml_path(ECHO_MAPPER),
        trap = toml_path(TRAP),
        base = up.base()
    ));
    let c = Client::default();
    let health = c.get(&gw.admin_url("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(c.get(&gw.admin_url("/ready")).await.status, 200);
    assert_eq!(c.get(&gw.admin_url("/nope")).await.status, 404);

    for _ in 0..3 {
        assert_eq!(c.get(&gw.url("/pets/1")).await.status, 200);
    }
    assert_eq!(c.get(&gw.url("/trap")).await.status, 500);
    assert_eq!(c.get(&gw.url("/missing")).await.status, 404);

    let m = c.get(&gw.admin_url("/metrics")).await.text();
    let has = |needle: &str| m.lines().any(|l| l.starts_with(needle));
    assert!(
        has(r#"weir_requests_total{route="GET /pets/{id}",status="200"} 3"#),
        "{m}"
    );
    assert!(
        has(r#"weir_requests_total{route="GET /trap",status="500"} 1"#),
        "{m}"
    );
    assert!(
        has(r#"weir_requests_total{route="$none",status="404"} 1"#),
        "{m}"
    );
    assert!(
        has(r#"weir_plugin_calls_total{plugin="echo",outcome="ok"} 3"#),
        "{m}"
    );
    assert!(
        has(r#"weir_plugin_calls_total{plugin="trap",outcome="trap"} 1"#),
        "{m}"
    );
    assert!(has("weir_request_duration_seconds_bucket{"), "{m}");
    assert!(
        has(r#"weir_integration_duration_seconds_count{route="GET /pets/{id}"} 3"#),
        "{m}"
    );

    // While draining, readiness is refused but the admin listener still answers.
    let slow = {
        let c = c.clone();
        let url = gw.url("/slow/800");
        tokio::spawn(async move { c.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.get(&gw.admin_url("/ready")).await.status, 503);
    assert_eq!(slow.await.unwrap().status, 200);
    let status = tokio::task::block_in_place(|| gw.terminate(Duration::from_secs(10)));
    assert!(status.expect("weir exited").success());
}

#[tokio::test]
async fn trace_context_goes_upstream_and_into_the_access_log() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[access_log]
fields = ["requestId", "status", "routeKey", "traceId", "integrationError"]
[[routes]]
key = "GET /pets"
integration = {{ type = "http", url = "{base}/pets" }}
[[routes]]
key = "GET /down"
integration = {{ type = "http", url = "http://127.0.0.1:{closed}/" }}
"#,
        base = up.base(),
        closed = weir_tests::closed_port(),
    ));
    let c = Client::default();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c
        .send(
            "GET",
            &gw.url("/pets"),
            &[("traceparent", incoming), ("tracestate", "vendor=opaque")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = &up.seen()[0];
    let sent = seen.headers["traceparent"].to_str().unwrap();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert_ne!(sent, incoming, "the gateway is a new parent span");
    assert_eq!(seen.headers["tracestate"], "vendor=opaque");

    c.get(&gw.url("/pets")).await;
    let fresh = up.seen()[1].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(fresh.len(), 55, "{fresh}");
    assert!(!fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"));

    assert_eq!(c.get(&gw.url("/down")).await.status, 502);
    let logs = gw.wait_for_logs("weir::access", 3).await;
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("weir::access"))
        .collect();
    assert_eq!(access.len(), 3, "{logs}");
    assert!(
        access[0].contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{}",
        access[0]
    );
    assert!(
        access[0].contains("routeKey=\"GET /pets\""),
        "{}",
        access[0]
    );
    assert!(
        !access[0].contains("userAgent"),
        "only the chosen fields: {}",
        access[0]
    );
    assert!(access[2].contains("integrationError="), "{}", access[2]);
    assert!(access[2].contains("status=502"), "{}", access[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_records_carry_the_request_and_escape_what_they_quote() {
    let up = Upstream::start().await;
    let gw = Weir::start_with(
        env!("CARGO_BIN_EXE_weir"),
        &format!(
            r#"
[[routes]]
key = "POST /pets/{{id}}"
integration = {{ type = "http", url = "{base}/pets/{{id}}" }}
"#,
            base = up.base()
        ),
        &["--log-format", "json"],
    );
    let c = Client::default();
    let agent = "probe \"quoted\" \\ tab\there";
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = c
            .send(
                "POST",
                &gw.url(&format!("/pets/{i}")),
                &[("user-agent", agent)],
                bytes::Bytes::from_static(b"{}"),
            )
            .await;
        assert_eq!(r.status, 200);
        ids.push(r.header("x-request-id").unwrap().to_owned());
    }
    assert_eq!(c.get(&gw.url("/nowhere")).await.status, 404);
    let logs = gw.wait_for_logs("weir::access", 4).await;
    let records: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("\"weir::access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 4, "{logs}");
    for (i, (r, id)) in records.iter().zip(&ids).enumerate() {
        assert_eq!(r["requestId"], id.as_str());
        assert_eq!(r["httpMethod"], "POST");
        assert_eq!(r["path"], format!("/pets/{i}"));
        assert_eq!(r["routeKey"], "POST /pets/{id}");
        assert_eq!(r["status"], 200);
        assert_eq!(r["integrationStatus"], 200);
        assert_eq!(r["userAgent"], agent);
        assert_eq!(r["sourceIp"], "127.0.0.1");
        assert_eq!(r["protocol"], "HTTP/1.1");
        assert!(
            r["responseLatency"].as_f64().unwrap() >= r["integrationLatency"].as_f64().unwrap()
        );
        assert!(
            r["requestTime"]
                .as_str()
                .unwrap()
                .parse::<humantime::Timestamp>()
                .is_ok()
        );
        assert_eq!(r["traceId"].as_str().unwrap().len(), 32);
    }
    assert_eq!(records[3]["status"], 404);
    assert_eq!(records[3]["routeKey"], "-");
}
