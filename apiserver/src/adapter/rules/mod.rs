//! The rules: what prometheus-adapter's configuration file says, compiled once per load.
//!
//! - `config` — the file format (unknown keys are errors, by path) and the embedded default.
//! - `template` — the Go `text/template` subset with `<<`/`>>` delimiters those files use.
//! - `selector` — Kubernetes label selectors (`labelSelector`, `metricLabelSelector`).
//! - `naming` — `CompiledRule`: series query, filters, series name → metric name, and the
//!   label ↔ resource mapping.
//! - `query_template` — a rule's `metricsQuery` parsed once with placeholders.
//! - `query` — one request's query built from a rule (matchers substituted into the parsed
//!   template, or rendered text where the template needs it).
//! - `resource` — `resourceRules` compiled: the cpu and memory queries `metrics.k8s.io` runs.
//! - `reload` — rules reloaded on file change and SIGHUP; a bad new file keeps the old rules.

pub mod config;
pub(crate) mod naming;
pub(crate) mod query;
mod query_template;
pub(crate) mod reload;
pub(crate) mod resource;
pub mod selector;
pub(crate) mod template;

use super::provider::resources::ObjectResolver;
use super::AdapterError;
use config::AdapterConfig;
pub use naming::RuleError;
pub(crate) use naming::{CompiledRule, RuleKind};
use std::time::Duration;

/// The rules in force, compiled, with a generation bumped on every reload.
#[derive(Debug)]
pub(crate) struct RuleSet {
    pub(crate) generation: u64,
    /// Where the rules came from (a file path, or "embedded default").
    pub(crate) source: String,
    pub(crate) custom: Vec<CompiledRule>,
    pub(crate) external: Vec<CompiledRule>,
    /// `resourceRules`, when the file has them (then `metrics.k8s.io` is served).
    pub(crate) resource: Option<resource::ResourceQueries>,
}

impl RuleSet {
    /// The longest `[range]` any rule's `metricsQuery` reads (zero when none has one): how much
    /// data a restarted replica needs before its answers are whole.
    pub(crate) fn longest_window(&self) -> std::time::Duration {
        let seconds = self.custom.iter().chain(&self.external).map(|r| r.longest_range_seconds).max().unwrap_or(0);
        std::time::Duration::from_secs(seconds.max(0) as u64)
    }
}

/// Compiles every rule of `config`; the first bad rule is the error.
pub(crate) fn compile_rules(
    config: &AdapterConfig,
    source: String,
    resolver: &dyn ObjectResolver,
) -> Result<RuleSet, RuleError> {
    let custom = config
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| CompiledRule::compile(rule, format!("rules[{i}]"), RuleKind::Custom, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    let external = config
        .external_rules
        .iter()
        .enumerate()
        .map(|(i, rule)| CompiledRule::compile(rule, format!("externalRules[{i}]"), RuleKind::External, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    let resource =
        config.resource_rules.as_ref().map(|rules| resource::ResourceQueries::compile(rules, resolver)).transpose()?;
    Ok(RuleSet { generation: 0, source, custom, external, resource })
}

/// Loads and compiles the rules from `path`, or the embedded default when `None`.
pub(crate) fn load_rules(
    path: Option<&std::path::Path>,
    rate_window: Duration,
    resolver: &dyn ObjectResolver,
) -> Result<(RuleSet, Vec<String>), AdapterError> {
    let (config, source) = match path {
        Some(path) => (AdapterConfig::load(path)?, path.display().to_string()),
        None => (AdapterConfig::embedded_default(rate_window), "embedded default".to_string()),
    };
    let warnings = config.warnings();
    Ok((compile_rules(&config, source, resolver)?, warnings))
}
