//! The WebSocket connection table of a node in a cluster: this node's connections in
//! memory, registered in the store so that `@connections` on any node reaches them.
//!
//! Each open connection is a hash `PREFIX:conn:ID` (`node`, `connectedAt`,
//! `lastActiveAt` in Unix milliseconds, `sourceIp`, `userAgent`) that expires after
//! `connection_ttl`; the node rewrites all of its own every third of that (and at once
//! when the store comes back, which may have lost them), so the connections of a node
//! that died are gone from the registry within `connection_ttl`.
//!
//! A post, `GET` or `DELETE` for a connection this node does not hold looks the id up,
//! then publishes the request on the holding node's channel `PREFIX:to:NODE`, which
//! every node subscribes to for itself, and waits (at most a second) for the answer on
//! its own channel. No holder registered, or no node listening on the holder's channel
//! (it died): `410`. The store or the holder does not answer: `503`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{BACKGROUND_TIMEOUT, Cluster};
use crate::connections::{
    Answer, Command, Connection, ConnectionInfo, ConnectionTable, LocalConnections, PostError,
};

/// Longest wait for the node holding a connection to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Backoff of the subscriber's reconnections: the first, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// What one node asks another, or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Post,
    Get,
    Delete,
    Reply,
}

/// The outcome of a delivery, as a reply carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok,
    Gone,
    Full,
    TooLarge(usize),
}

/// A connection's details between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Info {
    connected_at_ms: u64,
    last_active_at_ms: u64,
    source_ip: std::net::IpAddr,
    user_agent: Option<String>,
}

/// The first line of a message on a node's channel; a post's body follows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    op: Op,
    /// The connection id.
    id: String,
    /// The asking node (replies go to its channel).
    from: String,
    /// The asker's request number.
    req: u64,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    outcome: Option<Outcome>,
    #[serde(default)]
    info: Option<Info>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn frame(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

fn parse(frame: &[u8]) -> Option<(Header, Bytes)> {
    let at = frame.iter().position(|&b| b == b'\n')?;
    let header = serde_json::from_slice(&frame[..at]).ok()?;
    Some((header, Bytes::copy_from_slice(&frame[at + 1..])))
}

fn outcome(r: Result<(), PostError>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(PostError::Full) => Outcome::Full,
        Err(PostError::TooLarge(n)) => Outcome::TooLarge(n),
        Err(PostError::Gone | PostError::Unreachable) => Outcome::Gone,
    }
}

/// This node's connections, reachable from every node.
pub struct SharedConnections {
    local: LocalConnections,
    cluster: Arc<Cluster>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Header>>>,
    next: AtomicU64,
    /// Itself, for registrations in the background.
    me: Weak<SharedConnections>,
}

impl SharedConnections {
    /// The table, its subscriber and its refresher (on the cluster thread).
    pub fn start(cluster: &Arc<Cluster>) -> Arc<Self> {
        let table = Arc::new_cyclic(|me| Self {
            local: LocalConnections::default(),
            cluster: cluster.clone(),
            waiting: Mutex::default(),
            next: AtomicU64::new(1),
            me: me.clone(),
        });
        cluster.spawn(table.clone().listen());
        cluster.spawn(table.clone().refresh());
        table
    }

    fn conn_key(&self, id: &str) -> String {
        self.cluster.key(format_args!("conn:{id}"))
    }

    fn channel(&self, node: &str) -> String {
        self.cluster.key(format_args!("to:{node}"))
    }

    /// Writes `conns` to the registry, each expiring after `connection_ttl`.
    async fn register(&self, conns: Vec<Arc<Connection>>) {
        if conns.is_empty() {
            return;
        }
        let ttl = self.cluster.settings().connection_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for c in &conns {
            let info = c.info();
            let key = self.conn_key(&c.id);
            pipe.hset_multiple(
                &key,
                &[
                    ("node", self.cluster.node().to_owned()),
                    ("connectedAt", unix_ms(info.connected_at).to_string()),
                    ("lastActiveAt", unix_ms(info.last_active_at).to_string()),
                    ("sourceIp", info.source_ip.to_string()),
                    ("userAgent", info.user_agent.unwrap_or_default()),
                ],
            )
            .ignore()
            .pexpire(&key, ttl as i64)
            .ignore();
        }
        let written = self
            .cluster
            .call(BACKGROUND_TIMEOUT, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        if written.is_err() {
            tracing::debug!(
                connections = conns.len(),
                "connections not registered in the cluster store"
            );
        }
    }

    /// Rewrites this node's registrations every third of `connection_ttl`, and at once
    /// when the store comes (back) up.
    async fn refresh(self: Arc<Self>) {
        let mut generations = self.cluster.generations();
        let every = self.cluster.settings().connection_ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                changed = generations.changed() => if changed.is_err() { return },
            }
            self.register(self.local.all()).await;
        }
    }

    /// Subscribes to this node's channel and answers what arrives, reconnecting with a
    /// backoff.
    async fn listen(self: Arc<Self>) {
        let channel = self.channel(self.cluster.node());
        let mut backoff = BACKOFF.0;
        loop {
            let subscribed = async {
                let mut pubsub = self.cluster.pubsub_client().get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(2 * BACKGROUND_TIMEOUT, subscribed).await {
                Ok(Ok(pubsub)) => {
                    backoff = BACKOFF.0;
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        if let Some((header, body)) = parse(msg.get_payload_bytes()) {
                            let table = self.clone();
                            tokio::spawn(async move { table.answer(header, body).await });
                        }
                    }
                    tracing::debug!("cluster subscriber disconnected");
                }
                _ => tracing::debug!("cluster subscriber not connected"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Handles a message on this node's channel.
    async fn answer(&self, header: Header, body: Bytes) {
        let mut reply = Header {
            op: Op::Reply,
            id: header.id.clone(),
            from: self.cluster.node().to_owned(),
            req: header.req,
            binary: false,
            outcome: None,
            info: None,
        };
        match header.op {
            Op::Reply => {
                let waiting = self
                    .waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&header.req);
                if let Some(tx) = waiting {
                    let _ = tx.send(header);
                }
                return;
            }
            Op::Post => {
                let command = match (header.binary, String::from_utf8(body.to_vec())) {
                    (false, Ok(text)) => Command::Text(text),
                    _ => Command::Binary(body),
                };
                reply.outcome = Some(outcome(self.local.send(&header.id, command)));
            }
            Op::Delete => {
                reply.outcome = Some(outcome(self.local.send(&header.id, Command::Disconnect)));
            }
            Op::Get => {
                reply.info = self.local.info(&header.id).map(|i| Info {
                    connected_at_ms: unix_ms(i.connected_at),
                    last_active_at_ms: unix_ms(i.last_active_at),
                    source_ip: i.source_ip,
                    user_agent: i.user_agent,
                });
                reply.outcome = Some(if reply.info.is_some() {
                    Outcome::Ok
                } else {
                    Outcome::Gone
                });
            }
        }
        let to = self.channel(&header.from);
        let message = frame(&reply, &[]);
        let _ = self
            .cluster
            .call(BACKGROUND_TIMEOUT, |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&to)
                    .arg(message)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// Asks the node holding `id` to do `op`; its reply.
    async fn ask(&self, op: Op, id: &str, binary: bool, body: &[u8]) -> Result<Header, PostError> {
        let key = self.conn_key(id);
        let node = self
            .cluster
            .call(BACKGROUND_TIMEOUT, |mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("node")
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await
            .map_err(|_| PostError::Unreachable)?;
        let Some(node) = node.filter(|n| n != self.cluster.node()) else {
            return Err(PostError::Gone);
        };
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req, tx);
        let header = Header {
            op,
            id: id.to_owned(),
            from: self.cluster.node().to_owned(),
            req,
            binary,
            outcome: None,
            info: None,
        };
        let to = self.channel(&node);
        let message = frame(&header, body);
        let published = self
            .cluster
            .call(BACKGROUND_TIMEOUT, |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&to)
                    .arg(message)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        let answer = match published {
            // Nobody listens on the holder's channel: the node is gone, and so are its
            // connections (its registrations expire on their own).
            Ok(0) => Err(PostError::Gone),
            Ok(_) => match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                _ => Err(PostError::Unreachable),
            },
            Err(_) => Err(PostError::Unreachable),
        };
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req);
        answer
    }

    async fn deliver_elsewhere(&self, id: &str, command: Command) -> Result<(), PostError> {
        let (op, binary, body) = match command {
            Command::Text(t) => (Op::Post, false, Bytes::from(t)),
            Command::Binary(b) => (Op::Post, true, b),
            Command::Disconnect => (Op::Delete, false, Bytes::new()),
            Command::Shutdown => return Err(PostError::Gone),
        };
        let reply = self.ask(op, id, binary, &body).await?;
        match reply.outcome {
            Some(Outcome::Ok) => Ok(()),
            Some(Outcome::Full) => Err(PostError::Full),
            Some(Outcome::TooLarge(n)) => Err(PostError::TooLarge(n)),
            Some(Outcome::Gone) | None => Err(PostError::Gone),
        }
    }

    async fn describe_elsewhere(&self, id: &str) -> Result<Option<ConnectionInfo>, PostError> {
        let info = match self.ask(Op::Get, id, false, &[]).await {
            Ok(reply) => reply.info,
            Err(PostError::Gone) => None,
            Err(e) => return Err(e),
        };
        Ok(info.map(|i| ConnectionInfo {
            connected_at: UNIX_EPOCH + Duration::from_millis(i.connected_at_ms),
            last_active_at: UNIX_EPOCH + Duration::from_millis(i.last_active_at_ms),
            source_ip: i.source_ip,
            user_agent: i.user_agent,
        }))
    }
}

impl ConnectionTable for SharedConnections {
    fn insert(&self, conn: Arc<Connection>) {
        self.local.insert(conn.clone());
        if self.cluster.is_up()
            && let Some(table) = self.me.upgrade()
        {
            self.cluster
                .spawn(async move { table.register(vec![conn]).await });
        }
    }

    fn remove(&self, id: &str) {
        self.local.remove(id);
        if self.cluster.is_up() {
            let key = self.conn_key(id);
            let cluster = self.cluster.clone();
            self.cluster.spawn(async move {
                let _ = cluster
                    .call(BACKGROUND_TIMEOUT, |mut c| async move {
                        redis::cmd("DEL").arg(&key).query_async::<i64>(&mut c).await
                    })
                    .await;
            });
        }
    }

    fn send(&self, id: &str, command: Command) -> Result<(), PostError> {
        self.local.send(id, command)
    }

    fn info(&self, id: &str) -> Option<ConnectionInfo> {
        self.local.info(id)
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    fn disconnect_all(&self) {
        self.local.disconnect_all();
    }

    fn deliver<'a>(&'a self, id: &'a str, command: Command) -> Answer<'a, Result<(), PostError>> {
        if self.local.info(id).is_some() {
            return Box::pin(std::future::ready(self.local.send(id, command)));
        }
        Box::pin(self.deliver_elsewhere(id, command))
    }

    fn describe<'a>(
        &'a self,
        id: &'a str,
    ) -> Answer<'a, Result<Option<ConnectionInfo>, PostError>> {
        if let Some(info) = self.local.info(id) {
            return Box::pin(std::future::ready(Ok(Some(info))));
        }
        Box::pin(self.describe_elsewhere(id))
    }
}
