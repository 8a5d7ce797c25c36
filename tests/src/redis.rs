//! A real `redis-server` on a free loopback port, for the `[cluster]` tests; stopped and
//! started again on the same port to play a store that goes away and comes back.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (no persistence); killed on drop.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Settings beyond the port and no persistence (TLS, cluster mode).
    extra: Vec<String>,
    /// Whether the port speaks TLS.
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` can be run here.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Redis {
    /// Starts one on a free port and waits until it accepts connections.
    pub fn start() -> Redis {
        Redis::with(Vec::new(), false)
    }

    fn with(extra: Vec<String>, tls: bool) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            extra,
            tls,
        };
        redis.resume();
        redis
    }

    /// One that speaks only TLS, with the certificate and key in the PEM files `cert`
    /// and `key`, and asks clients for certificates signed by the authorities in
    /// `client_ca` (Redis's default, `tls-auth-clients yes`).
    pub fn start_tls(cert: &Path, key: &Path, client_ca: &Path) -> Redis {
        let file = |p: &Path| p.to_str().unwrap().to_owned();
        Redis::with(
            vec![
                "--tls-cert-file".into(),
                file(cert),
                "--tls-key-file".into(),
                file(key),
                "--tls-ca-cert-file".into(),
                file(client_ca),
                "--tls-auth-clients".into(),
                "yes".into(),
            ],
            true,
        )
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for one started with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// How many scripts it has run (`EVAL` and `EVALSHA` calls, from `INFO
    /// commandstats`).
    pub fn script_calls(&self) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", "commandstats"])
            .output()
            .expect("redis-cli is installed with redis-server");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Kills the server (its data is lost: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let ports: &[&str] = if self.tls {
            &["--port", "0", "--tls-port", &port]
        } else {
            &["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports, every hash
/// slot assigned; killed on drop.
pub struct RedisCluster {
    nodes: Vec<Redis>,
    _dir: PathBuf,
}

impl RedisCluster {
    /// Starts the three servers, joins them with `redis-cli --cluster create` and waits
    /// until every node says the cluster is up.
    pub fn start() -> RedisCluster {
        let dir = crate::test_dir();
        let nodes: Vec<Redis> = (0..3)
            .map(|i| {
                let conf = dir.join(format!("nodes-{i}.conf"));
                Redis::with(
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        conf.to_str().unwrap().to_owned(),
                        "--dir".into(),
                        dir.to_str().unwrap().to_owned(),
                    ],
                    false,
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster did not come up"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// A TOML list of the nodes' URLs (seed nodes for `[cluster] redis`).
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Scripts run on all nodes together.
    pub fn script_calls(&self) -> u64 {
        self.nodes.iter().map(Redis::script_calls).sum()
    }
}
