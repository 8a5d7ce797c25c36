//! Loading and replacing plugins and config while the gateway serves: the admin API,
//! file watching, refusals, the disk cache, and limits that survive a swap.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::artifacts::{COUNTING_AUTHORIZER, SPIN, STAMP_V1, STAMP_V2, TRAP};
use weir_tests::{Client, Reply, Upstream, Weir};

/// `stamp-v1` is used here.
pub const USES_STAMP_V1: bool = true;
/// `stamp-v2` is used here.
pub const USES_STAMP_V2: bool = true;

const TOKEN: &str = "test-admin-token-0123456789";

/// Starts weir with `config` written next to a copy of `stamp-v1` (`stamp.wasm`) and
/// of `stamp-v2` (`v2.wasm`), with the admin API on.
fn start(config: &str) -> Weir {
    let dir = weir_tests::test_dir();
    std::fs::copy(STAMP_V1, dir.join("stamp.wasm")).unwrap();
    std::fs::copy(STAMP_V2, dir.join("v2.wasm")).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{config}"
        ),
    )
    .unwrap();
    Weir::start_file(env!("CARGO_BIN_EXE_weir"), &path, &[])
}

fn stamp_route(up: &Upstream) -> String {
    format!(
        r#"
[plugins.stamp]
file = "stamp.wasm"
world = "mapper"
[[routes]]
key = "GET /s/{{x+}}"
integration = {{ type = "http", url = "{base}/{{x+}}" }}
request_mapping = "stamp"
response_mapping = "stamp"
"#,
        base = up.base()
    )
}

async fn admin(c: &Client, gw: &Weir, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    c.send(
        method,
        &gw.admin_url(path),
        &[("authorization", &auth)],
        body,
    )
    .await
}

/// Runs `loops` clients that each send requests one after another until `stop`, and
/// returns, per client, (status, x-stamp header, body) of every response in order.
fn drive(
    c: &Client,
    url: String,
    loops: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<(u16, String, String)>>> {
    (0..loops)
        .map(|_| {
            let (c, url, stop, sent) = (c.clone(), url.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = c.get(&url).await;
                    let stamp = r.header("x-stamp").unwrap_or("none").to_owned();
                    seen.push((r.status.as_u16(), stamp, r.text()));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect()
}

/// Waits (at most 30 s) until `done` holds, polling.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every response succeeded, and the stamps went from `v1` to `v2` exactly once.
fn assert_one_switch(runs: Vec<Vec<(u16, String, String)>>) {
    for seen in runs {
        assert!(seen.iter().all(|(s, _, _)| *s == 200), "{seen:?}");
        let mut stamps: Vec<&str> = seen.iter().map(|(_, s, _)| s.as_str()).collect();
        stamps.dedup();
        assert_eq!(stamps, ["v1", "v2"], "{} responses", seen.len());
    }
}

async fn replace_while_serving(via_file: bool) {
    let up = Upstream::start().await;
    let gw = start(&stamp_route(&up));
    let c = Client::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let runs = drive(&c, gw.url("/s/1"), 3, stop.clone(), sent.clone());
    wait_for("traffic", async || sent.load(Ordering::Relaxed) >= 30).await;

    let v2 = std::fs::read(STAMP_V2).unwrap();
    if via_file {
        // Written in two parts with a pause: the debounce waits for the whole file.
        let file = gw.dir.join("stamp.wasm");
        let (head, tail) = v2.split_at(v2.len() / 2);
        std::fs::write(&file, head).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut all = head.to_vec();
        all.extend_from_slice(tail);
        std::fs::write(&file, all).unwrap();
    } else {
        let r = admin(&c, &gw, "PUT", "/admin/plugins/stamp", v2).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["source"], "upload");
    }
    wait_for("the new version", async || {
        c.get(&gw.url("/s/2")).await.header("x-stamp") == Some("v2")
    })
    .await;
    let after = sent.load(Ordering::Relaxed);
    wait_for("traffic on v2", async || {
        sent.load(Ordering::Relaxed) >= after + 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for run in runs {
        all.push(run.await.unwrap());
    }
    assert_one_switch(all);

    let list = admin(&c, &gw, "GET", "/admin/plugins", Bytes::new()).await;
    assert_eq!(list.status, 200);
    let p = &list.json()["plugins"][0];
    assert_eq!(p["name"], "stamp");
    assert_eq!(p["world"], "mapper");
    assert_eq!(p["source"], if via_file { "file" } else { "upload" });
    assert_eq!(p["used_by"][0], "GET /s/{x+}");
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
    assert!(p["calls"]["ok"].as_u64().unwrap() >= 60, "{p}");
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    let sha = p["sha256"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            r#"weir_plugin_info{{plugin="stamp",world="mapper",sha256="{sha}"}} 1"#
        )),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_is_replaced_through_the_admin_api_without_dropping_a_request() {
    replace_while_serving(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_is_replaced_by_writing_its_file_without_dropping_a_request() {
    replace_while_serving(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_components_are_refused_and_the_old_version_keeps_serving() {
    let up = Upstream::start().await;
    let gw = start(&stamp_route(&up));
    let c = Client::default();
    let put = async |body: Vec<u8>| admin(&c, &gw, "PUT", "/admin/plugins/stamp", body).await;
    let serving = async || c.get(&gw.url("/s/1")).await.header("x-stamp") == Some("v1");

    let r = put(b"not a component".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not WebAssembly")
    );
    let r = put(b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("core module")
    );
    // A component header over bytes that do not parse: the compiler process's own
    // error is the reason.
    let r = put(b"\0asm\x0d\0\x01\0\xff\xff\xff\xff".to_vec()).await;
    assert_eq!(r.status, 422);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("compiling the uploaded component: ") && message.contains("parse"),
        "{message}"
    );
    let r = put(std::fs::read(COUNTING_AUTHORIZER).unwrap()).await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("`mapper` world")
    );
    let r = put(std::fs::read(TRAP).unwrap()).await;
    assert_eq!(r.status, 422);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("smoke test"), "{message}");
    let r = put(std::fs::read(SPIN).unwrap()).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["message"].as_str().unwrap().contains("deadline"));
    assert!(serving().await);

    // A broken file is refused too; the upload... here the file's version serves on.
    std::fs::write(gw.dir.join("stamp.wasm"), std::fs::read(TRAP).unwrap()).unwrap();
    wait_for("the refusal", async || gw.logs().contains("reload refused")).await;
    assert!(serving().await);
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    assert!(
        m.contains(r#"weir_config_reloads_total{result="refused"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"weir_plugin_loads_total{plugin="stamp",result="refused"}"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_the_token_and_refuses_to_delete_a_plugin_in_use() {
    let up = Upstream::start().await;
    let gw = start(&stamp_route(&up));
    let c = Client::default();
    let url = gw.admin_url("/admin/plugins");
    let r = c.get(&url).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.json()["message"], "Unauthorized");
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    assert_eq!(c.send("GET", &url, &basic, Bytes::new()).await.status, 401);
    let wrong = [("authorization", "Bearer test-admin-token-0123456780")];
    let r = c.send("GET", &url, &wrong, Bytes::new()).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "Forbidden");
    let r = c
        .send(
            "PUT",
            &gw.admin_url("/admin/plugins/stamp"),
            &wrong,
            std::fs::read(STAMP_V2).unwrap(),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .send("POST", &gw.admin_url("/admin/reload"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 401);
    // Health, readiness and metrics stay open.
    assert_eq!(c.get(&gw.admin_url("/health")).await.status, 200);
    assert_eq!(c.get(&gw.admin_url("/metrics")).await.status, 200);
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v1"));

    // In use: 409, and it keeps serving.
    let r = admin(&c, &gw, "DELETE", "/admin/plugins/stamp", Bytes::new()).await;
    assert_eq!(r.status, 409);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("GET /s/{x+}")
    );
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v1"));

    // A new plugin needs its world; then it can be listed and deleted.
    let v2 = std::fs::read(STAMP_V2).unwrap();
    let r = admin(&c, &gw, "PUT", "/admin/plugins/spare", v2.clone()).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("?world="));
    let r = admin(
        &c,
        &gw,
        "PUT",
        "/admin/plugins/spare?world=cors",
        v2.clone(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = admin(&c, &gw, "PUT", "/admin/plugins/spare?world=mapper", v2).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["used_by"], serde_json::json!([]));
    let r = admin(&c, &gw, "GET", "/admin/plugins/spare", Bytes::new()).await;
    assert_eq!(r.json()["name"], "spare");
    let r = admin(&c, &gw, "DELETE", "/admin/plugins/spare", Bytes::new()).await;
    assert_eq!(r.status, 204);
    let r = admin(&c, &gw, "GET", "/admin/plugins/spare", Bytes::new()).await;
    assert_eq!(r.status, 404);
    let r = admin(&c, &gw, "DELETE", "/admin/plugins/spare", Bytes::new()).await;
    assert_eq!(r.status, 404);
    let r = admin(
        &c,
        &gw,
        "PUT",
        "/admin/plugins/bad%20name?world=mapper",
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_off() {
    let gw = crate::weir("[admin]\nlisten = \"127.0.0.1:0\"\n");
    let c = Client::default();
    let r = c.get(&gw.admin_url("/admin/plugins")).await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("admin.token")
    );
}

fn metric(m: &str, name: &str) -> Option<f64> {
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_plugins_are_cached_on_disk_and_a_damaged_entry_is_rebuilt() {
    let up = Upstream::start().await;
    let mut gw = start(&format!(
        "[plugin_cache]\ndir = \"cache\"\n{}",
        stamp_route(&up)
    ));
    let c = Client::default();
    let compiles = r#"weir_plugin_compiles_total{plugin="stamp"}"#;
    let hits = r#"weir_plugin_cache_hits_total{plugin="stamp"}"#;
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, compiles), Some(1.0), "{m}");
    assert_eq!(metric(&m, hits), None, "{m}");

    tokio::task::block_in_place(|| gw.restart());
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v1"));
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&m, compiles),
        None,
        "a restart compiles nothing: {m}"
    );
    assert_eq!(metric(&m, hits), Some(1.0), "{m}");

    // Damage the entry: it is ignored, compiled again and rewritten.
    let entry = cache_entries(&gw.dir.join("cache"));
    assert_eq!(entry.len(), 1, "{entry:?}");
    let mut bytes = std::fs::read(&entry[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry[0], &bytes).unwrap();
    tokio::task::block_in_place(|| gw.restart());
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v1"));
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, compiles), Some(1.0), "{m}");
    assert!(
        gw.logs().contains("ignoring a cache entry"),
        "{}",
        gw.logs()
    );

    // A truncated one too.
    std::fs::write(&entry[0], &bytes[..100]).unwrap();
    tokio::task::block_in_place(|| gw.restart());
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v1"));
    tokio::task::block_in_place(|| gw.restart());
    let m = c.get(&gw.admin_url("/metrics")).await.text();
    assert_eq!(metric(&m, hits), Some(1.0), "rewritten: {m}");
}

fn cache_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for engine in std::fs::read_dir(dir).unwrap() {
        for entry in std::fs::read_dir(engine.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found
}

fn two_configs(up: &Upstream) -> (String, String) {
    let one = format!(
        r#"
[plugins.m]
file = "stamp.wasm"
world = "mapper"
[[routes]]
key = "GET /a"
integration = {{ type = "mock", body = "one" }}
response_mapping = "m"
[[routes]]
key = "GET /gone"
integration = {{ type = "http", url = "{base}/gone" }}
"#,
        base = up.base()
    );
    let two = format!(
        r#"
[plugins.m]
file = "v2.wasm"
world = "mapper"
[[routes]]
key = "GET /a"
integration = {{ type = "mock", body = "two" }}
response_mapping = "m"
[[routes]]
key = "GET /new"
integration = {{ type = "http", url = "{base}/new" }}
"#,
        base = up.base()
    );
    (one, two)
}

fn write_config(gw: &Weir, config: &str) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n[reload]\nwatch = false\n{config}"
    );
    std::fs::write(gw.dir.join("weir.toml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_reload_changes_routes_and_bindings_together() {
    let up = Upstream::start().await;
    let (one, two) = two_configs(&up);
    let gw = start(&format!("[reload]\nwatch = false\n{one}"));
    let c = Client::default();
    assert_eq!(c.get(&gw.url("/gone")).await.status, 200);
    assert_eq!(c.get(&gw.url("/new")).await.status, 404);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let runs = drive(&c, gw.url("/a"), 3, stop.clone(), sent.clone());
    wait_for("traffic", async || sent.load(Ordering::Relaxed) >= 30).await;

    // A broken config is refused as a whole, naming the key.
    write_config(&gw, &two.replace("GET /new", "GET /new/{"));
    let r = admin(&c, &gw, "POST", "/admin/reload", Bytes::new()).await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("routes[1].key"),
        "{}",
        r.text()
    );

    write_config(&gw, &two);
    let r = admin(&c, &gw, "POST", "/admin/reload", Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["routes"], 2);
    assert_eq!(r.json()["changed"], serde_json::json!(["m"]));
    let after = sent.load(Ordering::Relaxed);
    wait_for("traffic after", async || {
        sent.load(Ordering::Relaxed) >= after + 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for run in runs {
        let seen = run.await.unwrap();
        // The mock body and the mapper's stamp always belong to the same config.
        for (status, stamp, body) in &seen {
            assert_eq!(*status, 200);
            let pair = (stamp.as_str(), body.as_str());
            assert!(pair == ("v1", "one") || pair == ("v2", "two"), "{pair:?}");
        }
        assert_one_switch(vec![seen]);
    }
    assert_eq!(c.get(&gw.url("/gone")).await.status, 404);
    assert_eq!(c.get(&gw.url("/new")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_config_file_is_reloaded() {
    let up = Upstream::start().await;
    let (one, two) = two_configs(&up);
    let gw = start(&one);
    let c = Client::default();
    assert_eq!(c.get(&gw.url("/new")).await.status, 404);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{two}"
    );
    std::fs::write(gw.dir.join("weir.toml"), text).unwrap();
    wait_for("the new route", async || {
        c.get(&gw.url("/new")).await.status == 200
    })
    .await;
    let r = c.get(&gw.url("/a")).await;
    assert_eq!(
        (r.header("x-stamp"), r.text().as_str()),
        (Some("v2"), "two")
    );
    assert_eq!(c.get(&gw.url("/gone")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_even_right_after_start() {
    let up = Upstream::start().await;
    let (one, two) = two_configs(&up);
    let gw = start(&format!("[reload]\nwatch = false\n{one}"));
    // Signalled the moment the gateway says it listens: SIGHUP's default action would
    // end the process if the handler were not in place yet.
    write_config(&gw, &two);
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let c = Client::default();
    wait_for("the reload", async || {
        c.get(&gw.url("/new")).await.status == 200
    })
    .await;
    gw.wait_for_logs("SIGHUP", 1).await;
    assert_eq!(c.get(&gw.url("/gone")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_names_the_settings_that_need_a_restart() {
    let up = Upstream::start().await;
    let (one, two) = two_configs(&up);
    let gw = start(&format!("[reload]\nwatch = false\n{one}"));
    let c = Client::default();

    // Only routes and plugins differ: nothing waits for a restart.
    write_config(&gw, &two);
    let r = admin(&c, &gw, "POST", "/admin/reload", Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restart_needed"], serde_json::json!([]));
    assert!(!gw.logs().contains("apply only at start"), "{}", gw.logs());

    // A new admin token, a shorter shutdown grace and a stage: the stage is per request
    // and applies; the other two are named, and the running values stay.
    let new_token = format!("{TOKEN}-new");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\nstage = \"beta\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{new_token}\"\n\
         [reload]\nwatch = false\n{one}"
    );
    std::fs::write(gw.dir.join("weir.toml"), text).unwrap();
    let r = admin(&c, &gw, "POST", "/admin/reload", Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["restart_needed"],
        serde_json::json!(["server.shutdown_grace", "admin"])
    );
    gw.wait_for_logs("apply only at start", 1).await;
    // The routes did change.
    assert_eq!(c.get(&gw.url("/gone")).await.status, 200);
    assert_eq!(c.get(&gw.url("/new")).await.status, 404);
    // The admin API still wants the token it started with.
    assert_eq!(
        admin(&c, &gw, "GET", "/admin/plugins", Bytes::new())
            .await
            .status,
        200
    );
    let auth = format!("Bearer {new_token}");
    let r = c
        .send(
            "GET",
            &gw.admin_url("/admin/plugins"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_buckets_survive_swaps_and_reloads() {
    let up = Upstream::start().await;
    let gw = start(&format!(
        "[reload]\nwatch = false\n{}throttle = {{ rate = 0.001, burst = 2 }}\n",
        stamp_route(&up)
    ));
    let c = Client::default();
    assert_eq!(c.get(&gw.url("/s/1")).await.status, 200);
    assert_eq!(c.get(&gw.url("/s/1")).await.status, 200);
    assert_eq!(c.get(&gw.url("/s/1")).await.status, 429);
    let r = admin(
        &c,
        &gw,
        "PUT",
        "/admin/plugins/stamp",
        std::fs::read(STAMP_V2).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        c.get(&gw.url("/s/1")).await.status,
        429,
        "a plugin swap keeps the bucket"
    );
    let r = admin(&c, &gw, "POST", "/admin/reload", Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        c.get(&gw.url("/s/1")).await.status,
        429,
        "a reload keeps the bucket"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_on_their_version_and_old_versions_are_freed() {
    let up = Upstream::start().await;
    let gw = start(&stamp_route(&up));
    let c = Client::default();
    let alive = async || {
        let m = c.get(&gw.admin_url("/metrics")).await.text();
        metric(&m, "weir_plugin_versions_alive")
    };
    assert_eq!(alive().await, Some(1.0));

    // A slow request holds v1 while v2 is swapped in.
    let slow = {
        let (c, url) = (c.clone(), gw.url("/s/slow/800"));
        tokio::spawn(async move { c.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v1 = std::fs::read(STAMP_V1).unwrap();
    let v2 = std::fs::read(STAMP_V2).unwrap();
    let r = admin(&c, &gw, "PUT", "/admin/plugins/stamp", v2.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v2"));
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(
        slow.header("x-stamp"),
        Some("v1"),
        "finished on the version it began with"
    );

    // Many swaps leave one version in memory.
    for i in 0..40 {
        let body = if i % 2 == 0 { v1.clone() } else { v2.clone() };
        let r = admin(&c, &gw, "PUT", "/admin/plugins/stamp", body).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(c.get(&gw.url("/s/1")).await.header("x-stamp"), Some("v2"));
    assert_eq!(alive().await, Some(1.0));
}

#[test]
fn weir_plugin_check_runs_the_load_checks_offline() {
    let check = |file: &str, world: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["plugin", "check", file, "--world", world])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = check(STAMP_V1, "mapper");
    assert!(ok);
    assert!(stdout.contains(": ok (world mapper, sha256 "), "{stdout}");
    let (ok, _, stderr) = check(STAMP_V1, "authorizer");
    assert!(!ok);
    assert!(stderr.contains("`authorizer` world"), "{stderr}");
    let (ok, _, stderr) = check(TRAP, "mapper");
    assert!(!ok);
    assert!(stderr.contains("refused by the smoke test"), "{stderr}");
    let (ok, _, stderr) = check("/nonexistent.wasm", "cors");
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}
