//! Streamed request bodies: on streaming routes without a request mapper the client's
//! body reaches the upstream as it is sent, in bounded gateway memory, and a body past
//! `max_body` is cut off mid-stream (`413` to the client, an aborted request upstream).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_tests::backend::Backend;

use crate::weir;

/// `chunks` chunks of `size` bytes, `gap` apart, as a chunked body.
fn paced_body(
    chunks: usize,
    size: usize,
    gap: Duration,
) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![7u8; size]))),
            i + 1,
        ))
    });
    StreamBody::new(stream).boxed()
}

/// POSTs `body` to `url` and returns the status and the answer's JSON.
async fn post(
    url: &str,
    body: http_body_util::combinators::BoxBody<Bytes, Infallible>,
) -> (u16, serde_json::Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(url).body(body).unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn config(base: &str, max_body: &str) -> String {
    format!(
        r#"
[limits]
max_body = "{max_body}"

[upstreams.files]
targets = [{{ url = "{base}" }}]

[[routes]]
key = "POST /pool"
integration = {{ type = "http", upstream = "files", path = "/upload" }}
stream = true

[[routes]]
key = "POST /url"
integration = {{ type = "http", url = "{base}/upload" }}
stream = true

[[routes]]
key = "POST /buffered"
integration = {{ type = "http", upstream = "files", path = "/upload" }}
"#
    )
}

#[tokio::test]
async fn an_upload_reaches_the_upstream_as_it_is_sent() {
    let up = Backend::start("files").await;
    let gw = weir(&config(&up.base(), "10MiB"));
    // Six 64 KiB chunks 200 ms apart: the client takes a second to send them.
    for (path, streamed) in [("/pool", true), ("/url", true), ("/buffered", false)] {
        let (status, seen) = post(
            &gw.url(path),
            paced_body(6, 64 * 1024, Duration::from_millis(200)),
        )
        .await;
        assert_eq!(status, 200, "{path}: {seen}");
        assert_eq!(seen["bytes"], 6 * 64 * 1024, "{path}");
        let spread = seen["last_ms"].as_u64().unwrap() - seen["first_ms"].as_u64().unwrap();
        if streamed {
            assert!(
                spread >= 700,
                "{path}: the upstream got the body over {spread} ms: {seen}"
            );
        } else {
            assert!(spread < 300, "{path}: read whole first, then sent: {seen}");
        }
    }
}

#[tokio::test]
async fn a_large_upload_streams_in_bounded_memory() {
    let up = Backend::start("files").await;
    let gw = weir(&config(&up.base(), "1GiB"));
    let peak = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // Warm up, then measure the peak around an upload eight times the growth allowed.
    let (status, _) = post(&gw.url("/pool"), paced_body(16, 64 * 1024, Duration::ZERO)).await;
    assert_eq!(status, 200);
    let before = peak();
    let chunks = 4096;
    let (status, seen) = post(
        &gw.url("/pool"),
        paced_body(chunks, 64 * 1024, Duration::ZERO),
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["bytes"], chunks * 64 * 1024);
    let grown = peak().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "the gateway's peak memory grew by {} MiB for a 256 MiB upload",
        grown >> 20
    );
}

#[tokio::test]
async fn an_upload_past_max_body_is_cut_off_with_413() {
    let up = Backend::start("files").await;
    let gw = weir(&config(&up.base(), "1MiB"));
    for path in ["/pool", "/url"] {
        let aborted = up.aborted_uploads();
        // Chunked (no Content-Length to refuse early): 2 MiB in 256 KiB chunks.
        let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..8 {
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if conn.write_all(&framed).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        let started = std::time::Instant::now();
        while up.aborted_uploads() == aborted && started.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            up.aborted_uploads(),
            aborted + 1,
            "{path}: the upstream saw its request break off"
        );
    }
    // Within the limit, a chunked upload goes through whole.
    let (status, seen) = post(&gw.url("/pool"), paced_body(4, 64 * 1024, Duration::ZERO)).await;
    assert_eq!((status, seen["bytes"].as_u64()), (200, Some(4 * 64 * 1024)));
}

#[tokio::test]
async fn a_streamed_upload_refused_by_one_target_goes_to_another() {
    let up = Backend::start("files").await;
    let gw = weir(&format!(
        r#"
[upstreams.files]
targets = [{{ url = "http://127.0.0.1:{}" }}, {{ url = "{}" }}]
passive = {{ consecutive_failures = 0 }}
retries = {{ budget = "100%" }}

[[routes]]
key = "POST /pool"
integration = {{ type = "http", upstream = "files", path = "/upload" }}
stream = true
"#,
        weir_tests::closed_port(),
        up.base()
    ));
    // Round robin sends every other first attempt to the closed port: the body was not
    // read yet, so the retry can still send it.
    for _ in 0..4 {
        let (status, seen) = post(
            &gw.url("/pool"),
            paced_body(3, 64 * 1024, Duration::from_millis(20)),
        )
        .await;
        assert_eq!((status, seen["bytes"].as_u64()), (200, Some(3 * 64 * 1024)));
    }
    assert_eq!(up.hits(), 4);
}
