//! prometheus-adapter's command line, accepted by `ringtail` so a prometheus-adapter Deployment
//! keeps its args when only the image changes: its flags ([`PrometheusAdapterFlags`]) mapped
//! onto Ringtail's settings, `--config` naming an adapter rules file ([`config_file_role`]), the
//! flags given without the `serve` subcommand ([`with_default_subcommand`]) and klog's `--v`
//! verbosity ([`log_filter_for_verbosity`]).
//!
//! The flags that point prometheus-adapter at a Prometheus (`--prometheus-url` and friends) set
//! up the external query source (`adapter::query_source`): series the store does not have are
//! listed and queried there.

use crate::adapter::query_source::{
    ExternalSourceSettings, HttpVerb, DEFAULT_RELIST_INTERVAL, DEFAULT_TIMEOUT, IN_CLUSTER_CA_FILE,
    IN_CLUSTER_TOKEN_FILE,
};
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
    /// How often the external query source's series are listed again (default 1m; a metric
    /// nobody has listed yet is looked up at once). The store needs no relist: its series are
    /// listed from its own index whenever a request needs them.
    #[arg(long = "metrics-relist-interval", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metrics_relist_interval: Option<Duration>,
    /// A Prometheus-compatible query API (Prometheus, VictoriaMetrics
    /// `http://vmselect:8481/select/0/prometheus`, Mimir, Thanos Query) that adapter rules also
    /// read: series not in Ringtail's store are listed and queried there (per rule:
    /// `querySource: local | external | auto`). If it fails, requests for its metrics fail.
    #[arg(long = "prometheus-url", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// A header sent with every call to --prometheus-url, as NAME=VALUE (repeatable), e.g.
    /// `X-Scope-OrgID=team-a` or `THANOS-TENANT=team-a`.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub prometheus_headers: Vec<(String, String)>,
    /// File holding a bearer token for --prometheus-url (read at every call, so a rotated token
    /// is picked up).
    #[arg(long = "prometheus-token-file", value_name = "FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// CA bundle (PEM) the --prometheus-url certificate must chain to.
    #[arg(long = "prometheus-ca-file", value_name = "FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to --prometheus-url; needs the key file too.
    #[arg(long = "prometheus-client-tls-cert-file", value_name = "FILE")]
    pub prometheus_client_cert_file: Option<PathBuf>,
    /// Client key (PEM) for --prometheus-client-tls-cert-file.
    #[arg(long = "prometheus-client-tls-key-file", value_name = "FILE")]
    pub prometheus_client_key_file: Option<PathBuf>,
    /// Authenticate to --prometheus-url with the pod's service account token and trust the
    /// cluster CA (unless --prometheus-token-file / --prometheus-ca-file say otherwise).
    #[arg(long = "prometheus-auth-incluster")]
    pub prometheus_auth_incluster: bool,
    /// HTTP method of queries to --prometheus-url: GET (default) or POST (form body).
    #[arg(long = "prometheus-verb", value_name = "GET|POST", value_parser = parse_verb)]
    pub prometheus_verb: Option<HttpVerb>,
    /// Timeout of one call to --prometheus-url (Ringtail's own flag; default 10s).
    #[arg(long = "prometheus-timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub prometheus_timeout: Option<Duration>,
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
        settings.adapter.external_source = self.external_source();
        if let (Some(interval), None) = (self.metrics_relist_interval, &self.prometheus_url) {
            notices.push(format!(
                "--metrics-relist-interval={} has no effect without --prometheus-url: Ringtail lists series from its \
                 own index when a request needs them, so new metrics appear without a relist",
                humantime::format_duration(interval)
            ));
        }
        if self.logtostderr == Some(false) {
            notices.push("--logtostderr=false has no effect: Ringtail always logs to standard error".into());
        }
        notices
    }
}

impl PrometheusAdapterFlags {
    /// The external query source the `--prometheus-*` flags describe; `None` without a URL.
    fn external_source(&self) -> Option<ExternalSourceSettings> {
        let url = self.prometheus_url.as_ref()?;
        let in_cluster = |path: &str| self.prometheus_auth_incluster.then(|| PathBuf::from(path));
        Some(ExternalSourceSettings {
            url: url.clone(),
            headers: self.prometheus_headers.clone(),
            bearer_token_file: self.prometheus_token_file.clone().or_else(|| in_cluster(IN_CLUSTER_TOKEN_FILE)),
            ca_file: self.prometheus_ca_file.clone().or_else(|| in_cluster(IN_CLUSTER_CA_FILE)),
            client_cert_file: self.prometheus_client_cert_file.clone(),
            client_key_file: self.prometheus_client_key_file.clone(),
            timeout: self.prometheus_timeout.unwrap_or(DEFAULT_TIMEOUT),
            verb: self.prometheus_verb.unwrap_or_default(),
            relist_interval: self.metrics_relist_interval.unwrap_or(DEFAULT_RELIST_INTERVAL),
        })
    }
}

/// `NAME=VALUE` as a header.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn parse_verb(text: &str) -> Result<HttpVerb, String> {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(HttpVerb::Get),
        "POST" => Ok(HttpVerb::Post),
        _ => Err(format!("{text:?} is not GET or POST")),
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
        assert!(
            notices[0].contains("--metrics-relist-interval=1m has no effect without --prometheus-url"),
            "{notices:?}"
        );
        assert_eq!(settings.adapter.external_source, None);
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
    fn prometheus_flags_describe_the_external_query_source() {
        let args = parse(&[
            "--prometheus-url=https://thanos-query.monitoring.svc:9091/",
            "--prometheus-header=X-Scope-OrgID=team-a",
            "--prometheus-header=THANOS-TENANT=team-a=b",
            "--prometheus-auth-incluster",
            "--prometheus-ca-file=/etc/ca.pem",
            "--prometheus-client-tls-cert-file=/etc/c.pem",
            "--prometheus-client-tls-key-file=/etc/k.pem",
            "--prometheus-verb=post",
            "--metrics-relist-interval=5m",
            "--prometheus-timeout=3s",
        ])
        .expect("parses");
        let mut settings = Settings::default();
        let notices = args.adapter.apply(&mut settings);
        assert!(notices.is_empty(), "{notices:?}");
        let source = settings.adapter.external_source.expect("a source");
        assert_eq!(source.url, "https://thanos-query.monitoring.svc:9091/");
        assert_eq!(
            source.headers,
            vec![("X-Scope-OrgID".into(), "team-a".into()), ("THANOS-TENANT".into(), "team-a=b".into())]
        );
        assert_eq!(source.bearer_token_file.as_deref(), Some(Path::new(IN_CLUSTER_TOKEN_FILE)), "in-cluster token");
        assert_eq!(source.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")), "an explicit CA wins");
        assert_eq!(source.client_cert_file.as_deref(), Some(Path::new("/etc/c.pem")));
        assert_eq!(source.client_key_file.as_deref(), Some(Path::new("/etc/k.pem")));
        assert_eq!((source.verb, source.timeout), (HttpVerb::Post, Duration::from_secs(3)));
        assert_eq!(source.relist_interval, Duration::from_secs(300));
        assert!(parse(&["--prometheus-header=novalue"]).is_err());
        assert!(parse(&["--prometheus-verb=PUT"]).is_err());
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
