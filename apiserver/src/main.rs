//! The `ringtail` binary: parses flags, starts the server or runs a one-shot command.

mod cli_adapter;
mod cli_promql_test;
mod cli_query;

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
    /// YAML file with the same settings as these flags plus `scrape_configs` (flags win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    adapter: cli_adapter::AdapterArgs,
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
    /// How far back an instant vector selector looks for a sample [default: 5m].
    #[arg(long = "query.lookback-delta", value_name = "DURATION", value_parser = humantime::parse_duration)]
    query_lookback_delta: Option<std::time::Duration>,
    /// Most samples one query may load into memory; beyond it the query fails with 503
    /// [default: 50000000].
    #[arg(long = "query.max-samples", value_name = "COUNT")]
    query_max_samples: Option<usize>,
    /// Longest a query may run before it is aborted with 503 [default: 2m].
    #[arg(long = "query.timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    query_timeout: Option<std::time::Duration>,
    /// Largest remote-write request body in bytes (snappy-compressed); larger requests get 413
    /// [default: 33554432 = 32 MiB].
    #[arg(long, value_name = "BYTES")]
    remote_write_max_body_bytes: Option<usize>,
    /// File with the bearer token remote-write senders must send (`Authorization: Bearer …`)
    /// [default: none, no check].
    #[arg(long, value_name = "FILE")]
    remote_write_bearer_token_file: Option<PathBuf>,
    /// Decompressed remote-write bytes being decoded at once; past it senders wait, then get 503
    /// with Retry-After [default: 268435456 = 256 MiB].
    #[arg(long, value_name = "BYTES")]
    remote_write_max_inflight_bytes: Option<usize>,
    /// Use the cluster this kubeconfig names (scrape discovery, label-selector resolution and the
    /// aggregated API's authentication) [default: in-cluster config when running in a pod].
    #[arg(long, value_name = "FILE", conflicts_with = "standalone")]
    kubeconfig: Option<PathBuf>,
    /// Never talk to a Kubernetes API, even inside a pod.
    #[arg(long)]
    standalone: bool,
    /// With a cluster, serve the metrics APIs without its authentication and authorization
    /// (front-proxy certificates, TokenReview, SubjectAccessReview); the standalone rules
    /// (`--adapter-tokens-file`) apply instead.
    #[arg(long)]
    no_cluster_auth: bool,
}

/// mimalloc keeps freed memory for reuse instead of returning large blocks to the kernel at once:
/// queries allocate and free tens of megabytes each, which glibc turned into page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One-shot commands print results on stdout; only warnings go to the log by default.
    let default_level = match cli.command {
        Command::Query(_) | Command::PromqlTest(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGTAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
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
    if let Some(bytes) = args.remote_write_max_body_bytes {
        config.remote_write_max_body_bytes = bytes;
    }
    if args.remote_write_bearer_token_file.is_some() {
        config.remote_write_bearer_token_file = args.remote_write_bearer_token_file;
    }
    if let Some(bytes) = args.remote_write_max_inflight_bytes {
        config.remote_write_max_inflight_bytes = bytes;
    }
    args.adapter.apply(&mut config.adapter);
    if let Some(path) = args.kubeconfig {
        config.cluster.mode = apiserver::k8s::ClusterMode::Kubeconfig(path);
    }
    if args.standalone {
        config.cluster.mode = apiserver::k8s::ClusterMode::Standalone;
    }
    if args.no_cluster_auth {
        config.cluster.authentication = false;
    }
    let mut query_options = query::EngineOptions::default();
    if let Some(lookback) = args.query_lookback_delta {
        query_options.lookback = lookback;
    }
    if let Some(max_samples) = args.query_max_samples {
        query_options.max_samples = max_samples;
    }
    if let Some(timeout) = args.query_timeout {
        query_options.timeout = timeout;
    }
    apiserver::server::set_query_options(query_options);
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
