//! Pool targets that come and go while the gateway runs: names resolved again
//! (`resolve`, with `[server] hosts_file` pointing a name at loopback addresses), and
//! targets removed by a reload or a resolution draining (requests in flight finish,
//! idle connections close, new requests go elsewhere).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weir_tests::Client;
use weir_tests::backend::Backend;

use crate::{toml_path, weir};

/// Two backends on the same port, one on 127.0.0.1 and one on 127.0.0.2.
async fn two_loopback_backends() -> (Backend, Backend) {
    for _ in 0..20 {
        let a = Backend::start_at("a", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let other = SocketAddr::from(([127, 0, 0, 2], a.addr.port()));
        if let Ok(b) = Backend::start_at("b", other).await {
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// Sends GETs to `url` until `done` holds of an answer (each answer is checked), for
/// at most 5 s.
async fn until(url: &str, done: impl Fn(&weir_tests::Reply) -> bool) {
    let client = Client::default();
    let started = Instant::now();
    loop {
        let r = client.get(url).await;
        if done(&r) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {} {:?} {}",
            r.status,
            r.header("x-backend"),
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who answered `n` GETs in a row, by `x-backend`.
async fn sequence(url: &str, n: usize) -> Vec<String> {
    let client = Client::default();
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = client.get(url).await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(r.header("x-backend").unwrap().to_owned());
    }
    seen
}

/// Waits up to 3 s for `backend` to have no connection open.
async fn until_closed(backend: &Backend) -> usize {
    let started = Instant::now();
    while backend.open_connections() > 0 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend.open_connections()
}

#[tokio::test]
async fn a_name_resolved_again_adds_and_drains_addresses() {
    let (a, _b) = two_loopback_backends().await;
    let port = a.addr.port();
    let dir = weir_tests::test_dir();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "# the pets service\n127.0.0.1 pets.test\n").unwrap();
    let gw = weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
hosts_file = {}

[admin]
listen = "127.0.0.1:0"

[upstreams.pets]
targets = [{{ url = "http://pets.test:{port}" }}]
resolve = "100ms"

[[routes]]
key = "ANY /pets/{{proxy+}}"
integration = {{ type = "http", upstream = "pets", path = "/{{proxy+}}" }}
"#,
        toml_path(hosts.to_str().unwrap())
    ));
    let url = gw.url("/pets/x");
    // `pets.test` is in no resolver but the hosts file: answers mean it was read.
    until(&url, |r| r.status == 200).await;
    let r = Client::default().get(&url).await;
    assert_eq!(r.header("x-backend"), Some("a"));
    assert_eq!(
        r.json()["host"],
        format!("pets.test:{port}"),
        "the upstream is asked for the name, not the address"
    );
    assert!(sequence(&url, 10).await.iter().all(|w| w == "a"));

    // A second address joins: both share the requests.
    std::fs::write(&hosts, "127.0.0.1 pets.test\n127.0.0.2 pets.test\n").unwrap();
    until(&url, |r| r.header("x-backend") == Some("b")).await;
    let seen = sequence(&url, 20).await;
    let to_b = seen.iter().filter(|w| *w == "b").count();
    assert_eq!(to_b, 10, "round robin over both addresses: {seen:?}");
    let metrics = Client::default()
        .get(&gw.admin_url("/metrics"))
        .await
        .text();
    for address in ["127.0.0.1", "127.0.0.2"] {
        let needle = format!(
            "weir_upstream_requests_total{{upstream=\"pets\",target=\"http://{address}:{port}\"}}"
        );
        assert!(metrics.contains(&needle), "{needle} in {metrics}");
    }

    // The first address goes: no new request reaches it, and its connections close.
    std::fs::write(&hosts, "127.0.0.2 pets.test\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let hits = a.hits();
    assert!(sequence(&url, 10).await.iter().all(|w| w == "b"));
    assert_eq!(a.hits(), hits, "a drained target gets no new request");
    assert_eq!(until_closed(&a).await, 0, "its idle connections are closed");

    // A name that resolves to nothing keeps its last addresses.
    std::fs::remove_file(&hosts).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sequence(&url, 4).await.iter().all(|w| w == "b"));
}

#[tokio::test]
async fn localhost_is_resolved_by_the_system_into_its_addresses() {
    // A backend on every loopback address `localhost` may stand for here.
    let a = Backend::start_at("v4", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = a.addr.port();
    let v6 = Backend::start_at(
        "v6",
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    )
    .await
    .ok();
    let gw = weir(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[upstreams.pets]
targets = [{{ url = "http://localhost:{port}" }}]
resolve = "100ms"
retries = {{ attempts = 0 }}

[[routes]]
key = "ANY /pets/{{proxy+}}"
integration = {{ type = "http", upstream = "pets", path = "/{{proxy+}}" }}
"#
    ));
    let url = gw.url("/pets/x");
    let client = Client::default();
    let started = Instant::now();
    let metrics = loop {
        let metrics = client.get(&gw.admin_url("/metrics")).await.text();
        if metrics.contains(&format!("target=\"http://127.0.0.1:{port}\"")) {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "localhost was not resolved into 127.0.0.1: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seen = sequence(&url, 10).await;
    let to_v6 = seen.iter().filter(|w| *w == "v6").count();
    // Both addresses are targets when the system resolves localhost to both.
    let resolves_v6 = metrics.contains(&format!("target=\"http://[::1]:{port}\""));
    assert_eq!(to_v6 > 0, resolves_v6 && v6.is_some(), "{seen:?} {metrics}");
    assert_eq!(
        Client::default().get(&url).await.json()["host"],
        format!("localhost:{port}")
    );
}

#[tokio::test]
async fn a_target_removed_by_a_reload_finishes_its_requests_and_closes_its_connections() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = |target: &Backend| {
        format!(
            r#"
[reload]
watch = false

[upstreams.pets]
targets = [{{ url = "{}" }}]

[[routes]]
key = "ANY /pets/{{proxy+}}"
integration = {{ type = "http", upstream = "pets", path = "/{{proxy+}}" }}
"#,
            target.base()
        )
    };
    let gw = weir(&config(&a));
    // A few keep-alive connections to `a`, idle once these are answered.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/pets/x?ms=100");
            tokio::spawn(async move { Client::default().get(&url).await })
        })
        .collect();
    for w in warm {
        assert_eq!(w.await.unwrap().status, 200);
    }
    assert!(a.open_connections() > 0);
    let slow = tokio::spawn({
        let url = gw.url("/pets/x?ms=1500");
        async move { Client::default().get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.edit_config_and_hup(&a.base(), &b.base());
    gw.wait_for_logs("config reloaded", 1).await;

    let hits = a.hits();
    assert!(
        sequence(&gw.url("/pets/x"), 10)
            .await
            .iter()
            .all(|w| w == "b")
    );
    assert_eq!(a.hits(), hits, "new requests go to the new target only");
    assert!(!slow.is_finished(), "the slow request is still in flight");
    assert!(
        a.open_connections() >= 1,
        "the connection of the request in flight stays open"
    );
    let r = slow.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("x-backend")),
        (200, Some("a")),
        "the request in flight finishes on the removed target"
    );
    // Well within the 60 s idle timeout: closed because the target left.
    assert_eq!(
        until_closed(&a).await,
        0,
        "the removed target's connections close"
    );
    assert!(b.open_connections() > 0, "the serving target's stay open");
}
