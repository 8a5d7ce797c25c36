//! `weir plugin check`: the checks a load makes (compile, world, smoke test), on one
//! file, offline.

use std::path::Path;
use std::sync::Arc;

use crate::config::World;
use crate::plugin::PluginHost;

/// `weir plugin check`: the checks of a load (compile, world, smoke test) on one file.
pub async fn check_file(
    host: Arc<PluginHost>,
    path: &Path,
    world: World,
) -> Result<String, String> {
    let bytes = crate::plugin::read_component(path, crate::plugin::DEFAULT_MAX_PLUGIN_SIZE)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let origin = path.display().to_string();
    let compiled = tokio::task::spawn_blocking({
        let host = host.clone();
        let name = name.clone();
        move || host.compile(&name, &origin, &bytes, world)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let plugin = compiled.plugin(
        &name,
        crate::plugin::Limits::new(),
        "{}".to_owned(),
        Arc::default(),
    );
    plugin
        .smoke_test()
        .await
        .map_err(|e| format!("refused by the smoke test: {e}"))?;
    Ok(compiled.sha256().to_string())
}
