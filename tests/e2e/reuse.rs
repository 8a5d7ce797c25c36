//! Opt-in instance reuse (`reuse = N`): an instance serves at most N calls, state survives
//! between them, and a trapped instance is never used again. Without `reuse`, every call
//! gets a fresh instance. What a plugin keeps with `host.keep` outlives its instances,
//! not its version.

use weir_tests::artifacts::CALL_COUNTER;
use weir_tests::{Client, Upstream, Weir};

use crate::{toml_path, weir};

pub const USES_CALL_COUNTER: bool = true;

fn config(up: &Upstream, reuse: &str) -> String {
    format!(
        r#"
[plugins.counter]
file = {counter}
world = "mapper"
{reuse}

[[routes]]
key = "GET /count/{{x}}"
integration = {{ type = "http", url = "{base}/count/{{x}}" }}
request_mapping = "counter"
"#,
        counter = toml_path(CALL_COUNTER),
        base = up.base(),
    )
}

/// `x-instance-calls` as the upstream saw it, for one request to `/count/{x}`.
async fn calls(c: &Client, gw: &Weir, x: &str) -> String {
    seen(c, gw, x, "x-instance-calls").await
}

/// The header `name` as the upstream saw it, for one request to `/count/{x}`.
async fn seen(c: &Client, gw: &Weir, x: &str, name: &str) -> String {
    let r = c.get(&gw.url(&format!("/count/{x}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name}: {}", r.text()))
        .to_owned()
}

#[tokio::test]
async fn kept_values_outlive_fresh_instances_and_go_with_the_version() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up, ""));
    let c = Client::default();
    for want in 1..=3 {
        let r = c.get(&gw.url(&format!("/count/{want}"))).await;
        let headers = &r.json()["headers"];
        assert_eq!(
            headers["x-instance-calls"], "1",
            "a fresh instance per call"
        );
        assert_eq!(
            headers["x-plugin-calls"],
            want.to_string(),
            "kept between them"
        );
    }
    assert_eq!(seen(&c, &gw, "n", "x-plugin-calls").await, "4");
    // A value over the bound is refused, and the call goes on.
    assert_eq!(seen(&c, &gw, "big", "x-kept-big").await, "false");
    assert_eq!(seen(&c, &gw, "n", "x-plugin-calls").await, "6");

    // A new version of the plugin (its config changed) starts with nothing kept.
    gw.edit_config_and_hup(
        "world = \"mapper\"",
        "world = \"mapper\"\nconfig = { v = 2 }",
    );
    gw.wait_for_logs("config reloaded", 1).await;
    assert_eq!(seen(&c, &gw, "n", "x-plugin-calls").await, "1");
}

#[tokio::test]
async fn an_instance_serves_at_most_reuse_calls_and_none_after_a_trap() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up, "reuse = 3"));
    let c = Client::default();
    let mut seen = Vec::new();
    for i in 0..5 {
        seen.push(calls(&c, &gw, &i.to_string()).await);
    }
    assert_eq!(
        seen,
        ["1", "2", "3", "1", "2"],
        "state survives up to 3 calls"
    );

    // The instance that served 2 calls traps on its third: it must not serve a fourth.
    let r = c.get(&gw.url("/count/trap")).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        calls(&c, &gw, "after").await,
        "1",
        "a trapped instance is discarded"
    );
    assert_eq!(calls(&c, &gw, "again").await, "2");
    gw.wait_for_logs("plugin `counter` failed", 1).await;
}

#[tokio::test]
async fn without_reuse_every_call_gets_a_fresh_instance() {
    let up = Upstream::start().await;
    for setting in ["", "reuse = 0", "reuse = 1"] {
        let gw = weir(&config(&up, setting));
        let c = Client::default();
        for i in 0..3 {
            assert_eq!(calls(&c, &gw, &i.to_string()).await, "1", "{setting:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_the_pool_within_the_bound() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up, "reuse = 4"));
    let c = Client::default();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let url = gw.url(&format!("/count/{i}"));
        tasks.push(tokio::spawn(async move { c.get(&url).await }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let n: u32 = r.json()["headers"]["x-instance-calls"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        counts.push(n);
    }
    assert!(counts.iter().all(|n| (1..=4).contains(n)), "{counts:?}");
    assert!(
        counts.iter().any(|&n| n > 1),
        "instances were reused: {counts:?}"
    );
}

#[test]
fn reuse_is_validated() {
    let dir = weir_tests::test_dir();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[plugins.counter]\nfile = {}\nworld = \"mapper\"\nreuse = 2000000\n",
            toml_path(CALL_COUNTER)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins.counter.reuse: must be at most 1000000 calls per instance"),
        "{err}"
    );
}
