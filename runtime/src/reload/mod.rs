//! Loading and replacing plugins and config while the gateway serves.
//!
//! The request path reads one [`Gateway`] snapshot (routes and plugins together) from
//! an [`ArcSwap`] at the start of each request and keeps it to the end, so in-flight
//! requests finish on the version they began with, and a version is freed when its
//! last request ends. A [`Reloader`] builds new snapshots off the request path — each
//! new component is compiled on the blocking pool (or taken from the disk cache),
//! checked against its world and smoke-tested — and swaps them in whole. Anything that
//! fails is refused with a reason and the old snapshot keeps serving.
//!
//! Three things start a reload: the admin API ([`crate::admin::plugins`], `PUT`/`DELETE /admin/plugins/{name}`,
//! `POST /admin/reload`), a change to the config file or a plugin file ([`watch`]), and
//! the initial load at start. Reloads run one at a time. Throttle buckets and quota
//! counters live outside the snapshots ([`UsageState`]), so no reload resets a limit.
//!
//! Where a plugin's bytes come from: its `file`, until a component is uploaded for it
//! through the admin API; the upload then serves until it is replaced, deleted, or the
//! file changes on disk (the newer of the two wins). Uploads live in memory only: after
//! a restart the files named in the config are loaded again.

pub mod check;
mod operations;
mod probe;
mod registry;
pub mod watch;

pub use check::{CheckArgs, CheckError, CheckReport, check};
use registry::{Entry, Registry, StartOnly, info, publish_info};
pub use registry::{PluginInfo, Source};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

pub use crate::gateway::LiveGateway;
use sha2::{Digest, Sha256};

use crate::config::{Config, World};
use crate::gateway::{self, ConfigErrors, Gateway, PluginSettings};
use crate::integrate::UpstreamTls;
use crate::lambda::Functions;
use crate::plugin::{AnyPlugin, CallCounts, Compiled, LoadError, PluginHost};
use crate::pool::Pools;
use crate::usage::UsageState;

/// Builds gateway snapshots and swaps them in; see the module docs.
pub struct Reloader {
    live: Option<LiveGateway>,
    host: Arc<PluginHost>,
    config_path: PathBuf,
    base_dir: PathBuf,
    state: Arc<UsageState>,
    /// The functions' processes, kept across reloads.
    functions: Arc<Functions>,
    /// The upstream pools and their targets' health, kept across reloads.
    pools: Pools,
    /// Whether pools run their health checks and name resolutions (not in `weir
    /// validate`).
    pool_tasks: bool,
    registry: tokio::sync::Mutex<Registry>,
    /// `limits.max_plugin_size` of the config in force: the largest upload read.
    max_plugin_size: std::sync::atomic::AtomicU64,
    /// The registry's entries as `GET /admin/plugins` shows them, published after every
    /// change so that a listing never waits for a load in progress.
    listing: ArcSwap<Vec<(String, Entry)>>,
}

/// Why an admin API change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The component is not a component (400).
    #[error("{0}")]
    NotAComponent(String),
    /// The component failed a check: compile, world (422).
    #[error("{0}")]
    Invalid(String),
    /// The component failed its smoke test (422): the reason, with what the guest
    /// wrote during the call.
    #[error("{message}")]
    SmokeTest {
        /// The whole reason, guest output included.
        message: String,
        /// The guest's lines (see [`crate::plugin::GuestOutput`]).
        output: Vec<String>,
    },
    /// No such plugin (404).
    #[error("{0}")]
    NotFound(String),
    /// The plugin is in use (409).
    #[error("{0}")]
    InUse(String),
    /// The config (file) is wrong; one line per problem (422).
    #[error("{0}")]
    Config(ConfigErrors),
}

/// What a successful reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reloaded {
    /// Routes now served.
    pub routes: usize,
    /// Plugins whose serving version changed (new bytes or new settings).
    pub changed: Vec<String>,
    /// Plugins that are gone.
    pub removed: Vec<String>,
    /// Settings the config now sets differently that take effect only after a restart;
    /// the running values stay until then.
    pub restart_needed: Vec<&'static str>,
}

/// The refusal of a version whose smoke test failed.
pub(crate) fn smoke_refusal(e: &crate::plugin::PluginError) -> Refused {
    Refused::SmokeTest {
        message: format!("refused by the smoke test: {e}"),
        output: e
            .guest_output()
            .map(|o| o.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

fn sha256_hex(bytes: &[u8]) -> Arc<str> {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

impl Reloader {
    /// A reloader for the config at `config_path`; nothing is loaded until
    /// [`Reloader::reload_config`].
    pub fn new(config_path: &Path, host: Arc<PluginHost>, state: Arc<UsageState>) -> Self {
        let base_dir = crate::config::base_dir(config_path);
        Self {
            live: None,
            host,
            config_path: config_path.to_owned(),
            base_dir,
            state,
            functions: Arc::default(),
            pools: Pools::default(),
            pool_tasks: false,
            registry: tokio::sync::Mutex::new(Registry {
                config: None,
                started: None,
                entries: BTreeMap::new(),
            }),
            max_plugin_size: crate::plugin::DEFAULT_MAX_PLUGIN_SIZE.into(),
            listing: ArcSwap::default(),
        }
    }

    /// Loads the config file and its plugins; the first successful call creates the
    /// live snapshot, later ones swap it.
    pub async fn start(mut self) -> Result<Arc<Self>, Refused> {
        let built = self.build_from_file().await;
        // This thread read the files and ran the smoke tests.
        crate::plugin::return_freed_memory();
        let (gateway, _, registry) = built?;
        self.publish(&registry);
        drop(registry);
        self.functions.start(&gateway.functions);
        self.functions.commit(&gateway.functions);
        self.commit_pools(&gateway);
        self.live = Some(Arc::new(ArcSwap::from_pointee(gateway)));
        Ok(Arc::new(self))
    }

    /// Runs the active health checks and name resolutions of upstream pools (on the
    /// runtime that calls [`Reloader::start`] and the reloads); pool targets verify
    /// `https://` with `tls`, with clients of their own in each of `workers` worker
    /// threads.
    pub fn with_health_checks(mut self, tls: &UpstreamTls, workers: usize) -> Self {
        self.pools.set_tls(tls.client_config(), workers);
        self.pool_tasks = true;
        self
    }

    /// Records the snapshot's pools as serving and starts the health tasks of new ones.
    fn commit_pools(&self, gateway: &Gateway) {
        self.pools.commit(&gateway.pools, |pool| {
            if self.pool_tasks {
                crate::integrate::health::spawn(pool);
                crate::integrate::resolve::spawn(pool);
            }
        });
    }

    /// The functions' processes (for readiness and shutdown).
    pub fn functions(&self) -> &Arc<Functions> {
        &self.functions
    }

    /// Swaps `gateway` in: its new functions start first, and those it no longer uses
    /// stop after.
    fn swap(&self, gateway: Gateway) {
        let gateway = Arc::new(gateway);
        self.functions.start(&gateway.functions);
        self.live().store(gateway.clone());
        self.functions.commit(&gateway.functions);
        self.commit_pools(&gateway);
    }

    /// The snapshot the workers read.
    pub fn live(&self) -> &LiveGateway {
        self.live
            .as_ref()
            .expect("Reloader::start loads a gateway first")
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Loads the config as `weir validate` does: every problem, one line each.
    pub async fn check(&self) -> Result<Gateway, Refused> {
        self.build_from_file().await.map(|(g, _, _)| g)
    }

    /// Re-reads the config file and the plugin files, and swaps in the result: routes
    /// and plugin bindings change together, or not at all.
    pub async fn reload_config(&self, why: &str) -> Result<Reloaded, Refused> {
        let result = self.build_from_file().await;
        // This thread read the files and ran the smoke tests.
        crate::plugin::return_freed_memory();
        let label = if result.is_ok() { "ok" } else { "refused" };
        metrics::counter!("weir_config_reloads_total", "result" => label).increment(1);
        match result {
            Ok((gateway, outcome, registry)) => {
                // Swapped while the registry is locked: reloads land in order.
                self.swap(gateway);
                self.publish(&registry);
                drop(registry);
                tracing::info!(
                    trigger = why,
                    routes = outcome.routes,
                    changed = ?outcome.changed,
                    removed = ?outcome.removed,
                    "config reloaded"
                );
                if !outcome.restart_needed.is_empty() {
                    tracing::warn!(
                        settings = ?outcome.restart_needed,
                        "changed settings that apply only at start; the running values stay until a restart"
                    );
                }
                Ok(outcome)
            }
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "reload refused; the running config keeps serving");
                Err(e)
            }
        }
    }

    /// Builds a gateway from the config file. On success the registry already holds
    /// its plugins; the caller swaps it in before it lets go of the registry's lock.
    async fn build_from_file(
        &self,
    ) -> Result<(Gateway, Reloaded, tokio::sync::MutexGuard<'_, Registry>), Refused> {
        let mut registry = self.registry.lock().await;
        let config = Config::load(&self.config_path)
            .map_err(|e| Refused::Config(ConfigErrors(vec![e.to_string()])))?;
        let mut errors = Vec::new();
        let max_plugin_size = config.limits.max_plugin_size.as_u64();
        self.max_plugin_size
            .store(max_plugin_size, std::sync::atomic::Ordering::Relaxed);
        let settings = gateway::plugin_settings(&config, &mut errors);
        let mut entries = BTreeMap::new();
        let mut changed = Vec::new();
        for (name, settings) in settings {
            let at = format!("plugins.{name}");
            let path = self.base_dir.join(&settings.file);
            let bytes = match crate::plugin::read_component(&path, max_plugin_size) {
                Ok(bytes) => bytes,
                Err(source) => {
                    let e = LoadError::Read {
                        plugin: name.clone(),
                        path: path.display().to_string(),
                        source,
                    };
                    errors.push(format!("{at}.file: {e}"));
                    continue;
                }
            };
            let file_sha = sha256_hex(&bytes);
            let old = registry.entries.get(&name);
            // An upload keeps serving while the file is the one it replaced.
            let keep_upload = old.is_some_and(|e| {
                e.source == Source::Upload
                    && e.file_sha256.as_deref() == Some(&*file_sha)
                    && e.settings.world == settings.world
            });
            let source = if keep_upload {
                Source::Upload
            } else {
                Source::File
            };
            let reusable = old.filter(|e| {
                e.settings.world == settings.world
                    && (keep_upload || *e.compiled.sha256() == file_sha)
            });
            let counts = old.map(|e| e.counts.clone()).unwrap_or_default();
            let compiled = match reusable {
                Some(e) => e.compiled.clone(),
                None => match self
                    .compile(&name, &path.display().to_string(), bytes, settings.world)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("{at}.file: {e}"));
                        continue;
                    }
                },
            };
            let plugin = match reusable.filter(|e| e.settings == settings) {
                Some(e) => e.plugin.clone(),
                None => {
                    let started = Instant::now();
                    match self
                        .bind(&name, &compiled, &settings, counts.clone(), started)
                        .await
                    {
                        Ok(p) => {
                            changed.push(name.clone());
                            p
                        }
                        Err(e) => {
                            errors.push(format!("{at}.file: {e}"));
                            continue;
                        }
                    }
                }
            };
            entries.insert(
                name,
                Entry {
                    compiled,
                    plugin,
                    settings,
                    source,
                    file_sha256: Some(file_sha),
                    counts,
                },
            );
        }
        // Plugins uploaded under names the config does not define stay.
        for (name, e) in &registry.entries {
            if e.file_sha256.is_none() && !config.plugins.contains_key(name) {
                entries.insert(name.clone(), e.clone_entry());
            }
        }
        let plugins = entries
            .iter()
            .map(|(n, e)| (n.clone(), e.plugin.clone()))
            .collect();
        let gateway = gateway::assemble(
            &config,
            plugins,
            &self.base_dir,
            &self.state,
            (&self.functions, &self.pools),
            errors,
        )
        .map_err(Refused::Config)?;
        let removed = registry
            .entries
            .keys()
            .filter(|n| !entries.contains_key(*n))
            .cloned()
            .collect();
        for name in &changed {
            publish_info(name, registry.entries.get(name), &entries[name]);
        }
        registry.entries = entries;
        let restart_needed = match &registry.started {
            Some(started) => started.changed_in(&config),
            None => {
                registry.started = Some(StartOnly::of(&config));
                Vec::new()
            }
        };
        registry.config = Some(config);
        let outcome = Reloaded {
            routes: gateway.routes.len(),
            changed,
            removed,
            restart_needed,
        };
        Ok((gateway, outcome, registry))
    }

    /// Compiles on the blocking pool: Cranelift never runs on an event loop.
    async fn compile(
        &self,
        name: &str,
        origin: &str,
        bytes: Vec<u8>,
        world: World,
    ) -> Result<Compiled, LoadError> {
        let host = self.host.clone();
        let (name, origin) = (name.to_owned(), origin.to_owned());
        let label = metrics::SharedString::from(name.clone());
        let compiled = tokio::task::spawn_blocking(move || {
            let compiled = host.compile(&name, &origin, &bytes, world);
            drop(bytes);
            crate::plugin::return_freed_memory();
            compiled
        })
        .await
        .unwrap_or_else(|e| {
            Err(LoadError::Invalid {
                plugin: String::new(),
                message: format!("the compile task failed: {e}"),
            })
        });
        if compiled.is_err() {
            metrics::counter!("weir_plugin_loads_total", "plugin" => label, "result" => "refused")
                .increment(1);
        }
        compiled
    }

    /// Binds a compiled component to its settings and smoke-tests it.
    async fn bind(
        &self,
        name: &str,
        compiled: &Compiled,
        settings: &PluginSettings,
        counts: Arc<CallCounts>,
        started: Instant,
    ) -> Result<AnyPlugin, Refused> {
        let plugin = compiled.plugin(
            name,
            settings.limits.clone(),
            settings.config_json.clone(),
            counts,
        );
        let label = metrics::SharedString::from(name.to_owned());
        if settings.smoke_test
            && let Err(e) = plugin.smoke_test().await
        {
            metrics::counter!("weir_plugin_loads_total", "plugin" => label, "result" => "refused")
                .increment(1);
            return Err(smoke_refusal(&e));
        }
        metrics::counter!("weir_plugin_loads_total", "plugin" => label.clone(), "result" => "ok")
            .increment(1);
        metrics::histogram!("weir_plugin_load_duration_seconds", "plugin" => label)
            .record(started.elapsed().as_secs_f64());
        Ok(plugin)
    }

    /// Makes the registry's entries what `GET /admin/plugins` lists.
    fn publish(&self, registry: &Registry) {
        let entries = registry
            .entries
            .iter()
            .map(|(n, e)| (n.clone(), e.clone_entry()))
            .collect();
        self.listing.store(Arc::new(entries));
    }

    /// Every plugin, for `GET /admin/plugins`.
    pub fn list(&self) -> Vec<PluginInfo> {
        let listing = self.listing.load();
        let gateway = self.live().load();
        listing
            .iter()
            .map(|(name, e)| info(name, e, &gateway))
            .collect()
    }

    /// `limits.max_plugin_size` of the config in force.
    pub fn max_plugin_size(&self) -> u64 {
        self.max_plugin_size
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The files a change of which means a reload: the config and its plugin files.
    pub async fn watched_files(&self) -> Vec<PathBuf> {
        let registry = self.registry.lock().await;
        let mut files = vec![self.config_path.clone()];
        if let Some(config) = &registry.config {
            files.extend(config.plugins.values().map(|p| self.base_dir.join(&p.file)));
        }
        files
    }
}
