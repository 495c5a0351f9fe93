//! The metrics adapter's command-line face: the `serve` flags (`--secure-listen`, TLS files,
//! `--adapter-config`, `--adapter-tokens-file`, …) and `ringtail adapter-config check FILE`.

use anyhow::Context;
use apiserver::adapter::serve::AdapterServeConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `ringtail serve` for the metrics adapter.
#[derive(clap::Args, Debug)]
pub struct AdapterArgs {
    /// TLS address of custom.metrics.k8s.io / external.metrics.k8s.io [default: 0.0.0.0:6443;
    /// if the default is taken the adapter is skipped with a warning, an explicit one must bind].
    #[arg(long, value_name = "HOST:PORT")]
    secure_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listener, re-read when it changes [default: a generated
    /// pair in <data-dir>-tls/, its CA in <data-dir>-tls/ca.crt].
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key matching --tls-cert-file [default: generated with the certificate].
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// prometheus-adapter rules file (rules, externalRules, resourceRules), reloaded on change
    /// and SIGHUP [default: embedded rules: pod series as pods metrics, *_total as rates].
    #[arg(long, value_name = "FILE")]
    adapter_config: Option<PathBuf>,
    /// Bearer tokens accepted on the metrics APIs, kube-apiserver --token-auth-file CSV format
    /// (token,user,uid,"groups") [default: none, every TLS client is accepted].
    #[arg(long, value_name = "FILE")]
    adapter_tokens_file: Option<PathBuf>,
    /// rate() window of the embedded default rules for *_total counters [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    adapter_rate_window: Option<Duration>,
    /// Series without a sample for this long are no longer listed as metrics [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    adapter_metrics_max_age: Option<Duration>,
}

impl AdapterArgs {
    /// Applies the flags on top of the file/default settings (flags win).
    pub fn apply(self, config: &mut AdapterServeConfig) {
        if let Some(addr) = self.secure_listen {
            config.secure_listen = addr;
            config.secure_listen_explicit = true;
        }
        if self.tls_cert_file.is_some() {
            config.tls_cert_file = self.tls_cert_file;
            config.tls_private_key_file = self.tls_private_key_file;
        }
        if self.adapter_config.is_some() {
            config.config_file = self.adapter_config;
        }
        if self.adapter_tokens_file.is_some() {
            config.tokens_file = self.adapter_tokens_file;
        }
        if let Some(window) = self.adapter_rate_window {
            config.rate_window = window;
        }
        if let Some(age) = self.adapter_metrics_max_age {
            config.metrics_max_age = age;
        }
    }
}

/// `ringtail adapter-config …`
#[derive(clap::Subcommand, Debug)]
pub enum AdapterConfigCommand {
    /// Load a prometheus-adapter rules file and explain each rule: the series it matches now,
    /// the metric names it produces, and the query an example object would run.
    Check {
        /// The rules file.
        file: PathBuf,
        /// Store to read live series from; stop the server first [default: none, rules only].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Runs an `adapter-config` subcommand; an invalid file is an error (exit status 1).
pub fn run(command: AdapterConfigCommand) -> anyhow::Result<()> {
    match command {
        AdapterConfigCommand::Check { file, data_dir } => {
            let db = match data_dir {
                Some(dir) => Some(std::sync::Arc::new(
                    tsdb::Db::open(tsdb::Options::new(&dir))
                        .with_context(|| format!("opening the store in {} (is the server running?)", dir.display()))?,
                )),
                None => None,
            };
            let mut out = std::io::stdout().lock();
            apiserver::adapter::check::explain(&file, db, apiserver::adapter::DEFAULT_METRICS_MAX_AGE, &mut out)?;
            Ok(())
        }
    }
}
