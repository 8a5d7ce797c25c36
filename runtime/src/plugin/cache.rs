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
//! The digest protects against accidents, not against an attacker who can write the
//! directory (they could write a matching digest): keep the directory writable by the
//! gateway's user only, as any directory of executable code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Identifies the file format; bump it when the layout changes.
const MAGIC: &[u8; 16] = b"weir-cwasm-v1\n\0\0";
const DIGEST_LEN: usize = 32;

/// A directory of compiled components for one engine.
pub(super) struct DiskCache {
    dir: PathBuf,
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
    /// The cache under `root` for `engine`'s settings.
    pub(super) fn new(root: &Path, engine: &Engine) -> Self {
        let mut hasher = DigestHasher(Sha256::new());
        "weir plugin cache".hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        Self {
            dir: root.join(engine_key),
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
            Ok(component) => Lookup::Hit(component),
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
        written
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
/// read back from the cache by [`DiskCache::get`]. The only `unsafe` in Weir.
#[allow(unsafe_code)]
pub(super) fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` maps the machine code in `artifact` as
    // executable, so it must be the output of `Engine::precompile_component`. Both
    // callers guarantee that: the compile path passes the artifact it just made, and
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
