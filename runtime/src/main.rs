//! The `weir` command: `weir serve` runs the gateway, `weir validate` checks a config.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

/// mimalloc instead of glibc's malloc: the request path allocates small, short-lived
/// buffers on every request, and glibc's consolidation showed up in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand, ValueEnum};
use weir::admin::AdminState;
use weir::config::Config;
use weir::gateway;
use weir::pipeline::Shared;
use weir::plugin::PluginHost;
use weir::server::{self, ServerSettings};
use weir::websocket::{ConnectionTable, LocalConnections};

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
    let metrics = weir::admin::install_metrics()?;
    let host = PluginHost::new()?;
    let gateway = gateway::compile(&config, &base_dir(path), &host)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    let gateway = Arc::new(gateway);
    let connections: Arc<dyn ConnectionTable> = Arc::new(LocalConnections::default());
    let quotas = gateway.usage.quotas().clone();
    match quotas.load(weir::quota::unix_now()) {
        Ok(n) if n > 0 => tracing::info!(keys = n, "quota counters restored"),
        Ok(_) => {}
        // Serving with fresh counters beats not serving; say so loudly.
        Err(e) => tracing::error!(error = %e, "quota counters not restored"),
    }
    let workers = config
        .server
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    // Every worker's socket is bound and listening before anything is printed; the first
    // resolves port 0 for the others.
    let first = server::reuseport_listener(config.server.listen)
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(server::reuseport_listener(addr).with_context(|| format!("binding {addr}"))?);
    }
    let settings = ServerSettings {
        header_read_timeout: config.server.header_read_timeout,
        shutdown_grace: config.server.shutdown_grace,
        // Split across workers; each gets at least one.
        max_connections: config.server.max_connections.div_ceil(workers),
        max_header_bytes: config.limits.max_header_bytes,
    };
    let (stop_workers, stop) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for (i, socket) in sockets.into_iter().enumerate() {
        let gateway = gateway.clone();
        let connections = connections.clone();
        let settings = settings.clone();
        let mut stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weir-worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(socket)?;
                    let shared = Arc::new(Shared::new(gateway, connections));
                    let stopped = async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    };
                    server::serve(listener, shared, settings, stopped).await;
                    anyhow::Ok(())
                })
            })?;
        threads.push(thread);
    }

    // The main thread handles signals and the admin listener.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // Readiness drops at the shutdown signal so that load balancers stop sending
        // while in-flight requests drain; the admin listener closes after the drain.
        let ready = Arc::new(AtomicBool::new(true));
        let (stop_admin, mut admin_stopped) = tokio::sync::watch::channel(false);
        let admin = match &config.admin {
            Some(admin) => {
                let listener = tokio::net::TcpListener::bind(admin.listen)
                    .await
                    .with_context(|| format!("binding the admin listener {}", admin.listen))?;
                let admin_addr = listener.local_addr()?;
                tracing::info!(addr = %admin_addr, "admin listening");
                println!("weir admin on http://{admin_addr}");
                let state = AdminState {
                    ready: ready.clone(),
                    metrics,
                    connections: connections.clone(),
                };
                Some(tokio::spawn(weir::admin::serve(
                    listener,
                    state,
                    async move {
                        let _ = admin_stopped.wait_for(|stop| *stop).await;
                    },
                )))
            }
            None => None,
        };
        let housekeeping = tokio::spawn(server::housekeeping(gateway.clone()));
        tracing::info!(%addr, workers, routes = gateway.routes.len(), "weir listening");
        // The last line printed at start names the real address (port 0 resolved).
        println!("weir listening on http://{addr}");
        std::io::stdout().flush()?;

        server::shutdown_signal().await;
        ready.store(false, Ordering::Relaxed);
        // WebSocket clients get a close frame (1001) and `$disconnect` runs while the
        // workers drain.
        connections.disconnect_all();
        let _ = stop_workers.send(true);
        let results = tokio::task::spawn_blocking(move || {
            threads.into_iter().map(|t| t.join()).collect::<Vec<_>>()
        })
        .await?;
        for result in results {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
                Err(_) => tracing::error!("worker panicked"),
            }
        }
        housekeeping.abort();
        if let Err(e) = quotas.flush() {
            tracing::error!(error = %e, "writing quota counters at shutdown");
        }
        let _ = stop_admin.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        anyhow::Ok(())
    })?;
    drop(host);
    Ok(())
}
