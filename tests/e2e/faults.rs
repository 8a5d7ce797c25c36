//! Upstream faults and hostile or broken client traffic: each gets the documented
//! status in time, nothing reaches an unintended upstream, and no descriptors leak.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_tests::faulty::Faulty;
use weir_tests::{Client, Upstream, raw_exchange};

use crate::weir;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn upstream_faults_are_502_or_504_in_time_and_leak_nothing() {
    let bad = Faulty::start().await;
    let gw = weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
[[routes]]
key = "GET /{{kind}}"
integration = {{ type = "http", url = "{base}/{{kind}}" }}
timeout = "500ms"
# The concurrent part: nothing there stalls, so a long timeout only keeps a loaded
# machine from turning a slow answer into a 504.
[[routes]]
key = "GET /many/{{kind}}"
integration = {{ type = "http", url = "{base}/{{kind}}" }}
timeout = "10s"
"#,
        base = bad.base()
    ));
    let c = Client::default();
    let expect = [
        ("reset", 502),
        ("drip", 504),
        ("malformed", 502),
        ("hang", 504),
    ];
    for (kind, status) in expect {
        let started = Instant::now();
        let r = c.get(&gw.url(&format!("/{kind}"))).await;
        assert_eq!(r.status, status, "{kind}: {}", r.text());
        assert!(r.json()["message"].is_string());
        // The route's timeout is 500 ms; allow a loaded machine plenty on top.
        assert!(started.elapsed() < Duration::from_secs(3), "{kind}");
    }
    // An upstream that closes each keep-alive connection after answering: pooled
    // connections it closed are not reused, so every request succeeds.
    for _ in 0..20 {
        let r = c.get(&gw.url("/close")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Many faulty exchanges later, descriptors are back where they were: measured with
    // the test's own client connections closed.
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.pid();
    let before = open_fds(pid);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let gw_url = gw.url("");
        tasks.push(tokio::spawn(async move {
            let c = Client::default();
            for i in 0..50 {
                let kind = ["reset", "malformed", "close", "ok"][(t + i) % 4];
                let r = c.get(&format!("{gw_url}/many/{kind}")).await;
                // A GET that lands on a pooled connection `close` had just closed is
                // sent again, so only the broken answers are 502.
                let want = if ["reset", "malformed"].contains(&kind) {
                    502
                } else {
                    200
                };
                assert_eq!(r.status.as_u16(), want, "{kind}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = open_fds(pid);
    // Idle pooled upstream connections may remain (at most one per client task).
    assert!(
        after <= before + 8,
        "descriptors grew from {before} to {after}"
    );
}

#[tokio::test]
async fn broken_and_hostile_requests_get_clean_errors() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
header_read_timeout = "1s"
body_read_timeout = "1s"
[[routes]]
key = "ANY /files/{{path+}}"
integration = {{ type = "http", url = "{base}/files/{{path}}" }}
[[routes]]
key = "POST /echo"
integration = {{ type = "http", url = "{base}/echo" }}
"#,
        base = up.base()
    ));
    let wait = Duration::from_secs(3);
    let status = |raw: &str| raw.split_whitespace().nth(1).unwrap_or("none").to_owned();

    // Smuggling: conflicting Content-Length headers, and CL with TE.
    let r = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        wait,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");
    let r = raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /files/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        wait,
    )
    .await;
    assert!(["400", "200"].contains(&status(&r).as_str()), "{r}");
    // Whatever the answer, the smuggled request never reached the upstream.
    assert!(up.seen().iter().all(|s| !s.uri.contains("smuggled")));

    // Not HTTP, a bad method token, raw non-ASCII bytes in the target.
    assert_eq!(
        status(&raw_exchange(gw.addr, b"\x16\x03\x01hello\r\n\r\n", wait).await),
        "400"
    );
    let r = raw_exchange(gw.addr, b"G(T /files/a HTTP/1.1\r\nHost: x\r\n\r\n", wait).await;
    assert_eq!(status(&r), "400", "{r}");
    let r = raw_exchange(
        gw.addr,
        "GET /files/\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
        wait,
    )
    .await;
    assert_eq!(status(&r), "400", "{r}");

    // An oversized request line.
    let long = format!(
        "GET /files/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = raw_exchange(gw.addr, long.as_bytes(), wait).await;
    assert!(
        ["414", "431"].contains(&status(&r).as_str()),
        "{}",
        &r[..r.len().min(200)]
    );

    // Slow loris: a head that never ends is cut off at header_read_timeout.
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /files/a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow loris held the connection"
    );

    // A slow body upload is cut off at body_read_timeout with 408.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some")
        .await
        .unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let r = String::from_utf8_lossy(&out[..n]);
    assert_eq!(status(&r), "408", "{r}");
    assert!(r.contains(r#"{"message":"Request Timeout"}"#), "{r}");
}

#[tokio::test]
async fn path_tricks_route_deterministically() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[[routes]]
key = "GET /files/{{path+}}"
integration = {{ type = "http", url = "{base}/files/{{path}}" }}
[[routes]]
key = "GET /admin"
integration = {{ type = "mock", body = "admin" }}
"#,
        base = up.base()
    ));
    let wait = Duration::from_secs(3);
    let get =
        |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let status = |raw: &str| raw.split_whitespace().nth(1).unwrap_or("none").to_owned();
    // Dot segments, plain or encoded, are refused: never resolved into /admin.
    for target in [
        "/files/../admin",
        "/files/%2e%2e/admin",
        "/files/.%2E/admin",
        "/files/./a",
    ] {
        let r = raw_exchange(gw.addr, get(target).as_bytes(), wait).await;
        assert_eq!(status(&r), "400", "{target}: {r}");
    }
    // An encoded slash stays inside one segment and reaches the upstream as sent.
    let r = raw_exchange(gw.addr, get("/files/a%2fb").as_bytes(), wait).await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(up.seen().iter().any(|s| s.uri == "/files/a%2fb"));
    // Double slashes are not collapsed: `//admin` is not `/admin`.
    let r = raw_exchange(gw.addr, get("//admin").as_bytes(), wait).await;
    assert_eq!(status(&r), "404", "{r}");
    // Methods are case-sensitive.
    let r = raw_exchange(
        gw.addr,
        b"get /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert_eq!(status(&r), "404", "{r}");
    // Percent-encoded non-ASCII is a plain path.
    let r = raw_exchange(gw.addr, get("/files/caf%C3%A9").as_bytes(), wait).await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(up.seen().iter().all(|s| !s.uri.contains("admin")));
}

#[tokio::test]
async fn connections_past_the_limit_wait_in_the_backlog() {
    let gw = weir(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
max_connections = 3
[[routes]]
key = "GET /x"
integration = { type = "mock", body = "x" }
"#,
    );
    let req = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    // The fourth connects (backlog) but is not served while three are open.
    let mut fourth = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    fourth.write_all(req).await.unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "served past the connection limit");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn http2_rapid_resets_and_stream_floods_leave_others_served() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[[routes]]
key = "GET /slow/{{ms}}"
integration = {{ type = "http", url = "{base}/slow/{{ms}}" }}
[[routes]]
key = "GET /x"
integration = {{ type = "mock", body = "x" }}
"#,
        base = up.base()
    ));
    let h2 = |addr| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender
    };
    let req = |path: &str| {
        http::Request::builder()
            .uri(format!("http://x{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // Rapid reset: start requests and cancel each at once, thousands of times.
    let mut attacker = h2(gw.addr).await;
    for _ in 0..3000 {
        if attacker.ready().await.is_err() {
            break; // the gateway ended the abusive connection
        }
        let pending = attacker.send_request(req("/slow/50"));
        drop(pending);
    }
    // Stream flood: far more concurrent streams than the gateway allows at once.
    let mut flood = h2(gw.addr).await;
    let mut streams = Vec::new();
    for _ in 0..1000 {
        if flood.ready().await.is_err() {
            break;
        }
        streams.push(flood.send_request(req("/slow/20")));
    }
    // Meanwhile an ordinary client is served.
    let mut good = h2(gw.addr).await;
    for _ in 0..20 {
        good.ready().await.unwrap();
        let r = good.send_request(req("/x")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut served = 0;
    for s in streams {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(20), s).await {
            assert_eq!(r.status(), 200);
            served += 1;
        }
    }
    assert!(served > 0, "the flood's streams were all refused");
    assert_eq!(Client::default().get(&gw.url("/x")).await.status, 200);
}
