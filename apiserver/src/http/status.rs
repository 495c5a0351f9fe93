//! `status` answers Prometheus's status endpoints in Prometheus 2.42's JSON shape:
//! `/api/v1/status/config` (`{"yaml": …}`: the scrape configuration in force, secrets shown as
//! `<secret>`), `/api/v1/status/flags` (every flag → its value as text, see
//! `Settings::flag_values`) and `/api/v1/status/runtimeinfo`. Go-only fields get Ringtail's
//! nearest equivalent: `goroutineCount` is the number of tokio tasks alive, `GOMAXPROCS` the
//! runtime's worker threads, `GOGC`/`GODEBUG` are empty; `storageRetention` is the ring's disk budget (and
//! the time retention, when one is set), as Prometheus writes a size-and-time retention.

use crate::reload::ConfigReloader;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// What the status endpoints read; built at start, the reloader set once it runs.
pub(crate) struct StatusState {
    started_at: SystemTime,
    cwd: String,
    flags: Vec<(String, String)>,
    storage_retention: String,
    pub(crate) reloader: OnceLock<Arc<ConfigReloader>>,
}

impl StatusState {
    pub(crate) fn new(settings: &crate::settings::Settings) -> StatusState {
        let size = crate::settings::format_base2_bytes(settings.storage_size_bytes);
        let storage_retention = match settings.retention {
            Some(time) => format!("{} or {size}", crate::adapter::rules::config::prom_duration(time)),
            None => size,
        };
        StatusState {
            started_at: SystemTime::now(),
            cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|e| format!("<error: {e}>")),
            flags: settings.flag_values(),
            storage_retention,
            reloader: OnceLock::new(),
        }
    }
}

/// The status routes, with their own state (merged into the main router by the server).
pub(crate) fn routes(state: Arc<StatusState>) -> Router {
    Router::new()
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtime_info))
        .with_state(state)
}

fn success(data: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json!({"status": "success", "data": data}).to_string())
        .into_response()
}

async fn config(State(state): State<Arc<StatusState>>) -> Response {
    let mut yaml = match state.reloader.get() {
        Some(reloader) => reloader.status().0,
        None => serde_yaml::Value::Mapping(Default::default()),
    };
    redact_secrets(&mut yaml);
    let text = serde_yaml::to_string(&yaml).unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"));
    success(json!({ "yaml": text }))
}

/// Keys whose values are secrets, as Prometheus's `Secret` fields.
const SECRET_KEYS: [&str; 4] = ["password", "credentials", "bearer_token", "client_secret"];

fn redact_secrets(value: &mut serde_yaml::Value) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                if key.as_str().is_some_and(|k| SECRET_KEYS.contains(&k)) {
                    *value = serde_yaml::Value::String("<secret>".into());
                } else {
                    redact_secrets(value);
                }
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

async fn flags(State(state): State<Arc<StatusState>>) -> Response {
    let map: Map<String, Value> = state.flags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    success(Value::Object(map))
}

async fn runtime_info(State(state): State<Arc<StatusState>>) -> Response {
    let (reload_success, last_success_s) = state.reloader.get().map(|r| r.status().1).unwrap_or((true, 0.0));
    let last_config = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(last_success_s.max(0.0));
    let runtime = tokio::runtime::Handle::current().metrics();
    success(json!({
        "startTime": humantime::format_rfc3339_nanos(state.started_at).to_string(),
        "CWD": state.cwd,
        "reloadConfigSuccess": reload_success,
        "lastConfigTime": humantime::format_rfc3339_seconds(last_config).to_string(),
        // Ringtail keeps no corruption counter: the store refuses a corrupt file at open.
        "corruptionCount": 0,
        "goroutineCount": runtime.num_alive_tasks(),
        "GOMAXPROCS": runtime.num_workers(),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": state.storage_retention,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut yaml: serde_yaml::Value = serde_yaml::from_str(
            "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password: p}\n  authorization: {credentials: c}\n",
        )
        .unwrap();
        redact_secrets(&mut yaml);
        let text = serde_yaml::to_string(&yaml).unwrap();
        assert!(text.contains("username: u") && !text.contains(": p\n") && !text.contains(": c\n"), "{text}");
        assert_eq!(text.matches("<secret>").count(), 2, "{text}");
    }
}
