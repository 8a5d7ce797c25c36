//! The admin API's changes to one plugin: upload (`PUT /admin/plugins/{name}`) and
//! removal (`DELETE`), each compiled, checked and swapped in under the reload lock.

use std::path::PathBuf;
use std::time::Instant;

use std::collections::BTreeMap;

use super::registry::{Entry, Registry, Source, info, info_gauge, publish_info};
use super::{PluginInfo, Refused, Reloader};
use crate::config::World;
use crate::gateway::{self, PluginSettings};
use crate::plugin::{AnyPlugin, LoadError};

impl Reloader {
    /// `PUT /admin/plugins/{name}`: creates or replaces a plugin from component bytes.
    /// The world comes from its `[plugins.NAME]` table, or from `world` for a new name.
    /// Returns whether it was created, and the plugin as listed.
    pub async fn put_plugin(
        &self,
        name: &str,
        world: Option<World>,
        bytes: Vec<u8>,
    ) -> Result<(bool, PluginInfo), Refused> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(Refused::BadRequest(format!(
                "invalid plugin name `{name}`: use 1 to 64 letters, digits, `-` or `_`"
            )));
        }
        let started = Instant::now();
        let mut registry = self.registry.lock().await;
        let existing = registry.entries.get(name);
        let settings = match (existing, world) {
            (Some(e), Some(w)) if e.settings.world != w => {
                return Err(Refused::BadRequest(format!(
                    "plugin `{name}` is a `{}` plugin; it cannot become a `{}` plugin here (change the config instead)",
                    e.settings.world.name(),
                    w.name()
                )));
            }
            (Some(e), _) => e.settings.clone(),
            (None, Some(world)) => PluginSettings {
                file: PathBuf::new(),
                world,
                limits: crate::plugin::Limits::new(),
                config_json: "{}".to_owned(),
                smoke_test: true,
            },
            (None, None) => {
                return Err(Refused::BadRequest(format!(
                    "plugin `{name}` does not exist; say which world it implements with `?world=mapper|authorizer|cors`"
                )));
            }
        };
        let counts = existing.map(|e| e.counts.clone()).unwrap_or_default();
        let file_sha256 = existing.and_then(|e| e.file_sha256.clone());
        let compiled = self
            .compile(name, "the uploaded component", bytes, settings.world)
            .await
            .map_err(|e| match e {
                LoadError::NotAComponent { .. } => Refused::NotAComponent(e.to_string()),
                e => Refused::Invalid(e.to_string()),
            })?;
        let plugin = self
            .bind(name, &compiled, &settings, counts.clone(), started)
            .await
            .map_err(|e| match e {
                Refused::SmokeTest { message, output } => Refused::SmokeTest {
                    message: format!("plugin `{name}`: {message}"),
                    output,
                },
                e => Refused::Invalid(format!("plugin `{name}`: {e}")),
            })?;
        let entry = Entry {
            compiled,
            plugin,
            settings,
            source: Source::Upload,
            file_sha256,
            counts,
        };
        let created = !registry.entries.contains_key(name);
        self.swap_with(&mut registry, name, Some(entry))?;
        let gateway = self.live().load();
        let info = info(name, &registry.entries[name], &gateway);
        tracing::info!(plugin = name, sha256 = %info.sha256, created, "plugin uploaded and swapped in");
        // This thread read the upload and ran the smoke test.
        crate::plugin::return_freed_memory();
        Ok((created, info))
    }

    /// `DELETE /admin/plugins/{name}`: removes a plugin no route uses. One defined in
    /// the config comes back at the next config reload.
    pub async fn delete_plugin(&self, name: &str) -> Result<(), Refused> {
        let mut registry = self.registry.lock().await;
        if !registry.entries.contains_key(name) {
            return Err(Refused::NotFound(format!("no plugin named `{name}`")));
        }
        let uses = self.live().load().uses_of(name);
        if !uses.is_empty() {
            return Err(Refused::InUse(format!(
                "plugin `{name}` is in use by {}; change the config first",
                uses.join(", ")
            )));
        }
        self.swap_with(&mut registry, name, None)?;
        tracing::info!(plugin = name, "plugin deleted");
        Ok(())
    }

    /// Replaces (or with `None` removes) one entry, reassembles the gateway around the
    /// config in force and swaps it in.
    fn swap_with(
        &self,
        registry: &mut Registry,
        name: &str,
        entry: Option<Entry>,
    ) -> Result<(), Refused> {
        let mut plugins: BTreeMap<String, AnyPlugin> = registry
            .entries
            .iter()
            .map(|(n, e)| (n.clone(), e.plugin.clone()))
            .collect();
        match &entry {
            Some(e) => plugins.insert(name.to_owned(), e.plugin.clone()),
            None => plugins.remove(name),
        };
        let Some(config) = &registry.config else {
            return Err(Refused::Invalid("no config is loaded".to_owned()));
        };
        let gateway = gateway::assemble(
            config,
            plugins,
            &self.base_dir,
            &self.state,
            (&self.functions, &self.pools),
            Vec::new(),
        )
        .map_err(Refused::Config)?;
        self.swap(gateway);
        match entry {
            Some(e) => {
                publish_info(name, registry.entries.get(name), &e);
                registry.entries.insert(name.to_owned(), e);
            }
            None => {
                if let Some(old) = registry.entries.remove(name) {
                    info_gauge(name, &old, 0.0);
                }
            }
        }
        self.publish(registry);
        Ok(())
    }
}
