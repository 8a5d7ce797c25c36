//! W3C trace context: every upstream request carries a `traceparent` (the client's trace
//! continued with a new parent id, or a new trace) and the client's `tracestate`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A parsed or new trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 2 hex digits.
    pub flags: String,
}

impl TraceContext {
    /// Continues a valid incoming `traceparent`, or starts a new sampled trace.
    pub fn from_header(traceparent: Option<&str>) -> Self {
        traceparent.and_then(parse).unwrap_or_else(|| {
            let mut trace_id = String::with_capacity(32);
            push_hex(&mut trace_id, random_u64());
            push_hex(&mut trace_id, random_u64());
            TraceContext {
                trace_id,
                flags: "01".to_owned(),
            }
        })
    }

    /// The `traceparent` to send upstream, with a fresh parent (span) id.
    pub fn child_header(&self) -> String {
        let mut span = random_u64();
        if span == 0 {
            span = 1;
        }
        let mut header = String::with_capacity(55);
        header.push_str("00-");
        header.push_str(&self.trace_id);
        header.push('-');
        push_hex(&mut header, span);
        header.push('-');
        header.push_str(&self.flags);
        header
    }
}

/// The value of `name` when the request has exactly one such header: W3C trace context
/// treats several `traceparent` headers as an invalid parent, so a new trace starts.
pub fn single_header<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// A new request id: 32 hex digits, the process's random prefix and a scrambled
/// counter, so unique in the process.
pub fn new_request_id() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, process_seed());
    push_hex(&mut id, random_u64());
    id
}

/// Appends `v` as 16 lower-case hex digits (as `{v:016x}`, without the formatter).
pub fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[(v >> (shift * 4)) as usize & 0xf]));
    }
}

fn parse(v: &str) -> Option<TraceContext> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    // Version ff is forbidden; version 00 has exactly four fields.
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| TraceContext {
        trace_id: trace.to_owned(),
        flags: flags.to_owned(),
    })
}

/// A random value fixed for the life of the process.
pub fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    })
}

/// Unpredictable enough for trace and request ids (not for secrets): the process seed
/// scrambled with a counter, so no two calls in a process return the same value.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = process_seed();
    splitmix64(seed ^ splitmix64(COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// A bijection on u64 that scatters consecutive inputs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_traceparents_are_no_parent() {
        let name = http::HeaderName::from_static("traceparent");
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut h = http::HeaderMap::new();
        h.append(&name, valid.parse().unwrap());
        assert_eq!(single_header(&h, &name), Some(valid));
        h.append(&name, valid.parse().unwrap());
        assert_eq!(single_header(&h, &name), None);
        assert_ne!(
            TraceContext::from_header(single_header(&h, &name)).trace_id,
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn hex_ids_match_the_formatter() {
        for v in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut s = String::new();
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v:016x}"));
        }
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_request_id());
        let t = TraceContext::from_header(None);
        let h = t.child_header();
        assert!(
            h.starts_with(&format!("00-{}-", t.trace_id)) && h.ends_with("-01"),
            "{h}"
        );
        assert_eq!(h.len(), 55);
    }

    #[test]
    fn continues_valid_traces_and_replaces_invalid_ones() {
        let t = TraceContext::from_header(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child_header();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(&child[36..52], "00f067aa0ba902b7", "a new parent id");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let t = TraceContext::from_header(Some(bad));
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert_eq!(t.trace_id.len(), 32);
        }
        assert_ne!(
            TraceContext::from_header(None).trace_id,
            TraceContext::from_header(None).trace_id
        );
    }
}
