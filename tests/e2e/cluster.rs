//! `[cluster]`: two real `weir` nodes and one real `redis-server` act as one gateway —
//! one account bucket, one quota, `@connections` to a client on the other node — and
//! keep serving (or refuse, as configured) while the store is gone.

use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_tests::redis::{Redis, RedisCluster};
use weir_tests::ws::{self, Frame};
use weir_tests::{Client, Reply, TestCa, Upstream, Weir};

use crate::weir;

const ALICE: &str = "alice-key-0123456789abcdef";

fn cluster(redis: &Redis, node: &str, extra: &str) -> String {
    format!(
        "[cluster]\nredis = \"{url}\"\nnode_id = \"{node}\"\n{extra}\n",
        url = redis.url()
    )
}

async fn get(c: &Client, url: &str, key: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    c.send("GET", url, &headers, Bytes::new()).await
}

/// Waits until `node` is connected to its store (a node starts serving without it
/// when the first connection takes longer than a second, as on a busy machine).
async fn connected(node: &Weir) {
    node.wait_for_logs("cluster store up", 1).await;
}

/// Two nodes on one store, each with `config` after its own `[cluster]` table.
async fn two_nodes(redis: &Redis, extra: &str, config: &str) -> (Weir, Weir) {
    let a = weir(&format!("{}{config}", cluster(redis, "node-a", extra)));
    let b = weir(&format!("{}{config}", cluster(redis, "node-b", extra)));
    connected(&a).await;
    connected(&b).await;
    (a, b)
}

/// 40 requests to each node, alternating: (admitted by A, admitted by B, other statuses).
async fn burst(a: &Weir, b: &Weir, path: &str) -> (usize, usize, Vec<u16>) {
    let c = Client::default();
    let (mut on_a, mut on_b, mut other) = (0, 0, Vec::new());
    for _ in 0..40 {
        for (node, count) in [(a, &mut on_a), (b, &mut on_b)] {
            match get(&c, &node.url(path), None).await.status.as_u16() {
                200 => *count += 1,
                429 => {}
                s => other.push(s),
            }
        }
    }
    (on_a, on_b, other)
}

// A request whose store call misses `timeout` is decided on the node's own buckets
// (`on_store_error = "local"`); tests run many processes on few cores, so they allow
// the store a second rather than the default 5 ms.
const EXACT: &str = "mode = \"exact\"\ntimeout = \"1s\"";
const LEASE: &str = "mode = \"lease\"\ntimeout = \"1s\"";

const LIMITED: &str = r#"
[throttle]
rate = 0.01
burst = 20
[[routes]]
key = "GET /limited"
integration = { type = "mock", body = "ok" }
"#;

#[tokio::test]
async fn cluster_burst_across_two_nodes_admits_the_global_burst_exact_mode() {
    let redis = Redis::start();
    let (a, b) = two_nodes(&redis, EXACT, LIMITED).await;
    let (on_a, on_b, other) = burst(&a, &b, "/limited").await;
    assert!(other.is_empty(), "{other:?}");
    // One bucket of 20 for both nodes (0.01/s: nothing refills meanwhile).
    assert_eq!(on_a + on_b, 20, "a {on_a}, b {on_b}");
    assert!(on_a >= 9 && on_b >= 9, "a {on_a}, b {on_b}");
}

#[tokio::test]
async fn cluster_burst_across_two_nodes_admits_the_global_burst_lease_mode() {
    let redis = Redis::start();
    let (a, b) = two_nodes(&redis, LEASE, LIMITED).await;
    let (on_a, on_b, other) = burst(&a, &b, "/limited").await;
    assert!(other.is_empty(), "{other:?}");
    // Never more than the one bucket; tokens a node leased and did not use (at most
    // a tenth of the burst each) are what it may fall short by.
    assert!(on_a + on_b <= 20, "a {on_a}, b {on_b}");
    assert!(on_a + on_b >= 16, "a {on_a}, b {on_b}");
    assert!(on_a >= 5 && on_b >= 5, "a {on_a}, b {on_b}");
}

/// Alice's key on a plan with a daily quota of `limit`, and a route that needs a key.
fn metered(limit: usize) -> String {
    format!(
        r#"
[usage_plans.metered]
quota = {{ limit = {limit}, period = "DAY" }}
[[api_keys]]
name = "alice"
value = "{ALICE}"
plan = "metered"
[[routes]]
key = "GET /metered"
integration = {{ type = "mock", body = "ok" }}
api_key_required = true
"#
    )
}

#[tokio::test]
async fn cluster_quota_used_on_one_node_is_exhausted_on_the_other() {
    let redis = Redis::start();
    let config = format!("[api]\nquota_headers = true\n{}", metered(3));
    let (a, b) = two_nodes(&redis, LEASE, &config).await;
    let c = Client::default();
    let url = |n: &Weir| n.url("/metered");
    for (node, left) in [(&a, "2"), (&b, "1"), (&a, "0")] {
        let r = get(&c, &url(node), Some(ALICE)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-quota-remaining"), Some(left));
    }
    for node in [&b, &a, &b] {
        let r = get(&c, &url(node), Some(ALICE)).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.text(), r#"{"message":"Limit Exceeded"}"#);
    }
    // No quota file with a cluster: the counts are the store's.
    assert!(!a.dir.join("weir-quotas.json").exists());
}

/// Lease mode at a high rate: both nodes together admit the quota exactly — never more
/// during the burst, and all of it once unused leased units went back — asking the store
/// less often than once a request (once for every two or three here; the account
/// bucket's leases count too).
#[tokio::test]
async fn cluster_quota_leases_admit_the_quota_exactly_with_fewer_store_calls() {
    const QUOTA: usize = 400;
    let redis = Redis::start();
    let config = metered(QUOTA);
    let (a, b) = two_nodes(&redis, LEASE, &config).await;
    let calls_before = redis.script_calls();
    // 8 clients per node, 40 requests each: 640 asks for 400 units.
    let mut tasks = Vec::new();
    for node in [&a, &b] {
        for _ in 0..8 {
            let url = node.url("/metered");
            tasks.push(tokio::spawn(async move {
                let c = Client::default();
                let mut admitted = 0;
                for _ in 0..40 {
                    let r = get(&c, &url, Some(ALICE)).await;
                    match r.status.as_u16() {
                        200 => admitted += 1,
                        429 => {}
                        s => panic!("status {s}: {}", r.text()),
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert!(admitted <= QUOTA, "admitted {admitted} of {QUOTA}");
    let calls = redis.script_calls() - calls_before;
    eprintln!("{calls} store calls for {admitted} requests admitted");
    assert!(
        calls * 4 < admitted as u64 * 3,
        "{calls} store calls for {admitted} requests"
    );
    // Unused leased units go back after a second; then the rest is used, and no more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = Client::default();
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 6 {
        for node in [&a, &b] {
            match get(&c, &node.url("/metered"), Some(ALICE))
                .await
                .status
                .as_u16()
            {
                200 => {
                    admitted += 1;
                    refused_in_a_row = 0;
                }
                429 => refused_in_a_row += 1,
                s => panic!("status {s}"),
            }
        }
        if refused_in_a_row > 0 {
            // A refusing node asks the store again after a second.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert_eq!(admitted, QUOTA);
}

/// `rediss://` to a store that asks for client certificates: the nodes verify the
/// store against `tls_ca_file` and present `tls_cert`; still one bucket for both.
#[tokio::test]
async fn cluster_over_tls_with_client_certificates() {
    let (store_ca, node_ca) = (TestCa::new(), TestCa::new());
    let dir = weir_tests::test_dir();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (cert, key) = node_ca.client_cert();
    let redis = Redis::start_tls(
        &write("redis.crt", &store_ca.server_pem.0),
        &write("redis.key", &store_ca.server_pem.1),
        &write("nodes-ca.pem", &node_ca.ca_pem),
    );
    let tls = format!(
        "{EXACT}\ntls_ca_file = {}\ntls_cert = {}\ntls_key = {}",
        crate::toml_path(write("store-ca.pem", &store_ca.ca_pem).to_str().unwrap()),
        crate::toml_path(write("node.crt", &cert).to_str().unwrap()),
        crate::toml_path(write("node.key", &key).to_str().unwrap()),
    );
    assert!(redis.url().starts_with("rediss://"));
    let (a, b) = two_nodes(&redis, &tls, LIMITED).await;
    let (on_a, on_b, other) = burst(&a, &b, "/limited").await;
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(on_a + on_b, 20, "a {on_a}, b {on_b}");

    // A node that does not trust the store's certificate never connects (and serves
    // on its own buckets meanwhile, as `local` says).
    let stranger = weir(&format!(
        "{}{LIMITED}",
        cluster(
            &redis,
            "node-c",
            &format!(
                "{EXACT}\ntls_cert = {}\ntls_key = {}",
                crate::toml_path(dir.join("node.crt").to_str().unwrap()),
                crate::toml_path(dir.join("node.key").to_str().unwrap())
            )
        )
    ));
    stranger
        .wait_for_logs("cluster store unreachable at start", 1)
        .await;
    assert_eq!(stranger.count_logs("cluster store up"), 0);
    let c = Client::default();
    assert_eq!(get(&c, &stranger.url("/limited"), None).await.status, 200);
}

/// A Redis Cluster of three masters behind a list of seed URLs: every key in its own
/// slot, one route bucket and one quota for both nodes.
#[tokio::test]
async fn cluster_on_a_redis_cluster() {
    let store = RedisCluster::start();
    let config = format!(
        r#"{}
[[routes]]
key = "GET /limited"
integration = {{ type = "mock", body = "ok" }}
throttle = {{ rate = 0.01, burst = 20 }}
"#,
        metered(5)
    );
    let node = |id: &str| {
        weir(&format!(
            "[cluster]\nredis = {}\nnode_id = \"{id}\"\n{EXACT}\n{config}",
            store.urls_toml()
        ))
    };
    let (a, b) = (node("node-a"), node("node-b"));
    connected(&a).await;
    connected(&b).await;
    let (on_a, on_b, other) = burst(&a, &b, "/limited").await;
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(on_a + on_b, 20, "a {on_a}, b {on_b}");
    let c = Client::default();
    let mut metered = 0;
    for _ in 0..5 {
        for node in [&a, &b] {
            match get(&c, &node.url("/metered"), Some(ALICE))
                .await
                .status
                .as_u16()
            {
                200 => metered += 1,
                429 => {}
                s => panic!("status {s}"),
            }
        }
    }
    assert_eq!(metered, 5);
    assert!(store.script_calls() > 0);
}

fn chat(up: &Upstream, limits: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[websocket.chat]
path = "/chat"
{limits}
[[websocket.chat.routes]]
key = "$connect"
integration = {{ type = "http", url = "{base}/connect" }}
[[websocket.chat.routes]]
key = "whoami"
integration = {{ type = "http", url = "{base}/whoami" }}
route_response = true
"#,
        base = up.base(),
    )
}

#[tokio::test]
async fn cluster_connections_api_on_one_node_reaches_a_client_on_the_other() {
    let redis = Redis::start();
    let up = Upstream::start().await;
    let (a, b) = two_nodes(&redis, LEASE, &chat(&up, "")).await;
    let mut client = ws::connect(&format!("ws://{}/chat", a.addr), &[("user-agent", "t/1")])
        .await
        .expect("connects to node A");
    let id = client.ask(r#"{"action":"whoami"}"#).await["headers"]["connectionid"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = Client::default();
    let on_b = b.admin_url(&format!("/@connections/{id}"));

    // The registration is written in the background: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let info = loop {
        let r = http.get(&on_b).await;
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(info.status, 200, "{}", info.text());
    let info = info.json();
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(info["identity"]["userAgent"], "t/1");
    assert!(humantime::parse_rfc3339(info["connectedAt"].as_str().unwrap()).is_ok());

    let r = http.send("POST", &on_b, &[], "from node b").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(client.next().await, Frame::Text("from node b".into()));
    let r = http
        .send(
            "POST",
            &on_b,
            &[("content-type", "application/octet-stream")],
            vec![1u8, 255],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(client.next().await, Frame::Binary(vec![1, 255]));
    // The holder's limits apply: 128 KiB messages by default.
    let r = http.send("POST", &on_b, &[], vec![b'x'; 200 << 10]).await;
    assert_eq!(r.status, 413);

    assert_eq!(http.send("DELETE", &on_b, &[], "").await.status, 204);
    assert!(matches!(client.next().await, Frame::Close(1000, _)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.send("POST", &on_b, &[], "late").await;
        if r.status == 410 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the close",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unknown = http
        .get(&b.admin_url("/@connections/0000000000000000"))
        .await;
    assert_eq!(unknown.status, 410);

    // A node that dies takes its connections with it: its registrations outlive it (until
    // `connection_ttl`), but nobody listens on its channel, so B answers 410 at once.
    let mut second = ws::connect(&format!("ws://{}/chat", a.addr), &[])
        .await
        .expect("connects to node A");
    let id = second.ask(r#"{"action":"whoami"}"#).await["headers"]["connectionid"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_b = b.admin_url(&format!("/@connections/{id}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while http.get(&on_b).await.status != 200 {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(a);
    let started = Instant::now();
    let r = http.send("POST", &on_b, &[], "to a dead node").await;
    assert_eq!(r.status, 410, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Requests `path` on `node` until it answers `want` (at most 10 s).
async fn until(node: &Weir, path: &str, want: u16) {
    let c = Client::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(&c, &node.url(path), None).await.status.as_u16();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cluster_store_down_local_serves_deny_refuses_then_shared_again() {
    store_down_and_back(EXACT).await;
}

#[tokio::test]
async fn cluster_store_down_and_back_in_lease_mode() {
    store_down_and_back(LEASE).await;
}

/// Node A (`local`) and node B (`deny`) in `mode`, their store stopped and started.
async fn store_down_and_back(mode: &str) {
    let mut redis = Redis::start();
    let config = r#"
[admin]
listen = "127.0.0.1:0"
[[routes]]
key = "GET /free"
integration = { type = "mock", body = "ok" }
[[routes]]
key = "GET /limited"
integration = { type = "mock", body = "ok" }
throttle = { rate = 0.01, burst = 6 }
"#;
    let a = weir(&format!(
        "{}{config}",
        cluster(
            &redis,
            "node-a",
            &format!("{mode}\non_store_error = \"local\"")
        )
    ));
    let b = weir(&format!(
        "{}{config}",
        cluster(
            &redis,
            "node-b",
            &format!("{mode}\non_store_error = \"deny\"")
        )
    ));
    connected(&a).await;
    connected(&b).await;
    let c = Client::default();
    assert_eq!(get(&c, &a.url("/free"), None).await.status, 200);
    assert_eq!(get(&c, &b.url("/free"), None).await.status, 200);

    redis.stop();
    // Local mode goes on serving; deny mode refuses with 503 once it sees the store gone.
    for _ in 0..20 {
        assert_eq!(get(&c, &a.url("/free"), None).await.status, 200);
    }
    until(&b, "/free", 503).await;
    let r = get(&c, &b.url("/free"), None).await;
    assert_eq!(r.text(), r#"{"message":"Service Unavailable"}"#);
    a.wait_for_logs("cluster store down", 1).await;
    let metrics = c.get(&a.admin_url("/metrics")).await.text();
    assert!(metrics.contains("weir_cluster_store_up 0"), "{metrics}");
    assert!(
        metrics.contains("weir_cluster_store_errors_total"),
        "{metrics}"
    );

    redis.resume();
    until(&b, "/free", 200).await;
    until(&a, "/free", 200).await;
    // Give node A time to reconnect too (it has no reason to fail a request meanwhile).
    a.wait_for_logs("cluster store up", 2).await;
    // Shared again: one bucket of 6 across both nodes.
    let (mut on_a, mut on_b) = (0, 0);
    for _ in 0..10 {
        on_a += usize::from(get(&c, &a.url("/limited"), None).await.status == 200);
        on_b += usize::from(get(&c, &b.url("/limited"), None).await.status == 200);
    }
    if mode == EXACT {
        assert_eq!(on_a + on_b, 6, "a {on_a}, b {on_b}");
    } else {
        // Never more than the one bucket; a token leased and unused may be missing.
        assert!((4..=6).contains(&(on_a + on_b)), "a {on_a}, b {on_b}");
    }
    let metrics = c.get(&a.admin_url("/metrics")).await.text();
    assert!(metrics.contains("weir_cluster_store_up 1"), "{metrics}");
    // One line per change of state, not one per request.
    assert_eq!(a.count_logs("cluster store down"), 1, "{}", a.logs());
}

#[tokio::test]
async fn cluster_websocket_connect_rate_is_one_bucket_for_both_nodes() {
    let redis = Redis::start();
    let up = Upstream::start().await;
    let limits = "limits = { connect_rate = 1, connect_burst = 4 }";
    let (a, b) = two_nodes(&redis, EXACT, &chat(&up, limits)).await;
    let started = Instant::now();
    let (mut open, mut refused) = (Vec::new(), 0);
    for _ in 0..5 {
        for node in [&a, &b] {
            match ws::connect(&format!("ws://{}/chat", node.addr), &[]).await {
                Ok(c) => open.push(c),
                Err(r) => {
                    assert_eq!(r.status, 429, "{}", r.body);
                    refused += 1;
                }
            }
        }
    }
    // A burst of 4 for both nodes, plus one a second.
    let refills = started.elapsed().as_secs() as usize;
    assert!(
        (4..=4 + refills).contains(&open.len()),
        "{} opened, {refused} refused in {:?}",
        open.len(),
        started.elapsed()
    );
}
