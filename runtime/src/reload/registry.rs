//! What the reloader holds between reloads: one entry per plugin (its compiled code,
//! serving version, settings and source), the settings read only at start, and what
//! `GET /admin/plugins` and `weir_plugin_info` show of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::gateway::{Gateway, PluginSettings};
use crate::plugin::{AnyPlugin, CallCounts, Compiled};

/// Where the serving version of a plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The file named in the config.
    File,
    /// The admin API.
    Upload,
}

/// One plugin as the reloader knows it.
pub(super) struct Entry {
    pub(super) compiled: Compiled,
    pub(super) plugin: AnyPlugin,
    pub(super) settings: PluginSettings,
    pub(super) source: Source,
    /// SHA-256 of the file's content when it was last read (`None`: no file).
    pub(super) file_sha256: Option<Arc<str>>,
    pub(super) counts: Arc<CallCounts>,
}

/// What the reloader holds between reloads.
pub(super) struct Registry {
    pub(super) config: Option<Config>,
    /// The settings the process read once, from the config it started with.
    pub(super) started: Option<StartOnly>,
    pub(super) entries: BTreeMap<String, Entry>,
}

/// The settings read only at start: the listeners, workers and connection handling of
/// `[server]` (its `stage` and `body_read_timeout` are per request, so a reload applies
/// them), `[admin]`, `[reload]`, `[plugin_cache]`, the quota file and
/// `limits.compile_memory` and `[cluster]`. A reload that changes them applies everything else and
/// names these (`restart_needed`).
pub(super) struct StartOnly {
    pub(super) server: config::Server,
    pub(super) admin: Option<config::Admin>,
    pub(super) reload: config::Reload,
    pub(super) plugin_cache: config::PluginCache,
    pub(super) quota_file: Option<PathBuf>,
    pub(super) compile_memory: bytesize::ByteSize,
    pub(super) cluster: Option<config::Cluster>,
}

impl StartOnly {
    pub(super) fn of(config: &Config) -> Self {
        Self {
            server: config.server.clone(),
            admin: config.admin.clone(),
            reload: config.reload.clone(),
            plugin_cache: config.plugin_cache.clone(),
            quota_file: config.api.quota_file.clone(),
            compile_memory: config.limits.compile_memory,
            cluster: config.cluster.clone(),
        }
    }

    /// The keys `config` sets differently from the running process.
    pub(super) fn changed_in(&self, config: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &config.server);
        [
            ("server.listen", a.listen != b.listen),
            ("server.workers", a.workers != b.workers),
            (
                "server.upstream_ca_file",
                a.upstream_ca_file != b.upstream_ca_file,
            ),
            (
                "server.tls_cert",
                a.tls_cert != b.tls_cert || a.tls_key != b.tls_key,
            ),
            (
                "server.upstream_client_cert",
                a.upstream_client_cert != b.upstream_client_cert
                    || a.upstream_client_key != b.upstream_client_key,
            ),
            (
                "server.max_connections",
                a.max_connections != b.max_connections,
            ),
            (
                "server.header_read_timeout",
                a.header_read_timeout != b.header_read_timeout,
            ),
            (
                "server.shutdown_grace",
                a.shutdown_grace != b.shutdown_grace,
            ),
            ("admin", self.admin != config.admin),
            ("reload", self.reload != config.reload),
            ("cluster", self.cluster != config.cluster),
            ("plugin_cache", self.plugin_cache != config.plugin_cache),
            ("api.quota_file", self.quota_file != config.api.quota_file),
            (
                "limits.compile_memory",
                self.compile_memory != config.limits.compile_memory,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// A plugin as `GET /admin/plugins` shows it.
#[derive(Debug, serde::Serialize)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its world.
    pub world: &'static str,
    /// SHA-256 of the serving component.
    pub sha256: String,
    /// Where it came from.
    pub source: Source,
    /// When the serving version was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// Routes (and `api.cors`) that use it.
    pub used_by: Vec<String>,
    /// Calls by outcome, across versions.
    pub calls: crate::plugin::CallTotals,
}

impl Entry {
    pub(super) fn clone_entry(&self) -> Entry {
        Entry {
            compiled: self.compiled.clone(),
            plugin: self.plugin.clone(),
            settings: self.settings.clone(),
            source: self.source,
            file_sha256: self.file_sha256.clone(),
            counts: self.counts.clone(),
        }
    }
}

pub(super) fn info(name: &str, e: &Entry, gateway: &Gateway) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        world: e.settings.world.name(),
        sha256: e.compiled.sha256().to_string(),
        source: e.source,
        loaded_at: humantime::format_rfc3339_millis(e.plugin.loaded_at()).to_string(),
        used_by: gateway.uses_of(name),
        calls: e.counts.totals(),
    }
}

/// `weir_plugin_info{plugin, world, sha256}`: 1 for the serving version, 0 for the one
/// it replaced.
pub(super) fn publish_info(name: &str, old: Option<&Entry>, new: &Entry) {
    if let Some(old) = old
        && old.compiled.sha256() != new.compiled.sha256()
    {
        info_gauge(name, old, 0.0);
    }
    info_gauge(name, new, 1.0);
}

pub(super) fn info_gauge(name: &str, e: &Entry, value: f64) {
    metrics::gauge!(
        "weir_plugin_info",
        "plugin" => name.to_owned(),
        "world" => e.settings.world.name(),
        "sha256" => e.compiled.sha256().to_string()
    )
    .set(value);
}
