//! Who the client is and whether it may come in: the client's address behind trusted
//! proxies (`[server] trusted_proxies`), and address allow and deny lists (`[api]` and
//! per route `ip_allow` / `ip_deny`). Pure: CIDR lists and a header in, an address or a
//! decision out.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// A list of networks, from CIDRs or bare addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Box<[IpNet]>);

impl Networks {
    /// Parses `entries` (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`); an error names
    /// the entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("`{e}` is not an address or a CIDR block"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Networks(v.into()))
    }

    /// Whether `ip` is in one of the networks. An IPv4 address written as IPv6
    /// (`::ffff:192.0.2.7`) is the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An allow list and a deny list: denied if the address is in `deny`, or if `allow`
/// is not empty and the address is not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpPolicy {
    allow: Networks,
    deny: Networks,
}

impl IpPolicy {
    /// The policy of two lists; `None` when both are empty (everyone may come in).
    pub fn new(allow: &[String], deny: &[String]) -> Result<Option<Self>, String> {
        let policy = IpPolicy {
            allow: Networks::parse(allow).map_err(|e| format!("ip_allow: {e}"))?,
            deny: Networks::parse(deny).map_err(|e| format!("ip_deny: {e}"))?,
        };
        Ok((!policy.allow.is_empty() || !policy.deny.is_empty()).then_some(policy))
    }

    /// Whether `ip` may come in.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
    }
}

/// The proxies in front of the gateway whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Networks);

impl TrustedProxies {
    /// From `[server] trusted_proxies`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        Networks::parse(entries)
            .map(TrustedProxies)
            .map_err(|e| format!("trusted_proxies: {e}"))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// rightmost address of `X-Forwarded-For` (all its headers, in order) that is not
    /// a trusted proxy — each trusted hop vouches only for the one before it. A hop
    /// that is not an address ends the walk at the last trusted one; a chain of
    /// trusted proxies only gives its leftmost.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.0.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.0.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An address as proxies write it: `192.0.2.7`, `192.0.2.7:1234`, `2001:db8::1`,
/// `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allow_and_deny() {
        let p = IpPolicy::new(
            &list(&["10.0.0.0/8", "2001:db8::/32"]),
            &list(&["10.9.0.0/16"]),
        )
        .unwrap()
        .unwrap();
        assert!(p.permits(ip("10.1.2.3")));
        assert!(p.permits(ip("::ffff:10.1.2.3")));
        assert!(p.permits(ip("2001:db8::7")));
        assert!(!p.permits(ip("10.9.1.1")));
        assert!(!p.permits(ip("192.0.2.1")));
        let deny_only = IpPolicy::new(&[], &list(&["192.0.2.7"])).unwrap().unwrap();
        assert!(!deny_only.permits(ip("192.0.2.7")));
        assert!(deny_only.permits(ip("192.0.2.8")));
        assert_eq!(IpPolicy::new(&[], &[]).unwrap(), None);
        let e = IpPolicy::new(&list(&["10.0.0.0/33"]), &[]).unwrap_err();
        assert!(e.contains("ip_allow") && e.contains("10.0.0.0/33"), "{e}");
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse(&list(&["10.0.0.0/8", "::1"])).unwrap();
        let lb = ip("10.0.0.2");
        // An untrusted peer's header is ignored, whatever it says.
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), &xff(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        // A trusted peer: the hop it saw; a spoofed prefix the client sent stays left.
        assert_eq!(
            t.client_ip(lb, &xff(&["6.6.6.6, 198.51.100.4"])),
            ip("198.51.100.4")
        );
        // Trusted hops are skipped; several headers are one list.
        assert_eq!(
            t.client_ip(lb, &xff(&["6.6.6.6", "198.51.100.4, 10.1.1.1"])),
            ip("198.51.100.4")
        );
        assert_eq!(
            t.client_ip(lb, &xff(&["[2001:db8::5]:443"])),
            ip("2001:db8::5")
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(
            t.client_ip(lb, &xff(&["198.51.100.4, junk, 10.1.1.1"])),
            ip("10.1.1.1")
        );
        // No header: the peer.
        assert_eq!(t.client_ip(lb, &HeaderMap::new()), lb);
        assert_eq!(
            TrustedProxies::default().client_ip(lb, &xff(&["1.2.3.4"])),
            lb
        );
    }
}
