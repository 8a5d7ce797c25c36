//! The loaded plugins of a config, looked up by the keys that name them: a stage that
//! compiles its part of the config asks here for a plugin of the world it needs, and
//! gets a handle typed by that world or an error naming the key.

use std::collections::BTreeMap;

use crate::config::{Config, FailurePolicy, World};
use crate::plugin::{AnyPlugin, AuthorizerPlugin, CorsPlugin, FunctionPlugin, MapperPlugin};

/// The plugins of `[plugins]` that loaded, plus any loaded through the admin API.
pub struct Catalog<'a> {
    config: &'a Config,
    loaded: BTreeMap<String, AnyPlugin>,
}

impl<'a> Catalog<'a> {
    /// The catalog of `config` with these plugins loaded.
    pub fn new(config: &'a Config, loaded: BTreeMap<String, AnyPlugin>) -> Self {
        Self { config, loaded }
    }

    /// Every plugin loaded, by name.
    pub fn into_loaded(self) -> BTreeMap<String, AnyPlugin> {
        self.loaded
    }

    /// The plugin `name` for `key`, which needs a `world` plugin.
    fn get(
        &self,
        name: &str,
        world: World,
        key: &str,
        errors: &mut Vec<String>,
    ) -> Option<&AnyPlugin> {
        let defined = self
            .config
            .plugins
            .get(name)
            .map(|spec| spec.world)
            .or_else(|| self.loaded.get(name).map(AnyPlugin::world));
        match defined {
            None => {
                errors.push(format!(
                    "{key}: plugin `{name}` is not defined in [plugins]"
                ));
                None
            }
            Some(defined) if defined != world => {
                errors.push(format!(
                    "{key}: plugin `{name}` implements the `{}` world, but a `{}` plugin is needed here",
                    defined.name(),
                    world.name()
                ));
                None
            }
            // `None` here means it failed to load, which is already reported.
            Some(_) => self.loaded.get(name),
        }
    }

    /// The mapper `name` for `key`.
    pub fn mapper(&self, name: &str, key: &str, errors: &mut Vec<String>) -> Option<MapperPlugin> {
        self.get(name, World::Mapper, key, errors)?
            .as_mapper()
            .cloned()
    }

    /// The authorizer `name` for `key`.
    pub fn authorizer(
        &self,
        name: &str,
        key: &str,
        errors: &mut Vec<String>,
    ) -> Option<AuthorizerPlugin> {
        self.get(name, World::Authorizer, key, errors)?
            .as_authorizer()
            .cloned()
    }

    /// The CORS policy `name` for `key`.
    pub fn cors(&self, name: &str, key: &str, errors: &mut Vec<String>) -> Option<CorsPlugin> {
        self.get(name, World::Cors, key, errors)?.as_cors().cloned()
    }

    /// The `wasi:http` component `name` for `key`.
    pub fn function(
        &self,
        name: &str,
        key: &str,
        errors: &mut Vec<String>,
    ) -> Option<FunctionPlugin> {
        self.get(name, World::Function, key, errors)?
            .as_function()
            .cloned()
    }

    /// Whether the plugin `name` is marked `failure = "fail_open"`.
    pub fn fails_open(&self, name: &str) -> bool {
        self.config
            .plugins
            .get(name)
            .is_some_and(|p| p.failure == FailurePolicy::FailOpen)
    }

    /// The config the plugins belong to.
    pub fn config(&self) -> &Config {
        self.config
    }
}
