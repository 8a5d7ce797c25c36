//! Reading a component file: only a regular file, opened without blocking (a FIFO
//! named as `file` would otherwise stall the reload until someone wrote to it), and
//! only up to a size (`limits.max_plugin_size`): `/dev/zero` or a runaway build must
//! not fill the gateway's memory.

use std::io::Read;
use std::path::Path;

/// The bytes of the component at `path`, if it is a regular file of at most `max`
/// bytes. The error says which of those it is not.
pub fn read_component(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    // A path that names no regular file is refused before it is opened; opening a
    // FIFO for reading waits for a writer.
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        // And should the file be replaced by a FIFO in between, the open does not wait.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never take more than the limit.
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

fn not_regular() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")
}

fn too_large(max: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "larger than limits.max_plugin_size ({})",
            bytesize::ByteSize::b(max).display().iec()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_limit_only() {
        let dir = std::env::temp_dir().join(format!("weir-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.wasm");
        std::fs::write(&file, [1u8; 100]).unwrap();
        assert_eq!(read_component(&file, 100).unwrap().len(), 100);
        let err = read_component(&file, 99).unwrap_err();
        assert!(err.to_string().contains("max_plugin_size"), "{err}");
        let err = read_component(&dir, 1000).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = read_component(Path::new("/dev/zero"), 1000).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        #[cfg(unix)]
        {
            let fifo = dir.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let err = read_component(&fifo, 1000).unwrap_err();
                assert!(err.to_string().contains("not a regular file"), "{err}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
