//! Plugins that trap, loop forever or allocate without bound fail only their own
//! request; concurrent good requests through another plugin all succeed.

use std::time::{Duration, Instant};

use weir_tests::artifacts::{ECHO_MAPPER, HOG, SPIN, TRAP};
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_ECHO_MAPPER: bool = true;
pub const USES_TRAP: bool = true;
pub const USES_SPIN: bool = true;
pub const USES_HOG: bool = true;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[plugins.echo]
file = {echo}
world = "mapper"
config = {{ tag = "v1" }}
[plugins.trap]
file = {trap}
world = "mapper"
smoke_test = false
[plugins.spin]
file = {spin}
world = "mapper"
deadline = "100ms"
smoke_test = false
[plugins.hog]
file = {hog}
world = "mapper"
max_memory = "16MiB"
deadline = "10s"                # it must meet its memory cap, however loaded the machine
smoke_test = false

[[routes]]
key = "GET /good/{{x}}"
integration = {{ type = "http", url = "{base}/good/{{x}}" }}
request_mapping = "echo"
response_mapping = "echo"
[[routes]]
key = "GET /trap"
integration = {{ type = "http", url = "{base}/trap" }}
request_mapping = "trap"
[[routes]]
key = "GET /spin"
integration = {{ type = "http", url = "{base}/spin" }}
request_mapping = "spin"
[[routes]]
key = "GET /hog"
integration = {{ type = "http", url = "{base}/hog" }}
request_mapping = "hog"
"#,
        echo = toml_path(ECHO_MAPPER),
        trap = toml_path(TRAP),
        spin = toml_path(SPIN),
        hog = toml_path(HOG),
        base = up.base(),
    )
}

#[tokio::test]
async fn mapper_rewrites_both_ways_and_can_answer_directly() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    let r = c.get(&gw.url("/good/1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mapped-response"), Some("yes"));
    let h = &r.json()["headers"];
    assert_eq!(h["x-mapped"], "v1", "the plugin read its own config");
    assert_eq!(h["x-route-key"], "GET /good/{x}");
    let r = c.get(&gw.url("/good/direct")).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short-circuit");
    assert_eq!(
        up.seen().len(),
        1,
        "a direct answer never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_plugins_fail_only_their_own_requests() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();

    let mut good = Vec::new();
    for i in 0..40 {
        let c = c.clone();
        let url = gw.url(&format!("/good/{i}"));
        good.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 5)).await;
            c.get(&url).await
        }));
    }
    let mut bad = Vec::new();
    for path in ["/trap", "/spin", "/hog", "/trap", "/spin", "/hog"] {
        let c = c.clone();
        let url = gw.url(path);
        bad.push(tokio::spawn(async move {
            let started = Instant::now();
            (c.get(&url).await, started.elapsed())
        }));
    }
    for b in bad {
        let (r, took) = b.await.unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "Internal Server Error"})
        );
        assert!(
            took < Duration::from_secs(5),
            "a failing plugin is cut off ({took:?})"
        );
    }
    for g in good {
        let r = g.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["headers"]["x-mapped"], "v1");
    }
    // None of the failed requests reached the upstream.
    assert!(up.seen().iter().all(|s| s.uri.starts_with("/good/")));
    // The gateway is still healthy and says what happened.
    assert_eq!(c.get(&gw.url("/good/after")).await.status, 200);
    for line in [
        "plugin `spin` exceeded its 100ms deadline",
        "plugin `hog` exceeded its memory limit",
        "plugin `trap` failed",
    ] {
        gw.wait_for_logs(line, 1).await;
    }
}

/// Voluntary context switches of the gateway's epoch thread so far.
fn epoch_thread_wakeups(pid: u32) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "weir-epoch" {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            return status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        }
    }
    panic!("no weir-epoch thread in {pid}");
}

#[tokio::test]
async fn deadlines_hold_though_the_epoch_rests_between_calls() {
    let up = Upstream::start().await;
    let gw = weir(&config(&up));
    let c = Client::default();
    for _ in 0..2 {
        // Idle: after a tenth of a second without calls, the epoch thread rests instead
        // of ticking every millisecond.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let before = epoch_thread_wakeups(gw.pid());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let woke = epoch_thread_wakeups(gw.pid()) - before;
        assert!(
            woke < 30,
            "the idle epoch thread woke {woke} times in 300 ms"
        );
        // A looping plugin still meets its deadline, and the others still run.
        let started = Instant::now();
        assert_eq!(c.get(&gw.url("/spin")).await.status, 500);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(c.get(&gw.url("/good/1")).await.status, 200);
    }
}
