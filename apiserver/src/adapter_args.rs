//! prometheus-adapter's command line, accepted by `ringtail` so a prometheus-adapter Deployment
//! keeps its args when only the image changes: its flags ([`PrometheusAdapterFlags`]) mapped
//! onto Ringtail's settings, `--config` naming an adapter rules file ([`config_file_role`]), the
//! flags given without the `serve` subcommand ([`with_default_subcommand`]) and klog's `--v`
//! verbosity ([`log_filter_for_verbosity`]).
//!
//! The flags that point prometheus-adapter at a Prometheus (`--prometheus-url` and friends) are
//! not among them: Ringtail answers from its own store.

use crate::settings::{ClusterMode, Settings};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// prometheus-adapter's flags that Ringtail honours (the `--help` text says how). Flags only:
/// none of them has a key in the config file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct PrometheusAdapterFlags {
    /// prometheus-adapter's HTTPS port: the metrics APIs listen on every interface at this port
    /// (--secure-listen 0.0.0.0:PORT).
    #[arg(long = "secure-port", value_name = "PORT", conflicts_with = "secure_listen")]
    pub secure_port: Option<u16>,
    /// prometheus-adapter's certificate directory, used when --tls-cert-file is not given: its
    /// apiserver.crt and apiserver.key are served when both exist, otherwise a pair and its CA
    /// are generated there (ca.crt, tls.crt, tls.key) instead of beside the data directory.
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Accepted for prometheus-adapter's args and ignored: Ringtail lists series from its own
    /// index whenever a request needs it, so there is nothing to relist.
    #[arg(long = "metrics-relist-interval", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metrics_relist_interval: Option<Duration>,
    /// prometheus-adapter's name for --adapter-metrics-max-age.
    #[arg(
        id = "prometheus_adapter_metrics_max_age",
        long = "metrics-max-age",
        value_name = "DURATION",
        value_parser = humantime::parse_duration,
        conflicts_with = "metrics_max_age"
    )]
    pub metrics_max_age: Option<Duration>,
    /// prometheus-adapter's kubeconfig for its object listers: the same as --kubeconfig.
    #[arg(long = "lister-kubeconfig", value_name = "FILE", conflicts_with_all = ["kubeconfig", "standalone"])]
    pub lister_kubeconfig: Option<PathBuf>,
    /// klog's log verbosity: 0–1 logs at info, 2–4 Ringtail's own messages at debug, 5 and
    /// above at trace (the RINGTAIL_LOG environment variable wins).
    #[arg(long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,
    /// Accepted for klog's args: Ringtail always logs to standard error.
    #[arg(long = "logtostderr", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub logtostderr: Option<bool>,
}

impl PrometheusAdapterFlags {
    /// Puts the flags on `settings` (they are never in the file, so nothing is overridden
    /// that the command line set) and returns what the log should say about them.
    pub fn apply(&self, settings: &mut Settings) -> Vec<String> {
        let mut notices = Vec::new();
        if let Some(port) = self.secure_port {
            settings.adapter.secure_listen = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port);
            settings.adapter.secure_listen_explicit = true;
        }
        if let Some(dir) = &self.cert_dir {
            settings.adapter.cert_dir = Some(dir.clone());
        }
        if let Some(age) = self.metrics_max_age {
            settings.adapter.metrics_max_age = age;
        }
        if let Some(path) = &self.lister_kubeconfig {
            settings.cluster.mode = ClusterMode::Kubeconfig(path.clone());
        }
        if let Some(interval) = self.metrics_relist_interval {
            notices.push(format!(
                "--metrics-relist-interval={} has no effect: Ringtail lists series from its own index when a request \
                 needs them, so new metrics appear without a relist",
                humantime::format_duration(interval)
            ));
        }
        if self.logtostderr == Some(false) {
            notices.push("--logtostderr=false has no effect: Ringtail always logs to standard error".into());
        }
        notices
    }
}

/// The log filter klog's `--v=LEVEL` stands for: Ringtail's own crates at debug from 2, at trace
/// (and the libraries at debug) from 5.
pub fn log_filter_for_verbosity(level: u8) -> &'static str {
    match level {
        0..=1 => "info",
        2..=4 => "info,ringtail=debug,apiserver=debug,ingest=debug,query=debug,tsdb=debug",
        _ => "debug,ringtail=trace,apiserver=trace,ingest=trace,query=trace,tsdb=trace",
    }
}

/// What a file given to `ringtail serve --config` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFileRole {
    /// Ringtail's own settings file.
    Settings,
    /// A prometheus-adapter rules file (`rules`, `externalRules`, `resourceRules` at the top,
    /// nothing else), as prometheus-adapter's `--config` names one: the adapter's rules.
    AdapterRules,
}

/// Top-level keys of a prometheus-adapter rules file.
const ADAPTER_RULE_KEYS: [&str; 3] = ["rules", "externalRules", "resourceRules"];

/// Whether `path` (given to `--config`) is Ringtail's settings file or a prometheus-adapter
/// rules file: a YAML mapping whose keys are all rule-list keys is the latter. A file that does
/// not read or parse is left to the settings reader, which reports it.
pub fn config_file_role(path: &Path) -> ConfigFileRole {
    let Ok(text) = std::fs::read_to_string(path) else { return ConfigFileRole::Settings };
    let Ok(serde_yaml::Value::Mapping(top)) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return ConfigFileRole::Settings;
    };
    let all_rule_keys = top.keys().all(|key| key.as_str().is_some_and(|k| ADAPTER_RULE_KEYS.contains(&k)));
    if !top.is_empty() && all_rule_keys {
        ConfigFileRole::AdapterRules
    } else {
        ConfigFileRole::Settings
    }
}

/// The command line with `serve` inserted when it starts with a flag other than help or version:
/// a prometheus-adapter Deployment's args replace the image's command, which names `serve`.
pub fn with_default_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    let first_is_flag = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.starts_with('-') && !matches!(a, "-h" | "--help" | "-V" | "--version"));
    if !first_is_flag {
        return args;
    }
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut rest = args.into_iter();
    out.extend(rest.next());
    out.push(OsString::from("serve"));
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingsLayer;
    use clap::Parser;

    /// The flags as `ringtail serve` parses them beside Ringtail's own.
    #[derive(Parser, Debug)]
    struct Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsLayer,
        #[command(flatten)]
        adapter: PrometheusAdapterFlags,
    }

    fn parse(args: &[&str]) -> Result<Serve, clap::Error> {
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
    }

    #[test]
    fn kube_prometheus_and_helm_chart_args_parse_and_map_onto_the_settings() {
        // kube-prometheus's prometheus-adapter Deployment args, less --prometheus-url.
        let kube_prometheus = parse(&[
            "--cert-dir=/var/run/serving-cert",
            "--config=/etc/adapter/config.yaml",
            "--metrics-relist-interval=1m",
            "--secure-port=6443",
        ])
        .expect("parses");
        let mut settings = Settings::default();
        settings.layer(kube_prometheus.settings);
        let notices = kube_prometheus.adapter.apply(&mut settings);
        assert_eq!(settings.adapter.secure_listen, "0.0.0.0:6443".parse().unwrap());
        assert!(settings.adapter.secure_listen_explicit);
        assert_eq!(settings.adapter.cert_dir.as_deref(), Some(Path::new("/var/run/serving-cert")));
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains("--metrics-relist-interval=1m has no effect"), "{notices:?}");
        // The Helm chart's.
        let helm = parse(&[
            "--secure-port=6443",
            "--cert-dir=/tmp/cert",
            "--metrics-relist-interval=1m",
            "--v=4",
            "--config=/etc/adapter/config.yaml",
            "--logtostderr",
            "--metrics-max-age=5m",
            "--lister-kubeconfig=/etc/kube/config",
        ])
        .expect("parses");
        assert_eq!(helm.adapter.verbosity, Some(4));
        assert_eq!(helm.adapter.logtostderr, Some(true));
        let mut settings = Settings::default();
        helm.adapter.apply(&mut settings);
        assert_eq!(settings.adapter.metrics_max_age, Duration::from_secs(300));
        assert_eq!(settings.cluster.mode, ClusterMode::Kubeconfig("/etc/kube/config".into()));
        assert_eq!(parse(&["--logtostderr=false"]).expect("parses").adapter.logtostderr, Some(false));
    }

    #[test]
    fn the_adapter_names_of_ringtail_flags_conflict_with_them_rather_than_silently_win() {
        for args in [
            &["--secure-port=6443", "--secure-listen=127.0.0.1:6443"][..],
            &["--metrics-max-age=5m", "--adapter-metrics-max-age=10m"][..],
            &["--lister-kubeconfig=a", "--kubeconfig=b"][..],
            &["--lister-kubeconfig=a", "--standalone"][..],
        ] {
            let err = parse(args).expect_err("conflicting flags");
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict, "{args:?}");
        }
        assert!(parse(&["--secure-port=70000"]).is_err(), "a port is 16 bits");
        assert!(parse(&["--v=high"]).is_err());
    }

    #[test]
    fn klog_verbosity_maps_to_log_levels() {
        let levels: Vec<&str> = [0, 1, 2, 4, 5, 10].into_iter().map(log_filter_for_verbosity).collect();
        assert_eq!(levels[..2], ["info", "info"]);
        assert!(levels[2..4].iter().all(|l| l.starts_with("info,") && l.contains("apiserver=debug")), "{levels:?}");
        assert!(levels[4..].iter().all(|l| l.starts_with("debug,") && l.contains("tsdb=trace")), "{levels:?}");
        for filter in levels {
            tracing_subscriber::EnvFilter::try_new(filter).expect("a valid filter");
        }
    }

    #[test]
    fn a_rules_file_given_to_config_is_told_apart_from_a_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let rules = write("rules.yaml", "rules:\n- seriesQuery: 'up'\nexternalRules: []\n");
        assert_eq!(config_file_role(&rules), ConfigFileRole::AdapterRules);
        let resource_only = write("resource.yaml", "resourceRules:\n  window: 5m\n");
        assert_eq!(config_file_role(&resource_only), ConfigFileRole::AdapterRules);
        let settings = write("settings.yaml", "listen: 127.0.0.1:9201\n");
        assert_eq!(config_file_role(&settings), ConfigFileRole::Settings);
        let mixed = write("mixed.yaml", "rules: []\nlisten: 127.0.0.1:9201\n");
        assert_eq!(config_file_role(&mixed), ConfigFileRole::Settings, "the settings reader reports `rules`");
        assert_eq!(config_file_role(&write("empty.yaml", "")), ConfigFileRole::Settings);
        assert_eq!(config_file_role(&write("list.yaml", "- rules\n")), ConfigFileRole::Settings);
        assert_eq!(config_file_role(&dir.path().join("missing.yaml")), ConfigFileRole::Settings);
    }

    #[test]
    fn flags_without_a_subcommand_mean_serve() {
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            with_default_subcommand(os(&["ringtail", "--secure-port=6443", "--config=c.yaml"])),
            os(&["ringtail", "serve", "--secure-port=6443", "--config=c.yaml"])
        );
        for unchanged in [
            &["ringtail", "serve", "--listen=1"][..],
            &["ringtail", "--help"][..],
            &["ringtail", "-V"][..],
            &["ringtail"][..],
            &["ringtail", "query", "up"][..],
        ] {
            assert_eq!(with_default_subcommand(os(unchanged)), os(unchanged));
        }
    }
}
