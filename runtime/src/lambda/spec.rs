//! `[functions.NAME]` checked and resolved into the settings a function runs with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{MAX_CONCURRENCY, MAX_IDLE_TIMEOUT, MAX_TIMEOUT};
use crate::config::Config;

/// A function's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory (resolved against the config file).
    pub dir: PathBuf,
    /// Environment variables from the config.
    pub env: BTreeMap<String, String>,
    /// Most processes.
    pub concurrency: usize,
    /// Processes kept started.
    pub min_warm: usize,
    /// Per invocation.
    pub timeout: Duration,
    /// Invocations that may wait.
    pub max_queue: usize,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_size: u32,
    /// How long a process above `min_warm` may wait for work before it is stopped.
    pub idle_timeout: Duration,
}

/// Checks every `[functions.NAME]` table; errors name the key.
pub fn specs(
    config: &Config,
    base_dir: &Path,
    errors: &mut Vec<String>,
) -> BTreeMap<String, FunctionSpec> {
    let mut out = BTreeMap::new();
    for (name, f) in &config.functions {
        let at = format!("functions.{name}");
        let before = errors.len();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errors.push(format!(
                "{at}: a function name is 1 to 64 letters, digits, `-` or `_`"
            ));
        }
        if f.command.is_empty() || f.command[0].is_empty() {
            errors.push(format!("{at}.command: must name a program"));
        }
        if f.command.iter().any(|a| a.contains('\0')) {
            errors.push(format!("{at}.command: must not contain NUL characters"));
        }
        if !(1..=MAX_CONCURRENCY).contains(&f.concurrency) {
            errors.push(format!(
                "{at}.concurrency: must be between 1 and {MAX_CONCURRENCY}"
            ));
        }
        if f.min_warm > f.concurrency {
            errors.push(format!("{at}.min_warm: must be at most concurrency"));
        }
        if f.timeout < Duration::from_secs(1) || f.timeout > MAX_TIMEOUT {
            errors.push(format!("{at}.timeout: must be between 1s and 15m"));
        }
        let max_queue = f.max_queue.unwrap_or(f.concurrency.saturating_mul(10));
        if !(1..=100_000).contains(&max_queue) {
            errors.push(format!("{at}.max_queue: must be between 1 and 100000"));
        }
        if f.idle_timeout < Duration::from_secs(1) || f.idle_timeout > MAX_IDLE_TIMEOUT {
            errors.push(format!("{at}.idle_timeout: must be between 1s and 24h"));
        }
        if !(128..=10_240).contains(&f.memory_size) {
            errors.push(format!(
                "{at}.memory_size: must be between 128 and 10240 (MB)"
            ));
        }
        for (k, v) in &f.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                errors.push(format!("{at}.env: `{k}` is not a valid variable"));
            } else if k == "AWS_LAMBDA_RUNTIME_API" {
                errors.push(format!("{at}.env: `{k}` is set by the gateway"));
            }
        }
        let dir = match &f.dir {
            Some(d) => base_dir.join(d),
            None => base_dir.to_owned(),
        };
        if !dir.is_dir() {
            errors.push(format!("{at}.dir: `{}` is not a directory", dir.display()));
        }
        if errors.len() > before {
            continue;
        }
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        out.insert(
            name.clone(),
            FunctionSpec {
                command: f.command.clone(),
                dir,
                env: f.env.clone(),
                concurrency: f.concurrency as usize,
                min_warm: f.min_warm as usize,
                timeout: f.timeout,
                max_queue: max_queue as usize,
                memory_size: f.memory_size,
                idle_timeout: f.idle_timeout,
            },
        );
    }
    out
}
