//! One open connection's task, on the worker that accepted it: it reads frames, queues
//! messages and hands them one at a time, in order, to [`super::events`] (so a client's
//! messages reach the backend in the order it sent them), writes what the
//! `@connections` API posts and what routes answer, and closes at the idle, duration
//! and send limits. Its socket is bounded both ways: frames and messages by size, what
//! waits to go out by [`super::stall`] and tungstenite's capped write buffer.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Session;
use super::api::Limits;
use super::events::{disconnect, dispatch};
use super::stall::{SendTimeout, Stall};
use crate::connections::{Command, Connection};
use crate::guarded::Guarded;
use crate::worker::Shared;

/// Messages read ahead of the one being dispatched; past it, reading pauses.
const MAX_PENDING: usize = 16;
/// Longest a server-initiated close waits for the client to hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes read and discarded while lingering.
const CLOSE_LINGER_BYTES: usize = 1 << 20;

/// Why a connection closed (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Client,
    Idle,
    MaxDuration,
    TooBig,
    Protocol,
    Deleted,
    Shutdown,
    /// The client went away without a close frame.
    Dropped,
    /// The client read nothing for `send_timeout` while the gateway had data for it.
    SendTimeout,
    Error,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle_timeout",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::TooBig => "message_too_big",
            CloseReason::Protocol => "protocol_error",
            CloseReason::Deleted => "deleted",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Dropped => "dropped",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::Error => "error",
        }
    }
}

type Dispatch = Pin<Box<dyn Future<Output = Option<Message>> + Send>>;

/// A client's WebSocket, over a socket that may not stall a send for long.
type Ws = WebSocketStream<Stall<TokioIo<hyper::upgrade::Upgraded>>>;

/// Bytes a connection's write buffer may hold beyond one message: frame headers, a
/// close frame, the one pong that may wait to go out.
const WRITE_BUFFER_SLACK: usize = 64 * 1024;

/// Messages read from the client and not yet answered: the one being dispatched and
/// those read ahead of it.
#[derive(Default)]
struct Backlog {
    job: Option<Dispatch>,
    pending: VecDeque<Message>,
}

impl Backlog {
    /// After the connection closed: every message already read still reaches its
    /// integration, in order (the one in flight is not cancelled); replies are dropped,
    /// there is no one to send them to. Bounded by the routes' timeouts and
    /// `MAX_PENDING`.
    async fn deliver(self, shared: &Arc<Shared>, session: &Arc<Session>) {
        if let Some(job) = self.job {
            job.await;
        }
        for msg in self.pending {
            dispatch(shared.clone(), session.clone(), msg).await;
        }
    }
}

/// One open connection's task.
pub(super) struct ConnectionTask {
    pub(super) shared: Arc<Shared>,
    pub(super) session: Arc<Session>,
    pub(super) commands: tokio::sync::mpsc::Receiver<Command>,
    pub(super) limits: Limits,
}

/// Counts a worker's open connections while it lives.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: Arc<Shared>) -> Self {
        shared.websockets_open(1);
        metrics::gauge!("weir_websocket_connections_open").increment(1.0);
        Live(shared)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.websockets_open(-1);
        metrics::gauge!("weir_websocket_connections_open").decrement(1.0);
    }
}

impl ConnectionTask {
    pub(super) async fn run(mut self, on_upgrade: hyper::upgrade::OnUpgrade) {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(connection = %self.session.conn.id, error = %e, "upgrade failed");
                return;
            }
        };
        let _live = Live::new(self.shared.clone());
        // The write buffer holds at most one message and some slack: a client that
        // sends pings and reads nothing gets one pending pong, not a growing queue.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(self.limits.max_message + WRITE_BUFFER_SLACK)
            .max_message_size(Some(self.limits.max_message))
            .max_frame_size(Some(self.limits.max_frame));
        let socket = Guarded::new(
            TokioIo::new(upgraded),
            SendTimeout::new(self.limits.send_timeout),
        );
        let mut ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
        let table = self.shared.connections.clone();
        table.insert(self.session.conn.clone());
        metrics::counter!("weir_websocket_connections_opened_total").increment(1);
        tracing::debug!(connection = %self.session.conn.id, api = %self.session.conn.api, "connected");

        let mut backlog = Backlog::default();
        let reason = self.serve(&mut ws, &mut backlog).await;

        table.remove(&self.session.conn.id);
        metrics::counter!("weir_websocket_connections_closed_total", "reason" => reason.label())
            .increment(1);
        tracing::debug!(connection = %self.session.conn.id, reason = reason.label(), "closed");
        // Wait (briefly) for the client to hang up, so it reads our close frame, while
        // the messages it sent before closing reach their integration; then `$disconnect`.
        tokio::join!(linger(ws), backlog.deliver(&self.shared, &self.session));
        disconnect(&self.shared, &self.session).await;
    }

    async fn serve(&mut self, ws: &mut Ws, backlog: &mut Backlog) -> CloseReason {
        let conn = self.session.conn.clone();
        let lifetime = tokio::time::sleep(self.limits.max_duration.saturating_sub(conn.age()));
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(lifetime, idle);
        let Backlog { job, pending } = backlog;
        loop {
            let active = tokio::select! {
                frame = ws.next(), if pending.len() < MAX_PENDING => match frame {
                    None => return CloseReason::Client,
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite answers the close; flush it out.
                        let _ = ws.flush().await;
                        return CloseReason::Client;
                    }
                    Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                        metrics::counter!("weir_websocket_messages_total", "direction" => "in").increment(1);
                        pending.push_back(msg);
                        true
                    }
                    Some(Ok(_)) => true,
                    Some(Err(WsError::Capacity(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "message too big");
                        close(ws, CloseCode::Size, "Message too big").await;
                        return CloseReason::TooBig;
                    }
                    Some(Err(WsError::Protocol(
                        ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return CloseReason::Dropped,
                    Some(Err(WsError::Protocol(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "protocol error");
                        close(ws, CloseCode::Protocol, "Protocol error").await;
                        return CloseReason::Protocol;
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "text message is not UTF-8");
                        close(ws, CloseCode::Invalid, "Invalid UTF-8").await;
                        return CloseReason::Protocol;
                    }
                    Some(Err(e)) => return failed(ws, &conn, &e),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Text(s)) => {
                        if let Err(e) = send(ws, Message::Text(Utf8Bytes::from(s))).await {
                            return failed(ws, &conn, &e);
                        }
                        true
                    }
                    Some(Command::Binary(b)) => {
                        if let Err(e) = send(ws, Message::Binary(b)).await {
                            return failed(ws, &conn, &e);
                        }
                        true
                    }
                    Some(Command::Disconnect) => {
                        close(ws, CloseCode::Normal, "Disconnected").await;
                        return CloseReason::Deleted;
                    }
                    Some(Command::Shutdown) | None => {
                        close(ws, CloseCode::Away, "Going away").await;
                        return CloseReason::Shutdown;
                    }
                },
                reply = async { job.as_mut().expect("guarded by is_some").await }, if job.is_some() => {
                    *job = None;
                    match reply {
                        Some(msg) => {
                            if let Err(e) = send(ws, msg).await {
                                return failed(ws, &conn, &e);
                            }
                            true
                        }
                        None => false,
                    }
                },
                () = &mut idle => {
                    close(ws, CloseCode::Away, "Idle timeout").await;
                    return CloseReason::Idle;
                },
                () = &mut lifetime => {
                    close(ws, CloseCode::Away, "Maximum connection duration").await;
                    return CloseReason::MaxDuration;
                },
            };
            if active {
                conn.touch();
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + self.limits.idle_timeout);
            }
            if job.is_none()
                && let Some(msg) = pending.pop_front()
            {
                *job = Some(Box::pin(dispatch(
                    self.shared.clone(),
                    self.session.clone(),
                    msg,
                )));
            }
        }
    }
}

/// Why a read or a send failed: the client stopped reading, went away, or the
/// connection broke.
fn failed(ws: &Ws, conn: &Connection, e: &WsError) -> CloseReason {
    if ws.get_ref().expired() {
        tracing::debug!(connection = %conn.id, "client read nothing within send_timeout; closing");
        return CloseReason::SendTimeout;
    }
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => CloseReason::Dropped,
        WsError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            CloseReason::Dropped
        }
        e => {
            tracing::debug!(connection = %conn.id, error = %e, "connection error");
            CloseReason::Error
        }
    }
}

async fn send(ws: &mut Ws, msg: Message) -> Result<(), WsError> {
    ws.send(msg).await?;
    metrics::counter!("weir_websocket_messages_total", "direction" => "out").increment(1);
    Ok(())
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(Some(frame))).await;
}

/// After our close frame: read and discard until the client hangs up (bounded in time
/// and bytes), so closing our end does not reset a connection with unread data.
async fn linger(ws: Ws) {
    use tokio::io::AsyncReadExt;
    let mut io = ws.into_inner();
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = CLOSE_LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}
