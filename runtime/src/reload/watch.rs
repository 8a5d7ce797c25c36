//! Reloads when the config file or a plugin file it names changes on disk.
//!
//! The directories holding those files are watched (not the files: editors and
//! `mv`/`cp` replace a file by renaming over it). After a change, the reload waits until
//! the changed files have been quiet for the debounce time and their size and
//! modification time stayed the same across one more short wait, so a file still being
//! written is not loaded half-way; a half-written component that slips through is
//! refused by the checks anyway, and the write that completes it triggers another
//! reload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};

use super::Reloader;

/// Starts watching the files of `reloader` and returns the task that reloads on a
/// change (until it is aborted). The directories are watched when this returns, so a
/// change made right after the gateway says it is listening is not missed.
pub async fn start(reloader: Arc<Reloader>, debounce: Duration) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
        {
            let _ = tx.send(event.paths);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; reload through the admin API");
            return tokio::spawn(async {});
        }
    };
    let mut watched = Watched::default();
    watched.update(&mut watcher, reloader.watched_files().await);
    tokio::spawn(run(reloader, debounce, watcher, watched, rx))
}

async fn run(
    reloader: Arc<Reloader>,
    debounce: Duration,
    mut watcher: impl Watcher,
    mut watched: Watched,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<PathBuf>>,
) {
    loop {
        let Some(paths) = rx.recv().await else {
            return;
        };
        let mut changed: BTreeSet<PathBuf> = watched.relevant(paths).collect();
        if changed.is_empty() {
            continue;
        }
        // Quiet for `debounce`, then the same size and mtime a little later.
        loop {
            match tokio::time::timeout(debounce, rx.recv()).await {
                Ok(Some(paths)) => changed.extend(watched.relevant(paths)),
                Ok(None) => return,
                Err(_) => {
                    let before = stats(&changed);
                    tokio::time::sleep(debounce / 4).await;
                    if stats(&changed) == before {
                        break;
                    }
                }
            }
        }
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        let why = format!("file change: {}", names.join(", "));
        // The outcome is logged (and counted) by the reloader.
        let _ = reloader.reload_config(&why).await;
        watched.update(&mut watcher, reloader.watched_files().await);
    }
}

type Stat = Option<(u64, Option<SystemTime>)>;

fn stats(files: &BTreeSet<PathBuf>) -> BTreeMap<PathBuf, Stat> {
    files
        .iter()
        .map(|f| {
            let stat = std::fs::metadata(f)
                .ok()
                .map(|m| (m.len(), m.modified().ok()));
            (f.clone(), stat)
        })
        .collect()
}

/// The watched directories and the files in them that matter.
#[derive(Default)]
struct Watched {
    dirs: BTreeSet<PathBuf>,
    files: BTreeSet<PathBuf>,
}

impl Watched {
    fn relevant(&self, paths: Vec<PathBuf>) -> impl Iterator<Item = PathBuf> + '_ {
        paths.into_iter().filter(|p| self.files.contains(p))
    }

    fn update(&mut self, watcher: &mut impl Watcher, files: Vec<PathBuf>) {
        let mut dirs = BTreeSet::new();
        self.files.clear();
        for file in files {
            let Some((dir, name)) = split(&file) else {
                continue;
            };
            self.files.insert(dir.join(name));
            dirs.insert(dir);
        }
        for gone in self.dirs.difference(&dirs) {
            let _ = watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(e) = watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %new.display(), error = %e, "cannot watch a directory");
            }
        }
        self.dirs = dirs;
    }
}

/// The canonical directory of `file` and its name (the file itself may not exist).
fn split(file: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let name = file.file_name()?.to_owned();
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some((dir.canonicalize().ok()?, name))
}
