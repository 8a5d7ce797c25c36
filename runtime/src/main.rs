//! The `weir` command: `weir serve` runs the gateway, `weir validate` checks a config,
//! `weir plugin check` checks one component.

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
use weir::cluster;
use weir::config::{Config, World, base_dir};
use weir::connections::{ConnectionTable, LocalConnections};
use weir::integrate::{Upstream, UpstreamTls};
use weir::listener_tls::ListenerTls;
use weir::plugin::{Compiler, PluginHost};
use weir::reload::{self, Refused, Reloader};
use weir::server::{self, ServerSettings};
use weir::usage::UsageState;
use weir::worker::Shared;

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
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a component offline as a load would (compile, world, smoke test with its
    /// real config) and, with --request, print what it answers a sample request (JSON
    /// on stdout). Exit 0: passed; 1: refused, naming the problem with the guest's own
    /// output; 2: bad arguments, config or sample.
    Check {
        /// The component file (default with --from: the plugin's `file`).
        file: Option<PathBuf>,
        /// The world it must implement (default with --from: the plugin's `world`).
        #[arg(long, value_enum)]
        world: Option<WorldArg>,
        /// The plugin's config, as JSON (what `host.config()` returns).
        #[arg(long, conflicts_with = "from")]
        config: Option<String>,
        /// Take the config, limits and world from this weir.toml's [plugins.NAME]...
        #[arg(long, requires = "plugin")]
        from: Option<PathBuf>,
        /// ... for this plugin.
        #[arg(long, requires = "from")]
        plugin: Option<String>,
        /// A sample request (JSON, or TOML by its .toml name): method, path, query,
        /// headers, body, context, identity, scopes, response. See docs/plugin-authoring.md.
        #[arg(long)]
        request: Option<PathBuf>,
        /// An origin the plugin may send HTTP requests to during --request (its
        /// `allow_outbound`; repeat for several). With --from, the plugin's own list.
        #[arg(
            long = "allow-outbound",
            value_name = "ORIGIN",
            conflicts_with = "from"
        )]
        allow_outbound: Vec<String>,
    },
    /// Write a new plugin project that builds as it is: the WIT, pinned tools, a
    /// build script, a README (build, check, load) and a first test.
    New {
        /// The plugin's name (lower-case letters, digits, `-`); also its directory.
        name: String,
        /// The world it implements.
        #[arg(long, value_enum)]
        world: WorldArg,
        /// Its language.
        #[arg(long, value_enum, default_value_t = LangArg::Rust)]
        lang: LangArg,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Compile a component read on stdin and write the artifact on stdout: what
    /// `weir serve` runs in a child process for every compile.
    #[command(hide = true)]
    Precompile {
        /// Limit this process's data (heap) to this many bytes first.
        #[arg(long)]
        max_memory: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LangArg {
    Rust,
    #[value(alias = "javascript")]
    Js,
    Python,
    C,
    Zig,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorldArg {
    Mapper,
    Authorizer,
    Cors,
    Function,
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> World {
        match w {
            WorldArg::Mapper => World::Mapper,
            WorldArg::Authorizer => World::Authorizer,
            WorldArg::Cors => World::Cors,
            WorldArg::Function => World::Function,
        }
    }
}

fn main() -> ExitCode {
    without_huge_pages();
    let cli = Cli::parse();
    // The compiler process logs nothing: its stderr carries only an error, which the
    // gateway reports as the reason a component was refused.
    if !matches!(
        cli.command,
        Command::Plugin {
            command: PluginCommand::Precompile { .. }
        }
    ) {
        init_logging(cli.log_format);
    }
    match cli.command {
        Command::Plugin {
            command: PluginCommand::Precompile { max_memory },
        } => match weir::plugin::precompile_stdio(max_memory) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Validate { config } => validate(&config),
        Command::Plugin {
            command:
                PluginCommand::Check {
                    file,
                    world,
                    config,
                    from,
                    plugin,
                    request,
                    allow_outbound,
                },
        } => check_plugin(&reload::CheckArgs {
            file,
            world: world.map(Into::into),
            config,
            from,
            plugin,
            request,
            allow_outbound,
        }),
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    world,
                    lang,
                    dir,
                },
        } => {
            let lang = match lang {
                LangArg::Rust => weir::scaffold::Lang::Rust,
                LangArg::Js => weir::scaffold::Lang::JavaScript,
                LangArg::Python => weir::scaffold::Lang::Python,
                LangArg::C => weir::scaffold::Lang::C,
                LangArg::Zig => weir::scaffold::Lang::Zig,
            };
            weir::scaffold::run(&name, world.into(), lang, dir)
        }
        Command::Serve { config } => match serve(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Turns transparent huge pages off for the process, unless `MIMALLOC_ALLOW_THP` is set
/// (mimalloc then does as it says). mimalloc marks its arenas `MADV_HUGEPAGE`, so the
/// kernel backs a 2 MiB range with a huge page at its first touch, and khugepaged later
/// collapses sparsely used ranges into whole huge pages whenever its scan comes by: the
/// heap's RSS doubled, and under churn (plugin swaps) stepped up by 10-15 MiB at a
/// random moment and stayed there (bench/README.md, "Hot swap under load").
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(e) = rustix::thread::disable_transparent_huge_pages(true)
    {
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    weir::access_log::set_json(matches!(format, LogFormat::Json));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn print_refusal(e: &Refused) {
    match e {
        Refused::Config(errors) => errors.0.iter().for_each(|e| eprintln!("error: {e}")),
        e => eprintln!("error: {e}"),
    }
}

fn validate(path: &Path) -> ExitCode {
    let checked = current_thread_runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            // The compiled cache `serve` uses: a second run compiles nothing, and what
            // this run compiles `serve` finds ready. A config that does not parse is
            // reported by the check below.
            let cache = Config::load(path)
                .ok()
                .and_then(|config| plugin_cache(path, &config));
            let host = Arc::new(PluginHost::with_cache(cache)?);
            let reloader = Reloader::new(path, host, Arc::default());
            let checked = runtime.block_on(reloader.check());
            if checked.is_ok() {
                let config = Config::load(path)?;
                UpstreamTls::from_config(&config.server, &base_dir(path))
                    .map_err(|e| anyhow::anyhow!(e))?;
                let listener = ListenerTls::from_config(&config.server, &base_dir(path))
                    .map_err(|e| anyhow::anyhow!(e))?;
                for warning in listener.iter().flat_map(|l| l.warnings()) {
                    eprintln!("warning: {warning}");
                }
            }
            Ok(checked)
        });
    match checked {
        Ok(Ok(gw)) => {
            println!(
                "{}: ok ({} routes, {} plugins)",
                path.display(),
                gw.routes.len(),
                gw.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            print_refusal(&e);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_plugin(args: &reload::CheckArgs) -> ExitCode {
    let cache = args
        .from
        .as_deref()
        .and_then(|p| Some((p, Config::load(p).ok()?)))
        .and_then(|(p, config)| plugin_cache(p, &config));
    let checked = current_thread_runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let host = Arc::new(PluginHost::with_cache(cache)?);
            Ok(runtime.block_on(reload::check(host, args)))
        });
    match checked {
        Ok(result) => reload::check::report(args, result),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `[plugin_cache]` of a config: where compiled plugins are kept (relative to the
/// config file) and how large the cache may grow; `None` when it is off.
fn plugin_cache(path: &Path, config: &Config) -> Option<(PathBuf, u64)> {
    config.plugin_cache.enabled.then(|| {
        (
            base_dir(path).join(&config.plugin_cache.dir),
            config.plugin_cache.max_size.as_u64(),
        )
    })
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // Before any plugin is compiled: a bad CA file is refused at once.
    let tls = UpstreamTls::from_config(&config.server, &base_dir(path))
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(
        system = tls.system_roots,
        file = tls.file_roots,
        client_cert = tls.client_cert,
        "certificates trusted for https upstreams"
    );
    let tls = Arc::new(tls);
    let listener_tls = ListenerTls::from_config(&config.server, &base_dir(path))
        .map_err(|e| anyhow::anyhow!(e))?
        .map(Arc::new);
    if let Some(tls) = &listener_tls {
        tls.clone().watch();
    }
    let workers = config
        .server
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Every listener is bound before any plugin compiles, so an address in use fails
    // the start at once; and before anything is printed. The workers' sockets share
    // the address (SO_REUSEPORT), which no other process may hold.
    let sockets = server::bind_workers(config.server.listen, workers)
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = sockets[0].local_addr()?;
    let admin_socket = match &config.admin {
        Some(admin) => Some(
            std::net::TcpListener::bind(admin.listen)
                .with_context(|| format!("binding the admin listener {}", admin.listen))?,
        ),
        None => None,
    };
    let metrics = weir::admin::install_metrics()?;
    let cache_dir = plugin_cache(path, &config);
    let compiler = Compiler::child_of_self(config.limits.compile_memory.as_u64())
        .context("finding this executable")?;
    let host = Arc::new(PluginHost::with_cache(cache_dir)?.with_compiler(compiler));
    // The main thread's runtime: the initial load, then signals, the admin listener,
    // file watching and every reload (compiles go to its blocking pool).
    let runtime = current_thread_runtime().context("starting the runtime")?;
    // `[cluster]`: limits and connections shared through the store (the start waits
    // for it a second at most; an unreachable store is retried in the background).
    let cluster = match &config.cluster {
        Some(c) => {
            let settings =
                cluster::Settings::of(c, &base_dir(path)).map_err(|e| anyhow::anyhow!(e))?;
            Some(cluster::Cluster::start(settings).map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    let usage_state = match &cluster {
        Some(c) => UsageState::with_cluster(c.clone()),
        None => UsageState::default(),
    };
    let reloader = runtime
        .block_on(
            Reloader::new(path, host.clone(), Arc::new(usage_state))
                .with_health_checks(&tls, workers)
                .start(),
        )
        .map_err(|e| match e {
            Refused::Config(errors) => {
                anyhow::anyhow!("invalid config {}:\n{errors}", path.display())
            }
            e => anyhow::anyhow!("{e}"),
        })?;
    let live = reloader.live().clone();
    let admin_token = match &config.admin {
        Some(admin) => admin.token().map_err(|e| anyhow::anyhow!(e))?,
        None => None,
    };
    let gateway = live.load_full();
    let connections: Arc<dyn ConnectionTable> = match &cluster {
        Some(c) => cluster::connections::SharedConnections::start(c),
        None => Arc::new(LocalConnections::default()),
    };
    let quotas = gateway.usage.quotas().clone();
    match quotas.load(weir::quota::unix_now()) {
        Ok(n) if n > 0 => tracing::info!(keys = n, "quota counters restored"),
        Ok(_) => {}
        // Serving with fresh counters beats not serving; say so loudly.
        Err(e) => tracing::error!(error = %e, "quota counters not restored"),
    }

    let settings = ServerSettings {
        header_read_timeout: config.server.header_read_timeout,
        shutdown_grace: config.server.shutdown_grace,
        // Split across workers; each gets at least one.
        max_connections: config.server.max_connections.div_ceil(workers),
        max_header_bytes: config.limits.max_header_bytes,
        tls: listener_tls,
    };
    let (stop_workers, stop) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for (i, socket) in sockets.into_iter().enumerate() {
        let gateway = live.clone();
        let connections = connections.clone();
        let settings = settings.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weir-worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                // Access records wait until the worker runs out of work, then go out
                // in one write.
                weir::access_log::buffer_this_thread();
                weir::pool::link::set_worker(i);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(weir::access_log::flush)
                    .build()?;
                let served = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(socket)?;
                    let upstream = Upstream::new(&tls);
                    let shared = Arc::new(Shared::new(gateway, connections, upstream));
                    let stopped = async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    };
                    server::serve(listener, shared, settings, stopped).await;
                    anyhow::Ok(())
                });
                weir::access_log::flush();
                served
            })?;
        threads.push(thread);
    }

    runtime.block_on(async {
        // Readiness drops at the shutdown signal so that load balancers stop sending
        // while in-flight requests drain; the admin listener closes after the drain.
        let ready = Arc::new(AtomicBool::new(true));
        let (stop_admin, mut admin_stopped) = tokio::sync::watch::channel(false);
        let admin = match admin_socket {
            Some(socket) => {
                socket.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(socket)?;
                let admin_addr = listener.local_addr()?;
                tracing::info!(addr = %admin_addr, "admin listening");
                println!("weir admin on http://{admin_addr}");
                if admin_token.is_none() && !config.websocket.is_empty() {
                    tracing::warn!(
                        "the admin listener has no token: /admin/* is off and @connections is open to anyone who can reach it"
                    );
                }
                let api =
                    weir::admin::plugins::AdminApi::new(reloader.clone(), admin_token.as_deref());
                let state = AdminState {
                    ready: ready.clone(),
                    metrics: metrics.clone(),
                    connections: connections.clone(),
                    api: Some(Arc::new(api)),
                    functions: reloader.functions().clone(),
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
        let housekeeping = tokio::spawn(server::housekeeping(live.clone(), metrics));
        // The watches and signal handlers are in place before the gateway says it is
        // listening: a change or a signal right after that line is not missed.
        let watcher = if config.reload.watch {
            Some(reload::watch::start(reloader.clone(), config.reload.debounce).await)
        } else {
            None
        };
        let hangup = tokio::spawn(reload_on_sighup(reloader.clone()));
        let shutdown = server::shutdown_signal();
        tracing::info!(%addr, workers, routes = gateway.routes.len(), "weir listening");
        drop(gateway);
        // The last line printed at start names the real address (port 0 resolved).
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        println!("weir listening on {scheme}://{addr}");
        std::io::stdout().flush()?;

        shutdown.await;
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
        // The requests have drained: the functions' processes finish what they run,
        // then get SIGTERM (and SIGKILL after a grace).
        reloader
            .functions()
            .shutdown(weir::lambda::STOP_GRACE + std::time::Duration::from_secs(2))
            .await;
        housekeeping.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        hangup.abort();
        let quotas = live.load().usage.quotas().clone();
        if let Err(e) = quotas.flush() {
            tracing::error!(error = %e, "writing quota counters at shutdown");
        }
        let _ = stop_admin.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        anyhow::Ok(())
    })?;
    drop(reloader);
    drop(live);
    drop(runtime);
    drop(host);
    Ok(())
}

/// Reloads the config on every SIGHUP, as `POST /admin/reload` does. The handler is
/// installed when this is called (the default action of SIGHUP ends the process).
fn reload_on_sighup(reloader: Arc<Reloader>) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let hangups = signal(SignalKind::hangup());
        async move {
            let Ok(mut hangups) = hangups else {
                return;
            };
            while hangups.recv().await.is_some() {
                // The outcome is logged by the reloader.
                let _ = reloader.reload_config("SIGHUP").await;
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = reloader;
    }
}
