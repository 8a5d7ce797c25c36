//! The ids Lambda hands a runtime: request ids and X-Ray trace ids.

/// A Lambda request id: a random UUID (version 4 layout).
pub(super) fn uuid() -> String {
    let hex = crate::trace::new_request_id();
    let mut b: Vec<char> = hex.chars().collect();
    b[12] = '4';
    let variant = b[16].to_digit(16).unwrap_or(0) & 3;
    b[16] = char::from_digit(8 + variant, 16).unwrap_or('8');
    let s: String = b.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// An X-Ray `Lambda-Runtime-Trace-Id` for a W3C trace: its 32 digits as the root (the
/// first 8 as X-Ray's time part), a new parent and the sampled flag.
pub fn xray_trace_id(trace_id: &str, flags: &str) -> String {
    if trace_id.len() != 32 {
        return String::new();
    }
    let mut parent = String::with_capacity(16);
    crate::trace::push_hex(&mut parent, crate::trace::random_u64());
    let sampled = u8::from_str_radix(flags, 16).map_or(0, |f| f & 1);
    format!(
        "Root=1-{}-{};Parent={parent};Sampled={sampled}",
        &trace_id[..8],
        &trace_id[8..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_lambdas() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, uuid());
        let x = xray_trace_id("0af7651916cd43dd8448eb211c80319c", "01");
        assert!(
            x.starts_with("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent="),
            "{x}"
        );
        assert!(x.ends_with(";Sampled=1"));
        assert_eq!(xray_trace_id("short", "01"), "");
    }
}
