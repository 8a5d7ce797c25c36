//! The on-disk cache of compiled plugins, so a restart (or a reload of an unchanged
//! file) does not run Cranelift again.
//!
//! Entries live in `DIR/<engine>/<sha256 of the component>.cwasm`, where `<engine>` is a
//! digest of wasmtime's `precompile_compatibility_hash` (the wasmtime version and every
//! setting that changes generated code): an engine never even looks at another engine's
//! entries. Each file is `MAGIC | sha256(artifact) | artifact`; the digest is checked
//! before the artifact is handed to wasmtime, so a truncated, corrupted or foreign file
//! is ignored (and replaced), never trusted. Writes go to a temporary file renamed into
//! place, so readers see a whole entry or none.
//!
//! The cache is kept under `max_size`: a hit refreshes an entry's modification time, and
//! each new entry evicts the least recently used ones (this engine's or any older
//! engine's) until the directory fits. Temporary files a crash left behind go after an
//! hour.
//!
//! The digest protects against accidents, not against an attacker who can write the
//! directory (they could write a matching digest): keep the directory writable by the
//! gateway's user only, as any directory of executable code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Identifies the file format; bump it when the layout changes.
const MAGIC: &[u8; 16] = b"weir-cwasm-v1\n\0\0";
const DIGEST_LEN: usize = 32;

/// How old a temporary file must be before it counts as left over from a crash.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A directory of compiled components for one engine.
pub(super) struct DiskCache {
    root: PathBuf,
    dir: PathBuf,
    max_size: u64,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// A verified entry, deserialized.
    Hit(Component),
    /// No entry.
    Miss,
    /// An entry that failed verification or deserialization; it will be replaced.
    Rejected(String),
}

impl DiskCache {
    /// The cache under `root` for `engine`'s settings, kept under `max_size` bytes.
    pub(super) fn new(root: &Path, engine: &Engine, max_size: u64) -> Self {
        let mut hasher = DigestHasher(Sha256::new());
        "weir plugin cache".hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        Self {
            root: root.to_owned(),
            dir: root.join(engine_key),
            max_size,
        }
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The compiled form of the component whose digest is `sha256`, if a sound entry
    /// exists.
    pub(super) fn get(&self, engine: &Engine, sha256: &str) -> Lookup {
        let path = self.entry(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Rejected(format!("reading {}: {e}", path.display())),
        };
        let Some(artifact) = verified(&bytes) else {
            return Lookup::Rejected(format!(
                "{} is damaged or not a Weir cache entry",
                path.display()
            ));
        };
        match deserialize(engine, artifact) {
            Ok(component) => {
                // Recently used: the last to be evicted.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Lookup::Hit(component)
            }
            Err(e) => Lookup::Rejected(format!("{}: {e:#}", path.display())),
        }
    }

    /// Stores `artifact` (from `Engine::precompile_component`) for `sha256`.
    pub(super) fn put(&self, sha256: &str, artifact: &[u8]) -> std::io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir)?;
        let path = self.entry(sha256);
        let tmp = self.dir.join(format!(
            ".{sha256}.{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = Vec::with_capacity(MAGIC.len() + DIGEST_LEN + artifact.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        let written = std::fs::write(&tmp, &file).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        let evicted = self.prune(&path);
        if evicted > 0 {
            tracing::info!(dir = %self.root.display(), evicted, "plugin cache over its size; least recently used entries removed");
        }
        Ok(())
    }

    /// Removes the least recently used entries (never `keep`) until the cache fits
    /// `max_size`, and stale temporary files; returns how many entries went.
    fn prune(&self, keep: &Path) -> usize {
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let engines = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten();
        for file in
            engines.flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        {
            let (path, Ok(meta)) = (file.path(), file.metadata()) else {
                continue;
            };
            let modified = meta.modified().unwrap_or(now);
            let name = file.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                if now
                    .duration_since(modified)
                    .is_ok_and(|age| age > STALE_TMP)
                {
                    let _ = std::fs::remove_file(&path);
                }
            } else if name.ends_with(".cwasm") && meta.is_file() {
                entries.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        let mut evicted = 0;
        for (_, len, path) in entries {
            if total <= self.max_size {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
                evicted += 1;
            }
        }
        evicted
    }
}

/// The artifact inside a cache file, if the magic and digest match.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < DIGEST_LEN {
        return None;
    }
    let (digest, artifact) = rest.split_at(DIGEST_LEN);
    (Sha256::digest(artifact).as_slice() == digest).then_some(artifact)
}

/// Loads an artifact made by `Engine::precompile_component`: one just made, or one
/// read back from the cache by [`DiskCache::get`]. (One of three `unsafe` blocks in Weir, with
/// `engine::return_freed_memory` and `lambda::supervisor::die_with_gateway`.)
#[allow(unsafe_code)]
pub(super) fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` maps the machine code in `artifact` as
    // executable, so it must be the output of `Engine::precompile_component`. Both
    // callers guarantee that: the compile path passes the artifact it just made (here
    // or, through a pipe only it holds, in a child process of this executable), and
    // `get` passes only bytes whose SHA-256 matches the digest `put` wrote beside such
    // an artifact, from a directory keyed by this engine's compatibility hash. wasmtime
    // also checks the artifact's header against the engine's version and settings.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Feeds `Hash` impls into SHA-256, so the digest does not depend on std's hasher.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_entries_go_when_over_size() {
        let root = std::env::temp_dir().join(format!("weir-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let engine = Engine::default();
        // Each file is 16 + 32 + 1000 bytes; room for two.
        let cache = DiskCache::new(&root, &engine, 2 * 1048 + 10);
        let old_engine = root.join("0123456789abcdef");
        std::fs::create_dir_all(&old_engine).unwrap();
        std::fs::write(old_engine.join("old.cwasm"), [0u8; 1048]).unwrap();
        let stale = old_engine.join(".x.1.2.tmp");
        std::fs::write(&stale, b"half").unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(7200);
        for path in [old_engine.join("old.cwasm"), stale.clone()] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let names = |dir: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        cache.put("a", &[1; 1000]).unwrap();
        assert!(!stale.exists(), "temporary files of a crash are removed");
        assert!(
            old_engine.join("old.cwasm").exists(),
            "fits: nothing evicted"
        );
        std::thread::sleep(Duration::from_millis(20));
        cache.put("b", &[2; 1000]).unwrap();
        assert!(
            names(&old_engine).is_empty(),
            "the oldest, another engine's, went first"
        );
        assert_eq!(names(&cache.dir), ["a.cwasm", "b.cwasm"]);
        std::thread::sleep(Duration::from_millis(20));
        cache.put("c", &[3; 1000]).unwrap();
        assert_eq!(names(&cache.dir), ["b.cwasm", "c.cwasm"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn damaged_entries_are_not_verified() {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(b"artifact"));
        file.extend_from_slice(b"artifact");
        assert_eq!(verified(&file), Some(&b"artifact"[..]));
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verified(&flipped), None);
        assert_eq!(verified(&file[..40]), None);
        assert_eq!(verified(b"\0asm\x0d\0\x01\0"), None);
    }
}
