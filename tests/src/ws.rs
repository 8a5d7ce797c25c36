//! A real WebSocket client (tokio-tungstenite) for the end-to-end tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(5);

/// An open client connection.
pub struct Ws(pub WebSocketStream<MaybeTlsStream<TcpStream>>);

/// A refused handshake: status and body.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: u16,
    /// `Retry-After`, if sent.
    pub retry_after: Option<String>,
    /// The body.
    pub body: String,
}

/// What the client saw next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

/// Opens `url` (`ws://…`) with extra handshake headers.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, Refused> {
    connect_with_protocol(url, headers).await.map(|(ws, _)| ws)
}

/// Like [`connect`], also returning the subprotocol the server chose
/// (`Sec-WebSocket-Protocol` of the 101), if any.
pub async fn connect_with_protocol(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Option<String>), Refused> {
    let mut req = url.into_client_request().expect("a valid ws:// url");
    for (n, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let protocol = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((Ws(ws), protocol))
        }
        Err(Error::Http(resp)) => Err(Refused {
            status: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        }),
        Err(e) => panic!("connecting to {url}: {e}"),
    }
}

impl Ws {
    /// Sends a text message.
    pub async fn text(&mut self, s: &str) {
        self.0
            .send(Message::text(s))
            .await
            .expect("sending a message");
    }

    /// Sends any message or raw frame.
    pub async fn raw(&mut self, m: Message) -> Result<(), Error> {
        self.0.send(m).await
    }

    /// The next message or close (pings and pongs skipped), waiting at most `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Message::Text(t))) => Frame::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => close(c),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Frame::Ended,
            });
        }
    }

    /// The next message or close, failing the test after [`FRAME_WAIT`].
    pub async fn next(&mut self) -> Frame {
        self.next_within(FRAME_WAIT)
            .await
            .expect("no frame within the wait")
    }

    /// The next frame, which must be a text message; as JSON.
    pub async fn json(&mut self) -> serde_json::Value {
        match self.next().await {
            Frame::Text(t) => {
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
            }
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Sends `msg` and returns the JSON reply.
    pub async fn ask(&mut self, msg: &str) -> serde_json::Value {
        self.text(msg).await;
        self.json().await
    }
}

fn close(c: Option<CloseFrame>) -> Frame {
    match c {
        Some(c) => Frame::Close(c.code.into(), c.reason.to_string()),
        None => Frame::Close(1005, String::new()),
    }
}
