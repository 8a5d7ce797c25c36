//! A client that stops reading must not hold the gateway's memory or its connection
//! task: [`Stall`] wraps a WebSocket's socket and fails its reads and writes once a
//! write has waited longer than the API's `send_timeout` without any byte going out.
//! (tungstenite's write buffer is capped, and a pong waiting to go out is replaced by a
//! newer one, so what waits is bounded too.)

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use crate::guarded::{Deadline, Guarded};

/// A socket whose writes may wait at most `timeout` for the peer to read.
pub type Stall<S> = Guarded<S, SendTimeout>;

/// How long a write may wait, and since when one has been waiting.
pub struct SendTimeout {
    timeout: Duration,
    /// When a write first found the socket full, if none has gone through since.
    blocked_since: Option<Instant>,
}

impl SendTimeout {
    /// Writes may wait `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            blocked_since: None,
        }
    }
}

impl Deadline for SendTimeout {
    fn deadline(&mut self) -> Option<Instant> {
        self.blocked_since.map(|since| since + self.timeout)
    }

    fn wrote(&mut self, blocked: bool) {
        if !blocked {
            self.blocked_since = None;
        } else if self.blocked_since.is_none() {
            self.blocked_since = Some(Instant::now());
        }
    }

    fn error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing within send_timeout",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_timeout_fails_and_reads_fail_too() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut server = Guarded::new(server, SendTimeout::new(Duration::from_secs(10)));
        // Room for 16 bytes; the client reads nothing.
        server.write_all(&[0; 16]).await.unwrap();
        let started = Instant::now();
        let err = server.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(server.expired());
        let err = server.read(&mut [0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let _ = client.read(&mut [0; 1]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_client_is_never_stalled() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut server = Guarded::new(server, SendTimeout::new(Duration::from_secs(10)));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 8];
            let mut total = 0;
            while total < 1600 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += client.read(&mut buf).await.unwrap();
            }
        });
        // Each write waits about a second for the reader, never ten.
        for _ in 0..100 {
            server.write_all(&[1; 16]).await.unwrap();
        }
        reader.await.unwrap();
        assert!(!server.expired());
    }
}
