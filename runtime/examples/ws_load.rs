//! WebSocket load for `bench/ws.py`: hold many idle connections and report the
//! gateway's resident memory per connection, or drive message round trips
//! (client → gateway → backend → client) and report messages/s and latency.
//!
//! ```text
//! ws_load hold URL COUNT GATEWAY_PID [SOURCE_IPS]
//! ws_load echo URL CONNECTIONS SECONDS MESSAGE_BYTES
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

fn usage() -> ! {
    eprintln!(
        "usage: ws_load hold URL COUNT GATEWAY_PID [SOURCE_IPS]\n       ws_load echo URL CONNECTIONS SECONDS MESSAGE_BYTES"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("hold") => hold(&args).await,
        Some("echo") => echo(&args).await,
        _ => usage(),
    }
}

/// Resident set size of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn target(url: &str) -> SocketAddr {
    let hostport = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| usage());
    hostport.parse().unwrap_or_else(|_| usage())
}

async fn open(
    url: &str,
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Box<dyn std::error::Error>> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

async fn hold(args: &[String]) {
    let url: String = arg(args, 2);
    let count: usize = arg(args, 3);
    let pid: u32 = arg(args, 4);
    let sources: Vec<IpAddr> = args
        .get(5)
        .map(|s| s.split(',').filter_map(|ip| ip.parse().ok()).collect())
        .unwrap_or_default();
    let addr = target(&url);
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    let mut failed = 0usize;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut next = 0usize;
    while held.len() + failed < count {
        while pending.len() < 128 && next < count {
            let source = (!sources.is_empty()).then(|| sources[next % sources.len()]);
            let url = url.clone();
            pending.push(async move { open(&url, addr, source).await });
            next += 1;
        }
        match pending.next().await {
            Some(Ok(ws)) => held.push(ws),
            Some(Err(e)) => {
                if failed == 0 {
                    eprintln!("connect failed: {e}");
                }
                failed += 1;
            }
            None => break,
        }
    }
    let opened_in = started.elapsed();
    // Let the gateway settle, then read its memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / held.len().max(1) as f64;
    println!(
        "{{\"held\":{},\"failed\":{failed},\"open_seconds\":{:.2},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_connection\":{per:.0}}}",
        held.len(),
        opened_in.as_secs_f64()
    );
}

async fn echo(args: &[String]) {
    let url: String = arg(args, 2);
    let connections: usize = arg(args, 3);
    let seconds: u64 = arg(args, 4);
    let size: usize = arg(args, 5);
    let addr = target(&url);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = open(&url, addr, None).await.expect("connect");
            let body = format!(
                "{{\"action\":\"echo\",\"pad\":\"{}\"}}",
                "x".repeat(size.saturating_sub(28))
            );
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < until {
                let sent = Instant::now();
                if ws.send(Message::text(body.clone())).await.is_err() {
                    errors += 1;
                    break;
                }
                match ws.next().await {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        latencies.push(sent.elapsed().as_micros() as u64)
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"messages\":{},\"errors\":{errors},\"per_second\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99)
    );
}
