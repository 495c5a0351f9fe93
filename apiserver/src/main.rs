//! The `ringtail` binary: parses flags, starts the server or runs a one-shot command.

mod cli_adapter;
mod cli_promql_test;
mod cli_query;
mod log_format;

use anyhow::Context;
use apiserver::adapter_args::{self, ConfigFileRole, PrometheusAdapterFlags};
use apiserver::settings::{Settings, SettingsLayer};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Ringtail: an embedded time-series store with the Kubernetes metrics adapter built in.
#[derive(Parser, Debug)]
#[command(name = "ringtail", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once at start: the size of the flags struct does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server (remote-write target, scraper, Prometheus API, metrics adapter).
    Serve(ServeArgs),
    /// Work with prometheus-adapter rule files.
    #[command(subcommand)]
    AdapterConfig(cli_adapter::AdapterConfigCommand),
    /// Evaluate a PromQL expression against a running server and print the result.
    Query(cli_query::QueryArgs),
    /// Run Prometheus's PromQL test scripts against the engine; exits 1 if any eval fails.
    PromqlTest(cli_promql_test::PromqlTestArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// YAML file with the same settings as these flags plus `global` and `scrape_configs` (flags
    /// win). Keys are the flags' names with `_`; a group's flags are keys of its block:
    /// `query:` (--query.*), `web:` (--web.*), `limits:` (--limits.*), `remote_write:`
    /// (--remote-write-*), `adapter:` (--secure-listen, --tls-*, --adapter-*; --adapter-config is
    /// `config_file`). A prometheus-adapter rules file (only `rules`, `externalRules`,
    /// `resourceRules` at the top), as prometheus-adapter's --config names one, is taken as
    /// --adapter-config instead.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsLayer,
    #[command(flatten)]
    prometheus_adapter: PrometheusAdapterFlags,
    /// Only log messages of this level or above, as Prometheus's flag (the RINGTAIL_LOG
    /// environment variable, a tracing filter such as `info,ingest=debug`, wins over it)
    /// [default: info].
    #[arg(long = "log.level", value_name = "LEVEL", value_parser = ["debug", "info", "warn", "error"])]
    log_level: Option<String>,
    /// Log line format: text (human-readable), logfmt or json, as Prometheus's flag.
    #[arg(long = "log.format", value_enum, default_value = "text")]
    log_format: log_format::LogFormat,
}

/// mimalloc keeps freed memory for reuse instead of returning large blocks to the kernel at once:
/// queries allocate and free tens of megabytes each, which glibc turned into page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // prometheus-adapter's Deployment args (flags only) replace the image's `serve` command.
    let cli = Cli::parse_from(adapter_args::with_default_subcommand(std::env::args_os().collect()));
    // One-shot commands print results on stdout; only warnings go to the log by default.
    let (default_level, format) = match &cli.command {
        Command::Query(_) | Command::PromqlTest(_) => ("warn", log_format::LogFormat::Text),
        Command::Serve(args) => {
            let level = match &args.log_level {
                Some(level) => level.as_str(),
                None => args.prometheus_adapter.verbosity.map_or("info", adapter_args::log_filter_for_verbosity),
            };
            (level, args.log_format)
        }
        _ => ("info", log_format::LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGTAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colours only on a terminal: a log file or a container log gets plain text.
        log_format::LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        structured => {
            builder.event_format(log_format::StructuredLines { json: structured == log_format::LogFormat::Json }).init()
        }
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::AdapterConfig(command) => cli_adapter::run(command),
        Command::Query(args) => cli_query::run(args),
        Command::PromqlTest(args) => {
            if !cli_promql_test::run(args)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// How long an idle thread of the blocking pool (store reads, API lookups) stays for the next one.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(300);

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (settings_file, adapter_rules_file) = match args.config {
        Some(path) if adapter_args::config_file_role(&path) == ConfigFileRole::AdapterRules => (None, Some(path)),
        other => (other, None),
    };
    let mut settings = Settings::from_sources(settings_file.as_deref(), args.settings)?;
    if let Some(path) = adapter_rules_file {
        if let Some(explicit) = &settings.adapter.config_file {
            anyhow::bail!(
                "--config {} is a prometheus-adapter rules file and --adapter-config {} names another: give one",
                path.display(),
                explicit.display()
            );
        }
        tracing::info!(rules = %path.display(), "--config names a prometheus-adapter rules file: serving its rules");
        settings.adapter.config_file = Some(path);
    }
    for notice in args.prometheus_adapter.apply(&mut settings) {
        tracing::info!("{notice}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store reads, API lookups, exports and federation run on the blocking pool (queries of the
        // query API and the adapter have their own threads). Its threads exit after 10 s idle by
        // default, and work on a fresh thread starts on fresh memory the kernel must clear first
        // (a 100k-series query paid ~2× for it whenever it came more than 10 s after the last).
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        let server = match apiserver::server::Server::start(settings).await {
            Ok(server) => server,
            Err(error @ apiserver::server::ServerError::Locked(_)) => {
                // One line, no retry: the other process keeps the directory until it stops.
                eprintln!("ringtail: {error}");
                std::process::exit(1);
            }
            Err(error) => return Err(error.into()),
        };
        wait_for_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await?;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
