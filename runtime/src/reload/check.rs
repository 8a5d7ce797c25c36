//! `weir plugin check`: the checks a load makes (compile, world, smoke test) on one
//! file, offline, with the plugin's real config (`--config JSON`, or its table in a
//! `weir.toml`) — and, with a sample request ([`super::probe`]), one call whose answer
//! it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, World};
use crate::gateway;
use crate::integrate::{Upstream, UpstreamTls};
use crate::plugin::outbound::Sender;
use crate::plugin::{GuestOutput, Limits, PluginHost};

use super::probe::{self, Sample};

/// What `weir plugin check` was asked.
#[derive(Debug, Default, Clone)]
pub struct CheckArgs {
    /// The component (default with `from`: the plugin's `file`).
    pub file: Option<PathBuf>,
    /// The world it must implement (default with `from`: the plugin's `world`).
    pub world: Option<World>,
    /// The plugin's config as JSON.
    pub config: Option<String>,
    /// A `weir.toml` to take the plugin's config, limits and world from...
    pub from: Option<PathBuf>,
    /// ... for this plugin.
    pub plugin: Option<String>,
    /// A sample request to call the plugin with after the smoke test.
    pub request: Option<PathBuf>,
    /// Without `from`: the origins the plugin may reach during the sample call.
    pub allow_outbound: Vec<String>,
}

/// Why a check did not pass.
#[derive(Debug)]
pub enum CheckError {
    /// The arguments, the config or the sample request are wrong (exit 2).
    Usage(String),
    /// The component was refused, or failed on the sample request (exit 1).
    Refused(String),
}

/// A check that passed.
#[derive(Debug)]
pub struct CheckReport {
    /// The component checked.
    pub file: PathBuf,
    /// Its world.
    pub world: World,
    /// SHA-256 of the component.
    pub sha256: String,
    /// What the guest wrote during the smoke test (`None` when the plugin's config
    /// turns it off).
    pub smoke_output: Option<GuestOutput>,
    /// What the plugin answered the sample request.
    pub answer: Option<serde_json::Value>,
}

/// The plugin's table in a `weir.toml`: its file (resolved), world, limits, config
/// and whether it is smoke-tested; and the `[server]` table (for the client its
/// outbound requests go through).
fn from_config(
    path: &Path,
    plugin: &str,
) -> Result<(PathBuf, gateway::PluginSettings, crate::config::Server), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    if !config.plugins.contains_key(plugin) {
        let names: Vec<&str> = config.plugins.keys().map(String::as_str).collect();
        return Err(format!(
            "{} defines no plugin `{plugin}` (it defines: {})",
            path.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    let mut errors = Vec::new();
    let mut settings = gateway::plugin_settings(&config, &mut errors);
    let Some(settings) = settings.remove(plugin) else {
        return Err(errors.join("\n"));
    };
    Ok((
        crate::config::base_dir(path).join(&settings.file),
        settings,
        config.server,
    ))
}

/// `weir plugin check`: see the module docs.
pub async fn check(host: Arc<PluginHost>, args: &CheckArgs) -> Result<CheckReport, CheckError> {
    let usage = CheckError::Usage;
    let (file, world, limits, config_json, smoke_test, name, server) =
        match (&args.from, &args.plugin) {
            (Some(from), Some(plugin)) => {
                if args.config.is_some() {
                    return Err(usage(
                        "--config and --from give the plugin's config twice: choose one".into(),
                    ));
                }
                let (file, s, server) = from_config(from, plugin).map_err(usage)?;
                if let Some(w) = args.world
                    && w != s.world
                {
                    return Err(usage(format!(
                        "plugin `{plugin}` is a `{}` plugin in {}, not `{}`",
                        s.world.name(),
                        from.display(),
                        w.name()
                    )));
                }
                let file = args.file.clone().unwrap_or(file);
                (
                    file,
                    s.world,
                    s.limits,
                    s.config_json,
                    s.smoke_test,
                    plugin.clone(),
                    Some(server),
                )
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(usage("--from and --plugin go together".into()));
            }
            (None, None) => {
                let file = args.file.clone().ok_or_else(|| {
                    usage("name the component file (or use --from and --plugin)".into())
                })?;
                let world = args
                    .world
                    .ok_or_else(|| usage("--world is required without --from".into()))?;
                let config_json = match &args.config {
                    Some(text) => {
                        let value: serde_json::Value = serde_json::from_str(text)
                            .map_err(|e| usage(format!("--config is not JSON: {e}")))?;
                        value.to_string()
                    }
                    None => "{}".to_owned(),
                };
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "plugin".to_owned());
                let mut limits = Limits::new();
                limits.allowed = crate::plugin::Allowed::parse(&args.allow_outbound)
                    .map_err(|e| usage(format!("--allow-outbound: {e}")))?;
                (file, world, limits, config_json, true, name, None)
            }
        };
    let sample = match &args.request {
        Some(path) => Some(Sample::read(path).map_err(usage)?),
        None => None,
    };

    let refused = CheckError::Refused;
    let bytes = crate::plugin::read_component(&file, crate::plugin::DEFAULT_MAX_PLUGIN_SIZE)
        .map_err(|e| refused(format!("cannot read {}: {e}", file.display())))?;
    let origin = file.display().to_string();
    let compiled = tokio::task::spawn_blocking({
        let host = host.clone();
        let name = name.clone();
        move || host.compile(&name, &origin, &bytes, world)
    })
    .await
    .map_err(|e| refused(e.to_string()))?
    .map_err(|e| refused(e.to_string()))?;
    let plugin = compiled.plugin(&name, limits, config_json, Arc::default());
    let smoke_output = if smoke_test {
        let output = plugin
            .smoke_test()
            .await
            .map_err(|e| refused(super::smoke_refusal(&e).to_string()))?;
        Some(output)
    } else {
        None
    };
    // The sample call's outbound requests go through a client like the gateway's: the
    // system's authorities, and with --from the config's `upstream_*` files.
    let sender = match (plugin.as_authorizer(), &sample) {
        (Some(p), Some(_)) if p.makes_outbound() => {
            let tls = match (&args.from, &server) {
                (Some(path), Some(server)) => {
                    UpstreamTls::from_config(server, &crate::config::base_dir(path))
                }
                _ => UpstreamTls::load(&Default::default()),
            }
            .map_err(usage)?;
            Some(Arc::new(Upstream::new(&tls)) as Arc<dyn Sender>)
        }
        _ => None,
    };
    let answer = match &sample {
        Some(sample) => Some(
            probe::run(&plugin, sample, sender)
                .await
                .map_err(|e| refused(format!("the sample request failed: {e}")))?,
        ),
        None => None,
    };
    Ok(CheckReport {
        file,
        world,
        sha256: compiled.sha256().to_string(),
        smoke_output,
        answer,
    })
}

/// Prints a check's outcome as `weir plugin check` does, and returns its exit code:
/// 0 passed (with a sample: its answer alone on stdout, as JSON), 1 refused, 2 usage.
pub fn report(args: &CheckArgs, result: Result<CheckReport, CheckError>) -> std::process::ExitCode {
    use std::process::ExitCode;
    match result {
        Ok(report) => {
            let ok = format!(
                "{}: ok (world {}, sha256 {})",
                report.file.display(),
                report.world.name(),
                report.sha256
            );
            if let Some(output) = report.smoke_output.filter(|o| !o.is_empty()) {
                eprintln!("smoke test:{output}");
            }
            match report.answer {
                // stdout is the answer alone, for scripts (`| jq`).
                Some(answer) => {
                    eprintln!("{ok}");
                    println!("{answer:#}");
                }
                None => println!("{ok}"),
            }
            ExitCode::SUCCESS
        }
        Err(CheckError::Refused(e)) => {
            match args.file.as_deref().or(args.from.as_deref()) {
                Some(f) => eprintln!("error: {}: {e}", f.display()),
                None => eprintln!("error: {e}"),
            }
            ExitCode::FAILURE
        }
        Err(CheckError::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
