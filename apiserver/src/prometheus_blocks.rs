//! The blocks of a Prometheus config file that Ringtail has no part for — `alerting`,
//! `remote_read`, `tracing`, `storage.exemplars`, and `global.query_log_file` — read so that a
//! `prometheus.yml` loads as it is (Debian's own sample has `alerting`), and each one that is set
//! named in a warning at start: taken, never dropped in silence.
//! `storage.tsdb.out_of_order_time_window` is the one setting among them that Ringtail has: it
//! sets `--out-of-order-window`.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// What a config file's Prometheus-only blocks hold, as far as Ringtail reads them (the
/// `--config` file's keys of the same names, see `crate::settings::SettingsLayer`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusBlocks {
    /// `alerting`: Alertmanagers to notify and alert relabeling.
    #[serde(default, deserialize_with = "mapping")]
    pub alerting: Option<serde_yaml::Mapping>,
    /// `remote_read`: endpoints Prometheus reads old data from.
    #[serde(default, deserialize_with = "list")]
    pub remote_read: Option<Vec<serde_yaml::Value>>,
    /// `tracing`: where Prometheus sends its trace spans.
    #[serde(default, deserialize_with = "mapping")]
    pub tracing: Option<serde_yaml::Mapping>,
    /// `storage`: the TSDB's out-of-order window, and exemplar storage.
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage: StorageBlock,
}

/// Prometheus's `storage` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageBlock {
    #[serde(default, deserialize_with = "null_as_default")]
    tsdb: TsdbBlock,
    /// `exemplars: {max_exemplars: N}`.
    #[serde(default)]
    exemplars: Option<serde_yaml::Value>,
}

/// Prometheus's `storage.tsdb` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TsdbBlock {
    #[serde(default, deserialize_with = "window")]
    out_of_order_time_window: Option<Duration>,
    /// The same window in milliseconds, as Prometheus 2.42 also writes it in the config it
    /// serves (`/api/v1/status/config`: an internal field it marshals by mistake).
    #[serde(default)]
    outofordertimewindow: Option<u64>,
}

impl PrometheusBlocks {
    /// `storage.tsdb.out_of_order_time_window`, when set: Ringtail's `out_of_order_window`.
    pub fn out_of_order_window(&self) -> Option<Duration> {
        let tsdb = &self.storage.tsdb;
        tsdb.out_of_order_time_window.or(tsdb.outofordertimewindow.map(Duration::from_millis))
    }

    /// One sentence per block that is set and that Ringtail does not act on.
    pub fn unused(&self) -> Vec<String> {
        let mut unused = Vec::new();
        if let Some(alerting) = &self.alerting {
            let alertmanagers = alerting.get("alertmanagers").and_then(|v| v.as_sequence()).map_or(0, Vec::len);
            unused.push(format!(
                "alerting: Ringtail sends no alert notifications, so the {alertmanagers} Alertmanager \
                 configuration(s) of this block are not contacted; alerting rules are still evaluated \
                 and listed in /api/v1/rules and /api/v1/alerts"
            ));
        }
        if let Some(endpoints) = &self.remote_read {
            unused.push(format!(
                "remote_read: queries read Ringtail's own store only, so the {} remote_read \
                 endpoint(s) are not read",
                endpoints.len()
            ));
        }
        if self.tracing.is_some() {
            unused.push("tracing: Ringtail exports no trace spans, so this block is not used".to_string());
        }
        if self.storage.exemplars.is_some() {
            unused.push("storage.exemplars: Ringtail stores no exemplars, so this block is not used".to_string());
        }
        unused
    }
}

/// The settings of a config file's `global` block that Ringtail does not act on, one sentence
/// each (`query_log_file`; the rest of `global` is the scraper's and the rules').
pub fn unused_in_global(global: Option<&serde_yaml::Value>) -> Vec<String> {
    let query_log_file =
        global.and_then(|g| g.get("query_log_file")).and_then(|v| v.as_str()).filter(|f| !f.is_empty());
    query_log_file
        .map(|file| format!("global.query_log_file: Ringtail keeps no query log, so {file:?} is not written"))
        .into_iter()
        .collect()
}

/// A block that is a mapping, or absent (written with no keys, YAML reads it as null).
pub(crate) fn mapping<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_yaml::Mapping>, D::Error> {
    Option::<serde_yaml::Mapping>::deserialize(d)
}

/// A block that is a list, or absent.
pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<serde_yaml::Value>>, D::Error> {
    Option::<Vec<serde_yaml::Value>>::deserialize(d)
}

/// A duration as Prometheus writes one (`30m`, `1h30m`); the message names the key, which
/// serde_yaml's custom errors do not.
fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!("storage.tsdb.out_of_order_time_window: invalid duration {t:?}: {e}"))
        })
    })
    .transpose()
}

pub(crate) fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<PrometheusBlocks, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn each_block_that_is_set_is_named_once() {
        let blocks = read(
            "alerting:\n  alertmanagers:\n  - static_configs: [{targets: ['localhost:9093']}]\n  \
             - static_configs: [{targets: ['other:9093']}]\n\
             remote_read: [{url: 'http://old:9090/api/v1/read'}]\n\
             tracing: {endpoint: 'localhost:4317'}\n\
             storage: {tsdb: {out_of_order_time_window: 1h30m}, exemplars: {max_exemplars: 100}}\n",
        )
        .unwrap();
        let unused = blocks.unused();
        assert_eq!(unused.len(), 4, "{unused:?}");
        assert!(unused[0].starts_with("alerting:") && unused[0].contains("the 2 Alertmanager"), "{}", unused[0]);
        assert!(unused[1].starts_with("remote_read:") && unused[1].contains("the 1 remote_read"), "{}", unused[1]);
        assert!(unused[2].starts_with("tracing:"));
        assert!(unused[3].starts_with("storage.exemplars:"));
        assert_eq!(blocks.out_of_order_window(), Some(Duration::from_secs(90 * 60)));
        // As Prometheus 2.42 writes the block back: both spellings.
        let written = read("storage:\n  tsdb:\n    outofordertimewindow: 420000\n    out_of_order_time_window: 7m\n");
        assert_eq!(written.unwrap().out_of_order_window(), Some(Duration::from_secs(420)));
        let millis_only = read("storage: {tsdb: {outofordertimewindow: 1500}}\n").unwrap();
        assert_eq!(millis_only.out_of_order_window(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn a_query_log_file_in_global_is_named() {
        let global = |yaml: &str| serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap();
        let named = unused_in_global(Some(&global("{scrape_interval: 15s, query_log_file: /var/log/q.log}")));
        assert_eq!(named.len(), 1);
        assert!(named[0].starts_with("global.query_log_file:") && named[0].contains("/var/log/q.log"), "{named:?}");
        assert!(
            unused_in_global(Some(&global("{query_log_file: ''}"))).is_empty(),
            "empty is no log, as in Prometheus"
        );
        assert!(unused_in_global(Some(&global("{scrape_interval: 15s}"))).is_empty());
        assert!(unused_in_global(None).is_empty());
    }

    #[test]
    fn absent_and_empty_blocks_name_nothing() {
        for yaml in ["{}", "storage:\n", "storage: {tsdb: {}}\n", "storage: {tsdb: }\n"] {
            let blocks = read(yaml).unwrap();
            assert!(blocks.unused().is_empty(), "{yaml}: {:?}", blocks.unused());
            assert_eq!(blocks.out_of_order_window(), None, "{yaml}");
        }
        // `alerting:` with no keys is still a block someone wrote.
        assert_eq!(read("alerting:\n").unwrap().unused().len(), 0, "null is as absent");
        assert_eq!(read("alerting: {}\n").unwrap().unused().len(), 1);
    }

    #[test]
    fn wrong_shapes_and_unknown_storage_keys_are_refused_by_name() {
        for (yaml, named) in [
            ("alerting: [1]\n", "invalid type"),
            ("remote_read: {url: x}\n", "invalid type"),
            ("storage: {tsdb: {retention: 1d}}\n", "retention"),
            ("storage: {wal: {}}\n", "wal"),
            ("storage: {tsdb: {out_of_order_time_window: soon}}\n", "storage.tsdb.out_of_order_time_window"),
        ] {
            let error = read(yaml).unwrap_err().to_string();
            assert!(error.contains(named), "{yaml}: {error}");
        }
    }
}
