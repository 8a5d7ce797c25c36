//! Safe to expose: what one hostile client, upstream or plugin could do to the gateway,
//! each bounded (docs/security.md has the bounds and their defaults).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_tests::artifacts::{ECHO_MAPPER, HOSTILE, PARAM_MAPPING};
use weir_tests::faulty::Faulty;
use weir_tests::{Client, TestCa, Upstream};

use crate::{toml_path, weir};

/// Reads until the peer closes (or `wait` passes); whether it closed, and what it sent.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed_at_the_head_deadline() {
    let ca = TestCa::new();
    let routes = r#"
[[routes]]
key = "GET /x"
integration = { type = "mock", body = "x" }
"#;
    let plain = weir(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n{routes}"
    ));
    let tls = weir(&format!(
        "{}\nheader_read_timeout = \"1s\"\n{routes}",
        crate::tls::tls_server(&ca)
    ));

    // Not a byte after accept, on the plain and on the TLS listener (no handshake).
    for gw in [&plain, &tls] {
        let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (closed, _) = closed_within(&mut silent, Duration::from_secs(10)).await;
        assert!(closed, "a silent connection to {} stayed open", gw.scheme);
    }

    // A head that trickles in a byte at a time never completes in time.
    let mut slow = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for b in b"GET /x HTTP/1.1\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
    }
    let (closed, got) = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(cut || closed, "a trickled head was waited for");
    assert!(
        !String::from_utf8_lossy(&got).contains(" 200 "),
        "a trickled head was served"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the head took {:?}",
        started.elapsed()
    );

    // A keep-alive connection that goes quiet after its answer is closed too.
    let mut idle = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
    idle.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let (closed, _) = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(closed, "an idle keep-alive connection stayed open");

    // A client that keeps sending requests is served throughout.
    let client = Client::default();
    for _ in 0..4 {
        assert_eq!(client.get(&plain.url("/x")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// A masked client frame: FIN + `opcode`, `payload` (at most 125 bytes).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A raw WebSocket handshake on `path`; the stream after the `101`.
async fn ws_handshake(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "handshake cut short");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn a_ping_flood_that_never_reads_is_bounded_and_closed() {
    let gw = weir(
        r#"
[admin]
listen = "127.0.0.1:0"
[websocket.chat]
path = "/chat"
limits = { send_timeout = "2s" }
[[websocket.chat.routes]]
key = "$default"
integration = { type = "mock", body = "x" }
"#,
    );
    let before = rss_kib(gw.pid());
    let mut ws = ws_handshake(gw.addr, "/chat").await;
    // The client reads nothing: every pong the gateway owes it has nowhere to go.
    let batch: Vec<u8> = (0..512)
        .flat_map(|_| client_frame(0x9, &[7; 125]))
        .collect();
    let started = Instant::now();
    let mut sent = 0usize;
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(Duration::from_millis(200), ws.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => break,
            Err(_) => {}
        }
        peak = peak.max(rss_kib(gw.pid()));
    }
    assert!(sent > 1 << 20, "the flood never got going ({sent} bytes)");
    // Bounded: a few MiB of socket buffers and one message, not a queue of pongs.
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} KiB to {peak} KiB under a ping flood of {sent} bytes"
    );
    // The connection was closed for reading nothing (the write side failed or EOF).
    let (closed, _) = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert!(closed, "a client that reads nothing was kept");
    let metrics = Client::default()
        .get(&gw.admin_url("/metrics"))
        .await
        .text();
    assert!(
        metrics.contains(r#"weir_websocket_connections_closed_total{reason="send_timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn websocket_closes_say_why_invalid_utf8_and_dropped_clients() {
    let gw = weir(
        r#"
[admin]
listen = "127.0.0.1:0"
[websocket.chat]
path = "/chat"
[[websocket.chat.routes]]
key = "$default"
integration = { type = "mock", body = "x" }
"#,
    );
    // A text frame that is not UTF-8: close 1007.
    let mut ws = ws_handshake(gw.addr, "/chat").await;
    ws.write_all(&client_frame(0x1, &[0xff, 0xfe, 0x41]))
        .await
        .unwrap();
    let (_, got) = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert!(got.len() >= 4, "no close frame: {got:?}");
    assert_eq!(got[0], 0x88, "not a close frame: {got:?}");
    assert_eq!(u16::from_be_bytes([got[2], got[3]]), 1007, "{got:?}");

    // A client that drops its TCP connection is `dropped`, not a protocol error.
    let ws = ws_handshake(gw.addr, "/chat").await;
    drop(ws);
    let client = Client::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = client.get(&gw.admin_url("/metrics")).await.text();
        if m.contains(r#"weir_websocket_connections_closed_total{reason="dropped"} 1"#) {
            assert!(
                m.contains(r#"weir_websocket_connections_closed_total{reason="protocol_error"} 1"#),
                "only the invalid UTF-8 is a protocol error: {m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn contradictory_or_unasked_upstream_framing_is_502_and_never_desyncs_the_client() {
    let faulty = Faulty::start().await;
    let gw = weir(&format!(
        r#"
[[routes]]
key = "GET /{{kind}}"
integration = {{ type = "http", url = "{base}/{{kind}}" }}
"#,
        base = faulty.base()
    ));
    // One keep-alive connection: the bad answer, then a good one on the same connection.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for (path, want) in [
        ("/both-lengths", "HTTP/1.1 502"),
        ("/ok", "HTTP/1.1 200"),
        ("/switch", "HTTP/1.1 502"),
        ("/ok", "HTTP/1.1 200"),
    ] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "{path}: cut short");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with(&want.to_lowercase()), "{path}: {head}");
        assert!(!head.contains("transfer-encoding"), "{path}: {head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse().unwrap())
            .expect("a length");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        if path == "/ok" {
            assert_eq!(body, b"ok", "the connection is out of step");
        }
    }
}

fn sleeper_config(up: &Upstream, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[plugins.hostile]
file = {hostile}
world = "mapper"
concurrency = 4
{extra}
[plugins.echo]
file = {echo}
world = "mapper"
[[routes]]
key = "GET /in/{{kind}}"
integration = {{ type = "http", url = "{base}/in/{{kind}}" }}
request_mapping = "hostile"
[[routes]]
key = "GET /good"
integration = {{ type = "http", url = "{base}/good" }}
request_mapping = "echo"
"#,
        hostile = toml_path(HOSTILE),
        echo = toml_path(ECHO_MAPPER),
        base = up.base(),
    )
}

#[tokio::test]
async fn a_sleeping_plugin_meets_its_deadline_and_cannot_take_the_pool() {
    let up = Upstream::start().await;
    let gw = weir(&sleeper_config(&up, ""));
    let client = Client::default();

    // One call that sleeps 5 s in a host call ends at its 100 ms deadline.
    let started = Instant::now();
    let r = client.get(&gw.url("/in/sleep")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a 100 ms deadline took {:?}",
        started.elapsed()
    );

    // Sixty at once: four run (concurrency = 4), the rest wait for a slot within their
    // deadline and fail busy; another plugin on another route is served meanwhile.
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let (client, url) = (client.clone(), gw.url("/in/sleep"));
            tokio::spawn(async move { client.get(&url).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let good = client.get(&gw.url("/good")).await;
    assert_eq!(good.status, 200, "{}", good.text());
    for f in flood {
        assert_eq!(f.await.unwrap(), 500);
    }
    let m = client.get(&gw.admin_url("/metrics")).await.text();
    let busy = m
        .lines()
        .find(|l| l.starts_with(r#"weir_plugin_calls_total{plugin="hostile",outcome="busy"}"#))
        .unwrap_or_else(|| panic!("{m}"));
    assert!(!busy.ends_with(" 0"), "{busy}");
    assert!(up.seen().iter().all(|s| !s.uri.contains("sleep")));
}

#[tokio::test]
async fn plugin_files_are_read_with_care_and_a_stuck_load_leaves_the_admin_api_answering() {
    let dir = weir_tests::test_dir();
    let config = dir.join("weir.toml");
    let bin = env!("CARGO_BIN_EXE_weir");
    let validate = |plugin_table: &str| {
        std::fs::write(
            &config,
            format!(
                "{plugin_table}\n[[routes]]\nkey = \"GET /\"\nintegration = {{ type = \"mock\" }}\nrequest_mapping = \"p\"\n"
            ),
        )
        .unwrap();
        let started = Instant::now();
        let out = std::process::Command::new(bin)
            .arg("validate")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{plugin_table} validated");
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    };
    // A FIFO (nobody writes), /dev/zero, a component over max_plugin_size.
    let fifo = dir.join("fifo.wasm");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (file, extra, want) in [
        (fifo.to_str().unwrap(), "", "not a regular file"),
        ("/dev/zero", "", "not a regular file"),
        (
            HOSTILE,
            "[limits]\nmax_plugin_size = \"64KiB\"",
            "larger than limits.max_plugin_size",
        ),
    ] {
        let (stderr, took) = validate(&format!(
            "{extra}\n[plugins.p]\nfile = {}\nworld = \"mapper\"",
            toml_path(file)
        ));
        assert!(stderr.contains(want), "{file}: {stderr}");
        assert!(took < Duration::from_secs(30), "{file} took {took:?}");
    }
    // A component whose smoke test sleeps is refused at its deadline.
    let (stderr, _) = validate(&format!(
        "[plugins.p]\nfile = {}\nworld = \"mapper\"\nconfig = {{ sleep_always = true }}",
        toml_path(HOSTILE)
    ));
    assert!(stderr.contains("deadline"), "{stderr}");

    // A reload stuck on a smoke test that sleeps (deadline 3 s) does not hold up the
    // listing, health or readiness.
    let up = Upstream::start().await;
    let gw = weir_tests::Weir::start_with(
        bin,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}",
            sleeper_config(&up, "").replace(
                "[admin]\nlisten = \"127.0.0.1:0\"",
                "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"admin-token-admin-token\""
            )
        ),
        &[],
    );
    let stuck = sleeper_config(&up, "deadline = \"3s\"\nconfig = { sleep_always = true }").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"admin-token-admin-token\"",
    );
    std::fs::write(
        gw.dir.join("weir.toml"),
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[reload]\nwatch = false\n{stuck}"),
    )
    .unwrap();
    let client = Client::default();
    let auth = [("authorization", "Bearer admin-token-admin-token")];
    let reload = {
        let (client, url) = (client.clone(), gw.admin_url("/admin/reload"));
        tokio::spawn(async move { client.send("POST", &url, &auth, "").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let listing = client
        .send("GET", &gw.admin_url("/admin/plugins"), &auth, "")
        .await;
    assert_eq!(listing.status, 200, "{}", listing.text());
    assert_eq!(client.get(&gw.admin_url("/ready")).await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the listing waited {:?} for the stuck load",
        started.elapsed()
    );
    let reload = reload.await.unwrap();
    assert_eq!(reload.status, 422, "{}", reload.text());
    assert!(reload.text().contains("deadline"), "{}", reload.text());
    // An upload declared over the limit is refused before any of it is read.
    let head = format!(
        "PUT /admin/plugins/echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer admin-token-admin-token\r\ncontent-length: {}\r\n\r\n",
        65 << 20
    );
    let answer =
        weir_tests::raw_exchange(gw.admin.unwrap(), head.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn plugin_paths_with_dot_segments_and_hop_by_hop_headers_are_refused() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[plugins.hostile]
file = {hostile}
world = "mapper"
[plugins.params]
file = {params}
world = "mapper"
config = {{ request = {{ "overwrite:path" = "/v2/$request.querystring.x" }} }}
[[routes]]
key = "GET /in/{{kind}}"
integration = {{ type = "http", url = "{base}/in/{{kind}}" }}
request_mapping = "hostile"
[[routes]]
key = "GET /p"
integration = {{ type = "http", url = "{base}/p" }}
request_mapping = "params"
"#,
        hostile = toml_path(HOSTILE),
        params = toml_path(PARAM_MAPPING),
        base = up.base(),
    ));
    let client = Client::default();
    for path in [
        "/in/dot-dot",
        "/in/encoded-dot",
        "/p?x=..%2F..%2Fadmin%2Fsecret",
    ] {
        let r = client.get(&gw.url(path)).await;
        assert_eq!(r.status, 500, "{path}: {}", r.text());
    }
    // Connection headers in a plugin's answer are the gateway's business.
    let r = client.get(&gw.url("/in/hop-by-hop")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-kept"), Some("1"));
    for gone in ["x-drop", "upgrade", "keep-alive"] {
        assert!(r.header(gone).is_none(), "{gone} reached the client");
    }
    assert!(r.header("connection").is_none_or(|c| !c.contains("x-drop")));
    // The same mapper with a harmless value still works.
    let r = client.get(&gw.url("/p?x=pets")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/v2/pets");
    assert!(
        up.seen()
            .iter()
            .all(|s| !s.uri.contains("..") && !s.uri.contains("admin")),
        "{:?}",
        up.seen()
    );
}

#[tokio::test]
async fn plugin_logs_are_capped_escaped_and_json_indexing_is_bounded() {
    let up = Upstream::start().await;
    let gw = weir(&sleeper_config(
        &up,
        "deadline = \"5s\"\nmax_memory = \"256MiB\"",
    ));
    let client = Client::default();
    let r = client.get(&gw.url("/in/log-flood")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let logs = gw
        .wait_for_logs("log output of this call truncated", 1)
        .await;
    let lines = logs.lines().filter(|l| l.contains("xxxxxxxx")).count();
    assert!(
        (1..=100).contains(&lines),
        "{lines} log lines from one call"
    );

    let r = client.get(&gw.url("/in/log-forge")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let logs = gw.wait_for_logs("FORGED", 1).await;
    assert!(
        logs.lines().all(|l| !l.starts_with("2026-01-01T00:00:00Z")),
        "a plugin forged a log line:\n{logs}"
    );
    assert!(logs.contains(r"ok\n2026-01-01T00:00:00Z"), "{logs}");

    // A 20 MB document is over the index's bound: the call fails, memory stays put.
    let before = rss_kib(gw.pid());
    let r = client.get(&gw.url("/in/json-huge")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let after = rss_kib(gw.pid());
    assert!(
        after < before + 100 * 1024,
        "RSS went from {before} KiB to {after} KiB"
    );
    gw.wait_for_logs("16777216-byte limit", 1).await;
}

#[tokio::test]
async fn a_second_gateway_on_a_taken_address_refuses_to_start_before_compiling() {
    let first = weir(
        r#"
[[routes]]
key = "GET /x"
integration = { type = "mock", body = "first" }
"#,
    );
    let dir = weir_tests::test_dir();
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{}\"\n[plugins.p]\nfile = {}\nworld = \"mapper\"\n[[routes]]\nkey = \"GET /x\"\nintegration = {{ type = \"mock\", body = \"second\" }}\nrequest_mapping = \"p\"\n",
            first.addr,
            toml_path(HOSTILE)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second gateway started: {stderr}");
    assert!(stderr.contains("another process listens"), "{stderr}");
    assert!(
        !stderr.contains("plugin compiled"),
        "it compiled first: {stderr}"
    );
    // Every request still reaches the first.
    let client = Client::default();
    for _ in 0..10 {
        assert_eq!(client.get(&first.url("/x")).await.text(), "first");
    }
}
