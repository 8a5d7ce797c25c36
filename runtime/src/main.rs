//! The `weir` command: `weir serve` runs the gateway, `weir validate` checks a config.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use weir::config::Config;
use weir::gateway;
use weir::integrate::Upstream;
use weir::pipeline::Shared;
use weir::plugin::PluginHost;
use weir::server::{self, ServerSettings};

/// Weir: an API gateway whose policies are WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr. The filter comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway described by a config file.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "weir.toml")]
        config: PathBuf,
    },
    /// Check a config file (plugins included) without serving; exit 1 on error.
    Validate {
        /// The config file.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Serve { config } => match serve(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

fn validate(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = match PluginHost::new() {
        Ok(host) => host,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match gateway::compile(&config, &base_dir(path), &host) {
        Ok(gw) => {
            println!(
                "{}: ok ({} routes, {} plugins)",
                path.display(),
                gw.routes.len(),
                config.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let host = PluginHost::new()?;
    let gateway = gateway::compile(&config, &base_dir(path), &host)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, routes = gateway.routes.len(), "weir listening");
        // The first stdout line names the real address (port 0 resolved) for scripts.
        println!("weir listening on http://{addr}");
        std::io::stdout().flush()?;
        let gateway = Arc::new(gateway);
        let quotas = gateway.usage.quotas().clone();
        match quotas.load(weir::quota::unix_now()) {
            Ok(n) if n > 0 => tracing::info!(keys = n, "quota counters restored"),
            Ok(_) => {}
            // Serving with fresh counters beats not serving; say so loudly.
            Err(e) => tracing::error!(error = %e, "quota counters not restored"),
        }
        let housekeeping = tokio::spawn(server::housekeeping(gateway.clone()));
        let shared = Arc::new(Shared {
            gateway,
            upstream: Upstream::default(),
        });
        let settings = ServerSettings {
            header_read_timeout: config.server.header_read_timeout,
            shutdown_grace: config.server.shutdown_grace,
            max_header_bytes: config.limits.max_header_bytes,
        };
        server::serve(listener, shared, settings, server::shutdown_signal()).await;
        housekeeping.abort();
        if let Err(e) = quotas.flush() {
            tracing::error!(error = %e, "writing quota counters at shutdown");
        }
        anyhow::Ok(())
    })?;
    drop(host);
    Ok(())
}
