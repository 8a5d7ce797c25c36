//! The connection table: every open WebSocket connection by id, so the `@connections`
//! API can reach it from any thread (and, later, any node).
//!
//! [`ConnectionTable`] is the seam for a shared store: the table of a node in a
//! cluster (`cluster::connections`) delivers a post for a connection held by another
//! node through that node ([`ConnectionTable::deliver`], [`ConnectionTable::describe`]).
//! [`LocalConnections`] is the in-process table.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Something to do to a client, sent to its connection task.
#[derive(Debug)]
pub enum Command {
    /// Send a text message.
    Text(String),
    /// Send a binary message.
    Binary(Bytes),
    /// Close the connection (normal closure) and run `$disconnect`.
    Disconnect,
    /// Close the connection because the gateway is shutting down (going away).
    Shutdown,
}

/// Why a command could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// No open connection has that id.
    #[error("no such connection")]
    Gone,
    /// The client's outbound queue is full.
    #[error("the connection's outbound queue is full")]
    Full,
    /// The message is larger than the API's message limit.
    #[error("message exceeds {0} bytes")]
    TooLarge(usize),
    /// Another node may hold the connection, and it could not be asked.
    #[error("the node holding the connection could not be reached")]
    Unreachable,
}

/// A future a connection table returns.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `GET /@connections/{id}` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// When the handshake completed.
    pub connected_at: SystemTime,
    /// The last frame either way.
    pub last_active_at: SystemTime,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent` at the handshake.
    pub user_agent: Option<String>,
}

/// One open connection, as the table holds it.
pub struct Connection {
    /// The connection id.
    pub id: Arc<str>,
    /// The WebSocket API's name.
    pub api: Arc<str>,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent` at the handshake.
    pub user_agent: Option<Box<str>>,
    /// Largest message the API sends or accepts.
    pub max_message: usize,
    connected_at: SystemTime,
    started: Instant,
    /// Milliseconds from `started` to the last frame either way.
    last_active_ms: AtomicU64,
    tx: mpsc::Sender<Command>,
}

impl Connection {
    /// A connection record and the receiving end of its command queue.
    pub fn new(
        id: Arc<str>,
        api: Arc<str>,
        source_ip: IpAddr,
        user_agent: Option<Box<str>>,
        max_message: usize,
        queue: usize,
    ) -> (Arc<Self>, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let conn = Connection {
            id,
            api,
            source_ip,
            user_agent,
            max_message,
            connected_at: SystemTime::now(),
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            tx,
        };
        (Arc::new(conn), rx)
    }

    /// Records a frame in either direction.
    pub fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the handshake.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// What `GET /@connections/{id}` reports of it.
    pub fn info(&self) -> ConnectionInfo {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        ConnectionInfo {
            connected_at: self.connected_at,
            last_active_at: self.connected_at + last,
            source_ip: self.source_ip,
            user_agent: self.user_agent.as_deref().map(str::to_owned),
        }
    }

    fn send(&self, command: Command) -> Result<(), PostError> {
        let size = match &command {
            Command::Text(s) => s.len(),
            Command::Binary(b) => b.len(),
            Command::Disconnect | Command::Shutdown => 0,
        };
        if size > self.max_message {
            return Err(PostError::TooLarge(self.max_message));
        }
        self.tx.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PostError::Full,
            mpsc::error::TrySendError::Closed(_) => PostError::Gone,
        })
    }
}

/// Where open connections are found by id.
pub trait ConnectionTable: Send + Sync + 'static {
    /// Adds an open connection.
    fn insert(&self, conn: Arc<Connection>);
    /// Removes a connection (it closed).
    fn remove(&self, id: &str);
    /// Queues a message or a disconnect for a connection.
    fn send(&self, id: &str, command: Command) -> Result<(), PostError>;
    /// A connection's details.
    fn info(&self, id: &str) -> Option<ConnectionInfo>;
    /// Open connections.
    fn len(&self) -> usize;
    /// Whether no connection is open.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Asks every connection to close (at shutdown).
    fn disconnect_all(&self);
    /// [`ConnectionTable::send`] to a connection wherever it is (a shared table asks
    /// the node that holds it).
    fn deliver<'a>(&'a self, id: &'a str, command: Command) -> Answer<'a, Result<(), PostError>> {
        Box::pin(std::future::ready(self.send(id, command)))
    }
    /// [`ConnectionTable::info`] of a connection wherever it is; `Err` when another
    /// node may hold it and could not be asked.
    fn describe<'a>(
        &'a self,
        id: &'a str,
    ) -> Answer<'a, Result<Option<ConnectionInfo>, PostError>> {
        Box::pin(std::future::ready(Ok(self.info(id))))
    }
}

/// The in-process connection table.
#[derive(Default)]
pub struct LocalConnections {
    conns: RwLock<HashMap<Arc<str>, Arc<Connection>>>,
}

impl LocalConnections {
    fn get(&self, id: &str) -> Option<Arc<Connection>> {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        conns.get(id).cloned()
    }

    /// Every open connection.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        conns.values().cloned().collect()
    }
}

impl ConnectionTable for LocalConnections {
    fn insert(&self, conn: Arc<Connection>) {
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        conns.insert(conn.id.clone(), conn);
    }

    fn remove(&self, id: &str) {
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        conns.remove(id);
    }

    fn send(&self, id: &str, command: Command) -> Result<(), PostError> {
        self.get(id).ok_or(PostError::Gone)?.send(command)
    }

    fn info(&self, id: &str) -> Option<ConnectionInfo> {
        self.get(id).map(|c| c.info())
    }

    fn len(&self) -> usize {
        self.conns.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn disconnect_all(&self) {
        for c in self.all() {
            if c.send(Command::Shutdown) == Err(PostError::Full) {
                // The queue is full of messages; the task will drain it and then see
                // the shutdown through the gateway's own drain deadline.
                tracing::debug!(connection = %c.id, "outbound queue full at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str, queue: usize) -> (Arc<Connection>, mpsc::Receiver<Command>) {
        Connection::new(
            id.into(),
            "chat".into(),
            IpAddr::from([127, 0, 0, 1]),
            Some("ua".into()),
            8,
            queue,
        )
    }

    #[test]
    fn posts_reach_the_connection_until_it_is_removed() {
        let table = LocalConnections::default();
        let (c, mut rx) = conn("a", 1);
        table.insert(c);
        assert_eq!(table.len(), 1);
        table.send("a", Command::Text("hi".into())).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Command::Text(s)) if s == "hi"));
        table.send("a", Command::Text("1".into())).unwrap();
        assert_eq!(
            table.send("a", Command::Text("2".into())),
            Err(PostError::Full)
        );
        assert_eq!(
            table.send("a", Command::Binary(Bytes::from(vec![0; 9]))),
            Err(PostError::TooLarge(8))
        );
        let info = table.info("a").unwrap();
        assert_eq!(info.user_agent.as_deref(), Some("ua"));
        assert!(info.last_active_at >= info.connected_at);
        table.remove("a");
        assert_eq!(
            table.send("a", Command::Text("x".into())),
            Err(PostError::Gone)
        );
        assert!(table.info("a").is_none() && table.is_empty());
    }

    #[test]
    fn a_closed_receiver_is_gone() {
        let table = LocalConnections::default();
        let (c, rx) = conn("b", 4);
        table.insert(c);
        drop(rx);
        assert_eq!(table.send("b", Command::Disconnect), Err(PostError::Gone));
    }
}
