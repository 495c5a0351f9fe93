//! `GET /api/v1/rules` and `GET /api/v1/alerts`: the loaded rule groups (health, last error,
//! last evaluation time and duration per group and rule) and the alerting rules' active alerts,
//! in Prometheus 2.42's JSON shape, with its `type` filter (`record`, `alert`). Alerting rules
//! are evaluated for their state but nothing is sent: an answer listing one carries a
//! `warnings` entry saying so.

use super::prom_api::{finish, param, params, ApiError, UrlAndFormParams};
use super::AppState;
use crate::rules::{Group, Health, RuleKind, RuleStatus};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What an answer listing alerting rules says about them.
pub(crate) const ALERTS_NOT_SENT: &str =
    "Ringtail evaluates alerting rules for their state only: no alert is sent to an Alertmanager";

pub(crate) async fn rules(State(state): State<AppState>, form: Result<UrlAndFormParams, ApiError>) -> Response {
    let started = Instant::now();
    let result = rules_answer(&state, form);
    finish(&state, "rules", started, result)
}

pub(crate) async fn alerts(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let groups = loaded_groups(&state);
    let mut alerts = Vec::new();
    let mut any_alerting = false;
    for group in &groups {
        let status = group.status();
        for (rule, rule_status) in group.spec.rules.iter().zip(&status.rules) {
            if matches!(rule.kind, RuleKind::Alerting { .. }) {
                any_alerting = true;
                alerts.extend(alerts_json(rule_status));
            }
        }
    }
    let mut body = json!({"status": "success", "data": {"alerts": alerts}});
    if any_alerting {
        body["warnings"] = json!([ALERTS_NOT_SENT]);
    }
    finish(&state, "alerts", started, Ok(body.to_string()))
}

fn loaded_groups(state: &AppState) -> Vec<Arc<Group>> {
    state.rules.get().map(|manager| manager.groups()).unwrap_or_default()
}

fn rules_answer(state: &AppState, form: Result<UrlAndFormParams, ApiError>) -> Result<String, ApiError> {
    let params = params(form)?;
    let kind = param(&params, "type").unwrap_or("").to_ascii_lowercase();
    let (alerting, recording) = match kind.as_str() {
        "" => (true, true),
        "alert" => (true, false),
        "record" => (false, true),
        other => return Err(ApiError::bad_data(format!("invalid parameter \"type\": not supported value {other:?}"))),
    };
    let mut listed_alerting = false;
    let groups: Vec<Value> = loaded_groups(state)
        .iter()
        .map(|group| {
            let status = group.status();
            let mut rules = Vec::new();
            for (rule, rule_status) in group.spec.rules.iter().zip(&status.rules) {
                let mut entry = Map::new();
                entry.insert("name".into(), json!(rule.name()));
                entry.insert("query".into(), json!(rule.expr));
                entry.insert("health".into(), json!(rule_status.health.as_str()));
                if let Some(error) = rule_status.last_error.as_deref().filter(|e| !e.is_empty()) {
                    entry.insert("lastError".into(), json!(error));
                }
                entry.insert("evaluationTime".into(), json!(rule_status.evaluation_seconds));
                entry.insert("lastEvaluation".into(), json!(go_time(rule_status.last_evaluation)));
                match &rule.kind {
                    RuleKind::Recording { .. } => {
                        if !recording {
                            continue;
                        }
                        if !rule.labels.is_empty() {
                            entry.insert("labels".into(), json!(rule.labels));
                        }
                        entry.insert("type".into(), json!("recording"));
                    }
                    RuleKind::Alerting { hold, keep_firing, annotations, .. } => {
                        if !alerting {
                            continue;
                        }
                        listed_alerting = true;
                        entry.insert("state".into(), json!(alert_state(rule_status)));
                        entry.insert("duration".into(), go_seconds(hold.as_secs_f64()));
                        entry.insert("keepFiringFor".into(), go_seconds(keep_firing.as_secs_f64()));
                        entry.insert("labels".into(), json!(rule.labels));
                        entry.insert("annotations".into(), json!(annotations));
                        entry.insert("alerts".into(), Value::Array(alerts_json(rule_status)));
                        entry.insert("type".into(), json!("alerting"));
                    }
                }
                rules.push(Value::Object(entry));
            }
            json!({
                "name": group.spec.name,
                "file": group.spec.file,
                "rules": rules,
                "interval": go_seconds(group.spec.interval.as_secs_f64()),
                "limit": group.spec.limit,
                "evaluationTime": status.evaluation_seconds,
                "lastEvaluation": go_time(status.last_evaluation),
            })
        })
        .collect();
    let mut body = json!({"status": "success", "data": {"groups": groups}});
    if listed_alerting {
        body["warnings"] = json!([ALERTS_NOT_SENT]);
    }
    Ok(body.to_string())
}

/// `firing` when an alert fires, `pending` when one waits out `for`, `inactive` otherwise.
fn alert_state(status: &RuleStatus) -> &'static str {
    if status.alerts.iter().any(|a| a.firing) {
        "firing"
    } else if status.alerts.is_empty() || status.health == Health::Err {
        "inactive"
    } else {
        "pending"
    }
}

fn alerts_json(status: &RuleStatus) -> Vec<Value> {
    status
        .alerts
        .iter()
        .map(|alert| {
            let labels: Map<String, Value> =
                alert.labels.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect();
            json!({
                "labels": labels,
                "annotations": alert.annotations,
                "state": if alert.firing { "firing" } else { "pending" },
                "activeAt": go_time(Some(alert.active_at)),
                "value": go_exponent(alert.value),
            })
        })
        .collect()
}

/// Seconds as Go's `encoding/json` writes a float64: a whole number without a fraction (`60`,
/// not `60.0`).
fn go_seconds(seconds: f64) -> Value {
    if seconds.fract() == 0.0 && seconds.abs() < 1e15 {
        json!(seconds as i64)
    } else {
        json!(seconds)
    }
}

/// A time as Go's `time.Time` marshals it (RFC 3339 with the fraction's trailing zeros cut, in
/// UTC); `None` is Go's zero time, what Prometheus shows before the first evaluation.
fn go_time(time: Option<SystemTime>) -> String {
    let Some(time) = time else { return "0001-01-01T00:00:00Z".into() };
    let time = chrono::DateTime::<chrono::Utc>::from(time);
    let seconds = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = time.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{seconds}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{seconds}.{}Z", fraction.trim_end_matches('0'))
}

/// A value as Go's `strconv.FormatFloat(v, 'e', -1, 64)` writes it (`1e+00`, `2.5e-03`), the
/// form of an alert's `value`.
fn go_exponent(value: f64) -> String {
    if !value.is_finite() {
        return query::format_value(value);
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_and_values_are_written_as_go_writes_them() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_120_000_000);
        assert_eq!(go_time(Some(t)), "2023-11-14T22:13:20.12Z");
        assert_eq!(go_time(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))), "1970-01-01T00:00:01Z");
        assert_eq!(go_exponent(1.0), "1e+00");
        assert_eq!(go_exponent(0.0025), "2.5e-03");
        assert_eq!(go_exponent(-123456.0), "-1.23456e+05");
        assert_eq!(go_exponent(f64::INFINITY), "+Inf");
        assert_eq!(go_seconds(60.0).to_string(), "60");
        assert_eq!(go_seconds(0.5).to_string(), "0.5");
    }
}
