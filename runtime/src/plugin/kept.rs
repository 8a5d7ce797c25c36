//! Values a plugin keeps between calls (`host.kept`, `host.keep`, WIT 0.1.4): one
//! bounded map per loaded version, shared by every call, instance and worker of it. A
//! plugin is fresh on every call by default; this is where it puts what it would
//! otherwise work out again on each (a key set it fetched, a parsed document).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Longest key.
pub const MAX_KEY: usize = 256;
/// Largest value.
pub const MAX_VALUE: usize = 1024 * 1024;
/// Most keys per loaded version.
pub const MAX_KEYS: usize = 1024;
/// Most bytes of keys and values together per loaded version.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest a value is kept.
pub const MAX_SECONDS: u32 = 86_400;

/// One version's kept values.
#[derive(Default)]
pub struct Kept {
    inner: RwLock<Values>,
}

#[derive(Default)]
struct Values {
    map: HashMap<String, (Vec<u8>, Instant)>,
    /// Bytes of keys and values in `map`.
    bytes: usize,
}

impl Values {
    fn remove(&mut self, key: &str) {
        if let Some((value, _)) = self.map.remove(key) {
            self.bytes -= key.len() + value.len();
        }
    }

    /// Whether `bytes` more bytes and one more key fit within `keys` and `total`.
    fn fits(&self, bytes: usize, keys: usize, total: usize) -> bool {
        self.map.len() < keys && self.bytes + bytes <= total
    }

    /// Drops what is expired at `now`; if that is not room enough for `bytes` more
    /// bytes and one more key, what is closest to its end, down to seven eighths of the
    /// bounds, so that a plugin keeping a new key on every call sorts its values once
    /// per many calls, not on each.
    fn make_room(&mut self, bytes: usize, now: Instant) {
        if self.fits(bytes, MAX_KEYS, MAX_BYTES) {
            return;
        }
        self.map.retain(|_, (_, until)| *until > now);
        self.bytes = self.map.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
        if self.fits(bytes, MAX_KEYS, MAX_BYTES) {
            return;
        }
        let mut by_end: Vec<(Instant, String)> = self
            .map
            .iter()
            .map(|(k, (_, until))| (*until, k.clone()))
            .collect();
        by_end.sort_unstable();
        for (_, key) in by_end {
            if self.fits(bytes, MAX_KEYS / 8 * 7, MAX_BYTES / 8 * 7) {
                break;
            }
            self.remove(&key);
        }
    }
}

impl Kept {
    /// The value under `key`, unless its time was up by `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let values = self.inner.read().unwrap_or_else(|p| p.into_inner());
        values
            .map
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value.clone())
    }

    /// Keeps `value` under `key` for `seconds` from `now` (at most [`MAX_SECONDS`];
    /// 0 removes it). False when a key or value is over its bound (then nothing under
    /// `key` is kept).
    pub fn put(&self, key: String, value: Vec<u8>, seconds: u32, now: Instant) -> bool {
        let mut values = self.inner.write().unwrap_or_else(|p| p.into_inner());
        values.remove(&key);
        if seconds == 0 {
            return true;
        }
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return false;
        }
        values.make_room(key.len() + value.len(), now);
        let until = now + Duration::from_secs(seconds.min(MAX_SECONDS).into());
        values.bytes += key.len() + value.len();
        values.map.insert(key, (value, until));
        true
    }

    /// How many values and bytes are kept (expired ones included until room is made).
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let values = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (values.map.len(), values.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_last_their_seconds_and_zero_removes() {
        let kept = Kept::default();
        let t0 = Instant::now();
        assert!(kept.put("jwks".into(), b"{}".to_vec(), 60, t0));
        assert_eq!(
            kept.get("jwks", t0 + Duration::from_secs(59)),
            Some(b"{}".to_vec())
        );
        assert_eq!(kept.get("jwks", t0 + Duration::from_secs(60)), None);
        assert_eq!(kept.get("other", t0), None);
        // Replaced, then removed.
        assert!(kept.put("jwks".into(), b"[1]".to_vec(), 60, t0));
        assert_eq!(kept.get("jwks", t0), Some(b"[1]".to_vec()));
        assert_eq!(kept.size(), (1, 7));
        assert!(kept.put("jwks".into(), Vec::new(), 0, t0));
        assert_eq!(kept.get("jwks", t0), None);
        assert_eq!(kept.size(), (0, 0));
        // At most a day.
        assert!(kept.put("k".into(), vec![1], u32::MAX, t0));
        assert!(kept.get("k", t0 + Duration::from_secs(86_399)).is_some());
        assert!(kept.get("k", t0 + Duration::from_secs(86_400)).is_none());
    }

    #[test]
    fn keys_and_values_over_their_bounds_are_refused() {
        let kept = Kept::default();
        let t0 = Instant::now();
        assert!(kept.put("k".into(), vec![0; MAX_VALUE], 60, t0));
        // A refused value also removes the old one: `kept` never answers with what the
        // plugin meant to replace.
        assert!(!kept.put("k".into(), vec![0; MAX_VALUE + 1], 60, t0));
        assert_eq!(kept.get("k", t0), None);
        assert!(!kept.put("x".repeat(MAX_KEY + 1), vec![1], 60, t0));
        assert!(kept.put("x".repeat(MAX_KEY), vec![1], 60, t0));
    }

    #[test]
    fn a_full_map_drops_the_expired_then_those_closest_to_their_end() {
        let kept = Kept::default();
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            // Key i lives i + 10 seconds; key 0 only 1.
            let seconds = if i == 0 { 1 } else { i as u32 + 10 };
            assert!(kept.put(format!("k{i}"), vec![0], seconds, t0));
        }
        assert_eq!(kept.size().0, MAX_KEYS);
        let later = t0 + Duration::from_secs(2);
        // k0 expired: it makes room, and nothing else goes.
        assert!(kept.put("new".into(), vec![1], 3600, later));
        assert_eq!(kept.size().0, MAX_KEYS);
        assert!(kept.get("k1", later).is_some());
        // Nothing expired: those closest to their end go, down to 7/8 of the keys.
        assert!(kept.put("newer".into(), vec![2], 60, later));
        assert_eq!(kept.size().0, MAX_KEYS / 8 * 7);
        assert_eq!(kept.get("k129", later), None);
        assert!(kept.get("k130", later).is_some());
        assert!(kept.get("new", later).is_some() && kept.get("newer", later).is_some());
        // The next keeps find room without dropping anything.
        assert!(kept.put("newest".into(), vec![3], 60, later));
        assert_eq!(kept.size().0, MAX_KEYS / 8 * 7 + 1);

        // Bytes: eight values of 1 MiB fill it; the ninth pushes out those closest to
        // their end, down to 7/8 of the bytes with it.
        let kept = Kept::default();
        for i in 0..8u32 {
            assert!(kept.put(format!("{i}"), vec![0; MAX_VALUE - 1], 100 + i, t0));
        }
        assert_eq!(kept.size().1, MAX_BYTES);
        assert!(kept.put("9".into(), vec![0; MAX_VALUE - 1], 50, t0));
        assert!(kept.size().1 <= MAX_BYTES / 8 * 7);
        assert_eq!(kept.get("0", t0), None);
        assert_eq!(kept.get("1", t0), None);
        assert!(kept.get("2", t0).is_some() && kept.get("9", t0).is_some());
    }
}
