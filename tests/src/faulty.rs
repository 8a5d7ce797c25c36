//! An upstream that breaks HTTP on purpose, chosen by the request path:
//! `/reset` sends half a body then resets the connection, `/drip` sends its body one
//! byte every 200 ms, `/malformed` answers garbage, `/hang` never answers, `/close`
//! answers well and then closes the keep-alive connection, `/both-lengths` answers
//! with `Content-Length` and `Transfer-Encoding: chunked` at once, `/switch` answers
//! `101 Switching Protocols` unasked, anything else answers `200 ok` and keeps the
//! connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The faulty upstream.
pub struct Faulty {
    /// Its address.
    pub addr: SocketAddr,
}

impl Faulty {
    /// Starts it on the current tokio runtime.
    pub async fn start() -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream));
            }
        });
        Faulty { addr }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one request head (and ignores any body); the request path.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1).map(str::to_owned)
}

async fn serve(mut stream: TcpStream) {
    while let Some(path) = read_head(&mut stream).await {
        let kind = path.rsplit('/').next().unwrap_or("").to_owned();
        match kind.as_str() {
            "reset" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nhalf")
                    .await;
                // Close with a reset (SO_LINGER 0), not a clean FIN.
                if let Ok(std) = stream.into_std() {
                    let _ = socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO));
                }
                return;
            }
            "drip" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                    .await;
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if stream.write_all(b"d").await.is_err() {
                        return;
                    }
                }
            }
            "malformed" => {
                let _ = stream.write_all(b"HTTP/1.1 abc\r\n\r\n").await;
                return;
            }
            "both-lengths" => {
                // The chunked body is 10 bytes; the length claims 2: a client that
                // trusts the length reads the rest as the start of its next answer.
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\na\r\nHTTP/1.1 2\r\n0\r\n\r\n",
                    )
                    .await;
            }
            "switch" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: other\r\nconnection: upgrade\r\n\r\n")
                    .await;
                return;
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            "close" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                return;
            }
            _ => {
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
