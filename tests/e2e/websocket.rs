//! WebSocket APIs: the handshake and `$connect`, route selection, route responses,
//! the `@connections` API, AWS's limits, and `$disconnect`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use weir_tests::artifacts::{COUNTING_AUTHORIZER, ECHO_MAPPER};
use weir_tests::ws::{self, Frame, Ws};
use weir_tests::{Client, Upstream, Weir};

use crate::{toml_path, weir};

fn ws_url(gw: &Weir, path: &str) -> String {
    format!("ws://{}{path}", gw.addr)
}

/// Waits until the upstream has seen a request for `path` with `connectionid: id`.
async fn wait_for_event(up: &Upstream, path: &str, id: &str) -> weir_tests::Seen {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(seen) = up
            .seen()
            .into_iter()
            .find(|s| s.uri == path && s.headers.get("connectionid").is_some_and(|v| v == id))
        {
            return seen;
        }
        assert!(Instant::now() < deadline, "no {path} event for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A chat API whose routes all go to the echo upstream; `whoami` tells a client its
/// connection id.
fn chat(up: &Upstream, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[websocket.chat]
path = "/chat"
{extra}

[[websocket.chat.routes]]
key = "$connect"
integration = {{ type = "http", url = "{base}/connect" }}
[[websocket.chat.routes]]
key = "$disconnect"
integration = {{ type = "http", url = "{base}/disconnect" }}
[[websocket.chat.routes]]
key = "$default"
integration = {{ type = "http", url = "{base}/default" }}
route_response = true
[[websocket.chat.routes]]
key = "whoami"
integration = {{ type = "http", url = "{base}/whoami" }}
route_response = true
[[websocket.chat.routes]]
key = "oneway"
integration = {{ type = "http", url = "{base}/oneway" }}
"#,
        base = up.base(),
    )
}

/// Connects and learns the connection id through the `whoami` route.
async fn join(gw: &Weir) -> (Ws, String) {
    join_with(gw, &[]).await
}

/// [`join`] with extra handshake headers.
async fn join_with(gw: &Weir, headers: &[(&str, &str)]) -> (Ws, String) {
    let mut c = ws::connect(&ws_url(gw, "/chat"), headers)
        .await
        .expect("connects");
    let reply = c.ask(r#"{"action":"whoami"}"#).await;
    let id = reply["headers"]["connectionid"]
        .as_str()
        .unwrap()
        .to_owned();
    (c, id)
}

#[tokio::test]
async fn messages_are_routed_by_selection_expression_and_answered() {
    let up = Upstream::start().await;
    let gw = weir(&chat(&up, ""));
    let mut c = ws::connect(&ws_url(&gw, "/chat?room=7"), &[("x-client", "t1")])
        .await
        .expect("connects");

    // A custom route, two-way: the backend's answer comes back.
    let reply = c.ask(r#"{"action":"whoami","n":1}"#).await;
    assert_eq!(reply["path"], "/whoami");
    assert_eq!(reply["method"], "POST");
    assert_eq!(reply["body"], r#"{"action":"whoami","n":1}"#);
    let h = &reply["headers"];
    assert_eq!(h["eventtype"], "MESSAGE");
    assert_eq!(h["routekey"], "whoami");
    let id = h["connectionid"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(h["requestid"].as_str().unwrap().len(), 32);
    assert!(h["traceparent"].as_str().unwrap().starts_with("00-"));

    // `$connect` ran during the handshake with its headers and query string.
    let connect = wait_for_event(&up, "/connect?room=7", &id).await;
    assert_eq!(connect.headers["eventtype"], "CONNECT");
    assert_eq!(connect.headers["x-client"], "t1");
    assert!(connect.headers.get("sec-websocket-key").is_none());

    // Not JSON, no action, an action with no route, a non-string action: `$default`.
    for msg in [
        "plain text",
        r#"{"other":1}"#,
        r#"{"action":"nope"}"#,
        r#"{"action":{"a":1}}"#,
    ] {
        let reply = c.ask(msg).await;
        assert_eq!(reply["path"], "/default", "{msg}");
        assert_eq!(reply["headers"]["routekey"], "$default");
        assert_eq!(reply["body"], msg);
    }

    // A one-way route sends nothing back; the next reply is for the next message.
    c.text(r#"{"action":"oneway","seq":1}"#).await;
    let reply = c.ask(r#"{"action":"whoami","seq":2}"#).await;
    assert_eq!(reply["body"], r#"{"action":"whoami","seq":2}"#);
    let oneway = wait_for_event(&up, "/oneway", &id).await;
    assert_eq!(
        oneway.body,
        Bytes::from_static(br#"{"action":"oneway","seq":1}"#)
    );

    // A binary message goes to the backend as it is.
    c.raw(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    match c.next().await {
        Frame::Text(t) => assert!(t.contains("/default"), "{t}"),
        other => panic!("{other:?}"),
    }

    // `$disconnect` after the client closes.
    c.0.close(None).await.unwrap();
    let disconnect = wait_for_event(&up, "/disconnect", &id).await;
    assert_eq!(disconnect.headers["eventtype"], "DISCONNECT");
    assert_eq!(disconnect.headers["routekey"], "$disconnect");

    // A plain request to the API's path is told to upgrade.
    let plain = Client::default().get(&gw.url("/chat")).await;
    assert_eq!(plain.status, 426);
    assert_eq!(plain.json()["message"], "Upgrade Required");
    // The access log has the handshake and the events, with AWS's names.
    let logs = gw.logs();
    assert!(
        logs.contains("eventType=\"CONNECT\"") || logs.contains("eventType=CONNECT"),
        "{logs}"
    );
    assert!(logs.contains(&id));
}

#[tokio::test]
async fn nested_and_template_selection_without_default() {
    let gw = weir(
        r#"
[websocket.game]
path = "/game"
route_selection = "${request.body.meta.service}/${request.body.action}"
[[websocket.game.routes]]
key = "rooms/join"
integration = { type = "mock", body = "joined" }
route_response = true
[[websocket.game.routes]]
key = "rooms/7"
integration = { type = "mock", body = "seven" }
route_response = true
"#,
    );
    let mut c = ws::connect(&ws_url(&gw, "/game"), &[])
        .await
        .expect("connects");
    c.text(r#"{"meta":{"service":"rooms"},"action":"join"}"#)
        .await;
    assert_eq!(c.next().await, Frame::Text("joined".into()));
    c.text(r#"{"meta":{"service":"rooms"},"action":7}"#).await;
    assert_eq!(c.next().await, Frame::Text("seven".into()));
    // Missing paths and no `$default`: an error frame, and the connection stays open.
    for msg in [
        r#"{"action":"join"}"#,
        r#"{"meta":{},"action":"join"}"#,
        "[]",
        "x",
    ] {
        let err = c.ask(msg).await;
        assert_eq!(err["message"], "Forbidden", "{msg}");
        assert_eq!(err["connectionId"].as_str().unwrap().len(), 16);
        assert!(err["requestId"].is_string());
    }
    c.text(r#"{"meta":{"service":"rooms"},"action":"join"}"#)
        .await;
    assert_eq!(c.next().await, Frame::Text("joined".into()));
}

#[tokio::test]
async fn connect_is_refused_by_backend_or_authorizer() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[plugins.auth]
file = {auth}
world = "authorizer"
[plugins.mark]
file = {mapper}
world = "mapper"

[websocket.denied]
path = "/denied"
[[websocket.denied.routes]]
key = "$connect"
integration = {{ type = "http", url = "{base}/status/403" }}

[websocket.unauthorized]
path = "/unauthorized"
[[websocket.unauthorized.routes]]
key = "$connect"
integration = {{ type = "http", url = "{base}/status/401" }}

[websocket.down]
path = "/down"
[[websocket.down.routes]]
key = "$connect"
integration = {{ type = "http", url = "http://127.0.0.1:{closed}/" }}

[websocket.secure]
path = "/secure"
[[websocket.secure.routes]]
key = "$connect"
integration = {{ type = "mock" }}
authorizer = {{ plugin = "auth", identity_source = ["$request.querystring.token"] }}
[[websocket.secure.routes]]
key = "$default"
integration = {{ type = "http", url = "{base}/default" }}
request_mapping = "mark"
route_response = true
"#,
        auth = toml_path(COUNTING_AUTHORIZER),
        mapper = toml_path(ECHO_MAPPER),
        base = up.base(),
        closed = weir_tests::closed_port(),
    ));
    let refused = |path: &str| {
        let url = ws_url(&gw, path);
        async move { ws::connect(&url, &[]).await.err().expect("refused") }
    };
    let r = refused("/denied").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, r#"{"message":"Forbidden"}"#)
    );
    assert_eq!(refused("/unauthorized").await.status, 401);
    assert_eq!(refused("/down").await.status, 502);
    // The authorizer reads the query string; no token, a bad one, a forbidden one.
    assert_eq!(refused("/secure").await.status, 401);
    assert_eq!(refused("/secure?token=nope").await.status, 401);
    assert_eq!(refused("/secure?token=forbidden").await.status, 403);
    // Allowed: the principal reaches later events, and the mapper sees each message.
    let mut c = ws::connect(&ws_url(&gw, "/secure?token=let-me-in"), &[])
        .await
        .expect("connects");
    let reply = c.ask("hello").await;
    assert_eq!(reply["body"], "hello");
    assert_eq!(reply["headers"]["principalid"], "tester");
    assert_eq!(reply["headers"]["x-mapped"], "echo");
    assert_eq!(reply["headers"]["x-route-key"], "$default");
    assert_eq!(reply["headers"]["x-principal"], "tester");
    // No connection was made for the refused handshakes: only the allowed one reached
    // the backend.
    assert_eq!(up.seen().iter().filter(|s| s.uri == "/default").count(), 1);
}

#[tokio::test]
async fn connections_api_posts_describes_and_disconnects() {
    let up = Upstream::start().await;
    let gw = weir(&chat(
        &up,
        "limits = { max_message = \"4KiB\", max_frame = \"4KiB\" }",
    ));
    let (mut c, id) = join(&gw).await;
    let http = Client::default();
    let conn_url = gw.admin_url(&format!("/@connections/{id}"));

    let r = http.send("POST", &conn_url, &[], "pushed").await;
    assert_eq!(r.status, 200);
    assert_eq!(c.next().await, Frame::Text("pushed".into()));
    let r = http
        .send(
            "POST",
            &conn_url,
            &[("content-type", "application/octet-stream")],
            vec![1u8, 2, 255],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.next().await, Frame::Binary(vec![1, 2, 255]));
    let r = http.send("POST", &conn_url, &[], vec![b'x'; 5000]).await;
    assert_eq!(r.status, 413);

    let info = http.get(&conn_url).await;
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert!(info["identity"]["userAgent"].is_null() || info["identity"]["userAgent"].is_string());
    let connected = humantime::parse_rfc3339(info["connectedAt"].as_str().unwrap()).unwrap();
    let active = humantime::parse_rfc3339(info["lastActiveAt"].as_str().unwrap()).unwrap();
    assert!(active >= connected);

    // DELETE closes the connection (normal closure) and runs `$disconnect`.
    assert_eq!(http.send("DELETE", &conn_url, &[], "").await.status, 204);
    assert!(matches!(c.next().await, Frame::Close(1000, _)));
    wait_for_event(&up, "/disconnect", &id).await;
    for method in ["GET", "POST", "DELETE"] {
        let r = http.send(method, &conn_url, &[], "late").await;
        assert_eq!(r.status, 410, "{method}");
        assert_eq!(r.json()["message"], "Gone");
    }
    let unknown = http
        .get(&gw.admin_url("/@connections/0000000000000000"))
        .await;
    assert_eq!(unknown.status, 410);
}

#[tokio::test]
async fn a_client_that_stops_reading_fills_its_queue() {
    let up = Upstream::start().await;
    let gw = weir(&chat(
        &up,
        "limits = { max_message = \"64KiB\", max_frame = \"64KiB\", outbound_queue = 2 }",
    ));
    // The client never reads again: the socket buffers fill, then the queue.
    let (_c, id) = join(&gw).await;
    let http = Client::default();
    let conn_url = gw.admin_url(&format!("/@connections/{id}"));
    let chunk = vec![b'y'; 64 * 1024];
    let mut accepted = 0;
    let mut full = false;
    for _ in 0..2000 {
        let r = http.send("POST", &conn_url, &[], chunk.clone()).await;
        match r.status.as_u16() {
            200 => accepted += 1,
            429 => {
                full = true;
                assert_eq!(r.json()["message"], "Too Many Requests");
                break;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(full, "no 429 after {accepted} posts");
    // The queue's two, and whatever the socket buffers took before it filled (none
    // when the writer had no time to run).
    assert!(accepted >= 2, "{accepted}");
}

#[tokio::test]
async fn idle_and_long_connections_are_closed_with_1001() {
    let up = Upstream::start().await;
    let gw = weir(&chat(
        &up,
        "limits = { idle_timeout = \"1s\", max_duration = \"3s\" }",
    ));
    // Silent: closed at the idle timeout.
    let (mut idle, idle_id) = join(&gw).await;
    let started = Instant::now();
    match idle.next().await {
        Frame::Close(1001, reason) => assert_eq!(reason, "Idle timeout"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    wait_for_event(&up, "/disconnect", &idle_id).await;

    // Busy (a ping every 300 ms keeps it from idling): closed at the duration limit.
    let (mut busy, busy_id) = join(&gw).await;
    let started = Instant::now();
    let frame = loop {
        busy.raw(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        if let Some(f) = busy.next_within(Duration::from_millis(300)).await {
            break f;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
    };
    match frame {
        Frame::Close(1001, reason) => assert_eq!(reason, "Maximum connection duration"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    wait_for_event(&up, "/disconnect", &busy_id).await;
}

#[tokio::test]
async fn oversize_frames_and_messages_close_with_1009() {
    let up = Upstream::start().await;
    let gw = weir(&chat(
        &up,
        "limits = { max_message = \"4KiB\", max_frame = \"1KiB\" }",
    ));

    // One frame over the frame limit.
    let (mut c, id) = join(&gw).await;
    let _ = c.raw(Message::text("z".repeat(2000))).await;
    assert!(matches!(c.next().await, Frame::Close(1009, _)));
    wait_for_event(&up, "/disconnect", &id).await;

    // Frames within the limit that add up to more than a message may hold.
    let (mut c, id) = join(&gw).await;
    let part = |op, last| Message::Frame(RawFrame::message(vec![b'q'; 1000], op, last));
    let _ = c.raw(part(OpCode::Data(Data::Text), false)).await;
    for _ in 0..4 {
        let _ = c.raw(part(OpCode::Data(Data::Continue), false)).await;
    }
    let _ = c.raw(part(OpCode::Data(Data::Continue), true)).await;
    assert!(matches!(c.next().await, Frame::Close(1009, _)));
    wait_for_event(&up, "/disconnect", &id).await;

    // Within both limits, a fragmented message is fine.
    let (mut c, _) = join(&gw).await;
    let _ = c.raw(part(OpCode::Data(Data::Text), false)).await;
    let _ = c.raw(part(OpCode::Data(Data::Continue), true)).await;
    let reply = c.json().await;
    assert_eq!(reply["body"].as_str().unwrap().len(), 2000);
}

#[tokio::test]
async fn new_connections_are_rate_limited_per_api_and_by_the_account() {
    let gw = weir(
        r#"
[admin]
listen = "127.0.0.1:0"
[throttle]
rate = 1
burst = 5

[websocket.a]
path = "/a"
limits = { connect_rate = 1, connect_burst = 3 }
[[websocket.a.routes]]
key = "$default"
integration = { type = "mock" }

[websocket.b]
path = "/b"
[[websocket.b.routes]]
key = "$default"
integration = { type = "mock" }

[[routes]]
key = "GET /http"
integration = { type = "mock" }
"#,
    );
    let mut open = Vec::new();
    let mut refused = Vec::new();
    // Six attempts on `a`: its own bucket (3) refuses three, which take no account token.
    for _ in 0..6 {
        match ws::connect(&ws_url(&gw, "/a"), &[]).await {
            Ok(c) => open.push(c),
            Err(r) => refused.push(r),
        }
    }
    assert_eq!((open.len(), refused.len()), (3, 3));
    for r in &refused {
        assert_eq!(r.status, 429);
        assert_eq!(r.body, r#"{"message":"Too Many Requests"}"#);
        assert!(r.retry_after.is_some());
    }
    // The account bucket (5) had three taken; `b` gets two more, then 429s, and so does
    // plain HTTP traffic: one account for both.
    let mut b_open = 0;
    let mut b_refused = 0;
    for _ in 0..4 {
        match ws::connect(&ws_url(&gw, "/b"), &[]).await {
            Ok(c) => {
                b_open += 1;
                open.push(c);
            }
            Err(r) => {
                assert_eq!(r.status, 429);
                b_refused += 1;
            }
        }
    }
    assert_eq!((b_open, b_refused), (2, 2));
    let http = Client::default();
    assert_eq!(http.get(&gw.url("/http")).await.status, 429);
    // A connection counts as open once its upgraded task runs, which can be just after
    // the client has its 101: read the metrics until it is counted (or 5 s pass).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let metrics = http.get(&gw.admin_url("/metrics")).await.text();
        if metrics.contains("weir_websocket_connections_open 5")
            || std::time::Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains(r#"weir_throttled_total{level="websocket connect"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_websocket_connections_open 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_closes_connections_and_runs_disconnect() {
    let up = Upstream::start().await;
    let mut gw = weir(&chat(&up, ""));
    let (mut c, id) = join(&gw).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let status = gw.terminate(Duration::from_secs(10));
        (gw, status)
    });
    assert!(matches!(c.next().await, Frame::Close(1001, _)));
    wait_for_event(&up, "/disconnect", &id).await;
    let (_gw, status) = stopped.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// A client that sends messages and closes at once: the message in flight is not
/// cancelled, those read ahead of it are not dropped, and `$disconnect` comes last.
#[tokio::test]
async fn messages_sent_before_a_close_still_reach_the_integration() {
    let up = Upstream::start().await;
    let slow = format!(
        r#"
[[websocket.chat.routes]]
key = "slow"
integration = {{ type = "http", url = "{base}/slow/300" }}
"#,
        base = up.base()
    );
    let gw = weir(&(chat(&up, "") + &slow));
    let (mut c, id) = join(&gw).await;
    c.text(r#"{"action":"slow"}"#).await;
    for i in 0..3 {
        c.text(&format!(r#"{{"action":"oneway","i":{i}}}"#)).await;
    }
    c.0.close(None).await.expect("closing");
    wait_for_event(&up, "/disconnect", &id).await;
    let events: Vec<String> = up
        .seen()
        .into_iter()
        .filter(|s| {
            s.headers
                .get("connectionid")
                .is_some_and(|v| v == id.as_str())
        })
        .filter(|s| !["/connect", "/whoami"].contains(&s.uri.as_str()))
        .map(|s| format!("{} {}", s.uri, String::from_utf8_lossy(&s.body)))
        .collect();
    assert_eq!(
        events,
        [
            r#"/slow/300 {"action":"slow"}"#,
            r#"/oneway {"action":"oneway","i":0}"#,
            r#"/oneway {"action":"oneway","i":1}"#,
            r#"/oneway {"action":"oneway","i":2}"#,
            "/disconnect ",
        ]
    );
}

/// Opens a raw TCP connection and completes a WebSocket handshake by hand, so the test
/// can send frames no client library would.
async fn raw_handshake(gw: &Weir, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "handshake cut short");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

/// Reads until the server closes; returns the close code of the first close frame.
async fn raw_close_code(s: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(ws::FRAME_WAIT, s.read_to_end(&mut out)).await;
    // Server frames are unmasked: 0x88, length, then the code.
    let at = out.iter().position(|b| *b == 0x88)?;
    let code = out.get(at + 2..at + 4)?;
    Some(u16::from_be_bytes([code[0], code[1]]))
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_ping_floods_are_survived() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let gw = weir(&chat(&up, ""));

    // An unmasked client frame.
    let mut s = raw_handshake(&gw, "/chat").await;
    s.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(raw_close_code(&mut s).await, Some(1002));

    // A reserved opcode (masked, empty).
    let mut s = raw_handshake(&gw, "/chat").await;
    s.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
    assert_eq!(raw_close_code(&mut s).await, Some(1002));

    // A fragmented control frame (FIN clear on a ping).
    let mut s = raw_handshake(&gw, "/chat").await;
    s.write_all(&[0x09, 0x80, 1, 2, 3, 4]).await.unwrap();
    assert_eq!(raw_close_code(&mut s).await, Some(1002));

    // 5,000 pings in a burst: the connection stays usable.
    let (mut c, _) = join(&gw).await;
    for _ in 0..5000 {
        c.raw(Message::Ping(Bytes::from_static(b"flood")))
            .await
            .unwrap();
    }
    let reply = c.ask(r#"{"action":"whoami"}"#).await;
    assert_eq!(reply["path"], "/whoami");
}

#[tokio::test]
async fn connections_api_needs_the_admin_token_when_one_is_set() {
    let up = Upstream::start().await;
    let config = chat(&up, "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"a-long-admin-token-for-tests\"\n",
    );
    let gw = weir(&config);
    let (mut c, id) = join(&gw).await;
    let http = Client::default();
    let url = gw.admin_url(&format!("/@connections/{id}"));
    assert_eq!(http.send("POST", &url, &[], "x").await.status, 401);
    let wrong = [("authorization", "Bearer wrong")];
    assert_eq!(http.send("POST", &url, &wrong, "x").await.status, 403);
    assert_eq!(http.send("DELETE", &url, &wrong, "").await.status, 403);
    let right = [("authorization", "Bearer a-long-admin-token-for-tests")];
    assert_eq!(http.send("POST", &url, &right, "hello").await.status, 200);
    assert_eq!(c.next().await, Frame::Text("hello".into()));
    assert_eq!(http.send("GET", &url, &right, "").await.status, 200);
}

#[tokio::test]
async fn the_connect_backend_chooses_a_subprotocol_the_client_offered() {
    let up = Upstream::start().await;
    let gw = weir(&chat(&up, ""));
    let offer = ("sec-websocket-protocol", "graphql-ws, graphql-transport-ws");

    let (mut c, chosen) = ws::connect_with_protocol(
        &ws_url(&gw, "/chat"),
        &[offer, ("x-choose-protocol", "graphql-transport-ws")],
    )
    .await
    .expect("connects");
    assert_eq!(chosen.as_deref(), Some("graphql-transport-ws"));
    let reply = c.ask(r#"{"action":"whoami"}"#).await;
    let id = reply["headers"]["connectionid"].as_str().unwrap();
    let connect = wait_for_event(&up, "/connect", id).await;
    assert_eq!(
        connect.headers["sec-websocket-protocol"], "graphql-ws, graphql-transport-ws",
        "$connect saw the offer"
    );

    // No choice by the backend: none in the 101.
    let (_, chosen) = ws::connect_with_protocol(&ws_url(&gw, "/chat"), &[])
        .await
        .expect("connects");
    assert_eq!(chosen, None);

    // A protocol the client did not offer is the backend's fault: no connection.
    let refused = ws::connect(
        &ws_url(&gw, "/chat"),
        &[offer, ("x-choose-protocol", "something-else")],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(refused.status, 502, "{refused:?}");
}

#[tokio::test]
async fn events_forward_the_client_and_continue_its_trace_as_http_requests_do() {
    let up = Upstream::start().await;
    let gw = weir(&chat(&up, ""));
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = [("x-forwarded-for", "203.0.113.9"), ("traceparent", parent)];
    let (mut c, id) = join_with(&gw, &headers).await;
    let reply = c.ask(r#"{"action":"whoami"}"#).await;
    let connect = wait_for_event(&up, "/connect", &id).await;
    // The handshake and every message: the client's chain with the client appended,
    // one trace (the client's), a new parent per event, as for an HTTP request.
    let message = &reply["headers"];
    for (what, xff, tp) in [
        (
            "$connect",
            connect.headers["x-forwarded-for"].to_str().unwrap(),
            connect.headers["traceparent"].to_str().unwrap(),
        ),
        (
            "message",
            message["x-forwarded-for"].as_str().unwrap(),
            message["traceparent"].as_str().unwrap(),
        ),
    ] {
        assert_eq!(xff, "203.0.113.9, 127.0.0.1", "{what}");
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{what}: {tp}"
        );
        assert!(!tp.contains("b7ad6b7169203331"), "{what}: {tp}");
        assert_eq!(message["x-forwarded-proto"], "http", "{what}");
    }
}
