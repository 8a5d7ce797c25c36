//! The admin listener: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use weir_tests::artifacts::{ECHO_MAPPER, TRAP};
use weir_tests::{Client, Upstream};

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
