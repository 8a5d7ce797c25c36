//! `resolve = "30s"`: the names of a pool's targets looked up again every period, in
//! `[server] hosts_file` first (read again each time), then through the system
//! resolver; [`Pool::set_resolved`] makes each address a target. A lookup that fails
//! or finds nothing keeps the addresses the name had. One task per pool version, on
//! the reloader's runtime, holding its pool weakly (like the health task).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::pool::Pool;
use crate::pool::spec::TargetSpec;

/// Largest hosts file read.
const MAX_HOSTS_FILE: u64 = 1 << 20;
/// Longest one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the resolution task of `pool` on the current runtime, if it has `resolve`.
pub fn spawn(pool: &Arc<Pool>) {
    if pool.spec.resolve.is_some() {
        tokio::spawn(run(Arc::downgrade(pool)));
    }
}

async fn run(pool: Weak<Pool>) {
    let Some((every, hosts_file, targets)) = pool.upgrade().and_then(|p| {
        let r = p.spec.resolve.clone()?;
        Some((r.every, r.hosts_file, p.spec.targets.clone()))
    }) else {
        return;
    };
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if pool.strong_count() == 0 {
            return;
        }
        let hosts = hosts_file.as_deref().map(read_hosts).unwrap_or_default();
        let mut resolved = Vec::with_capacity(targets.len());
        for t in &targets {
            resolved.push(resolve(t, &hosts).await);
        }
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.set_resolved(&resolved);
    }
}

/// The addresses of `target`'s name (`None`: it has none, or the lookup failed).
async fn resolve(target: &TargetSpec, hosts: &[(IpAddr, String)]) -> Option<Vec<SocketAddr>> {
    let name = target.name.as_deref()?;
    let listed: Vec<SocketAddr> = hosts
        .iter()
        .filter(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(ip, _)| SocketAddr::new(*ip, target.port))
        .collect();
    if !listed.is_empty() {
        return Some(listed);
    }
    let lookup = tokio::net::lookup_host((name, target.port));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => {
            let mut found: Vec<SocketAddr> = Vec::new();
            for a in addresses {
                if !found.contains(&a) {
                    found.push(a);
                }
            }
            if found.is_empty() {
                tracing::warn!(target = %target.base, "upstream name resolved to no address; keeping the last ones");
                None
            } else {
                Some(found)
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(target = %target.base, error = %e, "upstream name not resolved; keeping the last addresses");
            None
        }
        Err(_) => {
            tracing::warn!(target = %target.base, "upstream name lookup timed out; keeping the last addresses");
            None
        }
    }
}

/// `(address, name)` pairs of a hosts file; nothing when it cannot be read.
fn read_hosts(path: &Path) -> Vec<(IpAddr, String)> {
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_HOSTS_FILE => std::fs::read_to_string(path),
        Ok(_) => {
            tracing::warn!(file = %path.display(), "hosts_file larger than 1 MiB: not read");
            return Vec::new();
        }
        Err(e) => Err(e),
    };
    match text {
        Ok(text) => parse_hosts(&text),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "hosts_file not read");
            Vec::new()
        }
    }
}

/// Lines `ADDRESS NAME [NAME...]`, `#` to the end of a line a comment; lines whose
/// first word is no address are skipped.
fn parse_hosts(text: &str) -> Vec<(IpAddr, String)> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        pairs.extend(words.map(|n| (ip, n.to_owned())));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_lines_and_skips_the_rest() {
        let pairs = parse_hosts(
            "# pets\n127.0.0.1 pets.test other # comment\nnot-an-ip x\n\n::1\tpets.test\n",
        );
        let want: Vec<(IpAddr, String)> = vec![
            ("127.0.0.1".parse().unwrap(), "pets.test".into()),
            ("127.0.0.1".parse().unwrap(), "other".into()),
            ("::1".parse().unwrap(), "pets.test".into()),
        ];
        assert_eq!(pairs, want);
    }
}
