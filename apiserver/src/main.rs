//! The `ringtail` binary: parses flags, starts the server or runs a one-shot command.

use anyhow::Context;
use apiserver::config::Config;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Ringtail: an embedded time-series store with the Kubernetes metrics adapter built in.
#[derive(Parser, Debug)]
#[command(name = "ringtail", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (remote-write target, scraper, Prometheus API, metrics adapter).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// YAML file with the same settings as these flags plus `scrape_configs` (flags win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the ring store's files [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address for HTTP: remote-write, Prometheus API, health, /metrics [default: 127.0.0.1:9201].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Disk budget of the ring store in bytes; the oldest data is overwritten when full
    /// [default: 1073741824 = 1 GiB].
    #[arg(long, value_name = "BYTES")]
    storage_size: Option<u64>,
    /// Drop samples older than this (e.g. 15d, 12h) even when the budget is not full [default: none].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    retention: Option<std::time::Duration>,
    /// How often mapped data is synced to disk; bounds loss on power failure [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    sync_interval: Option<std::time::Duration>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGTAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        config = config.merge_file(path)?;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(size) = args.storage_size {
        config.storage_size_bytes = size;
    }
    if args.retention.is_some() {
        config.retention = args.retention;
    }
    if let Some(interval) = args.sync_interval {
        config.sync_interval = interval;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let server = apiserver::server::Server::start(config).await?;
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
