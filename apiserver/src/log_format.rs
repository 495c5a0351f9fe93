//! `--log.format`: the log line formats Prometheus offers, `logfmt` and `json`, besides the
//! default human-readable text. One event is one line: `ts`, `level`, `caller` (the module),
//! `msg`, then the event's fields (`key=value`, quoted where needed; or one JSON object).

use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Which line format (`--log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable text (colours on a terminal).
    Text,
    /// `ts=… level=info caller=… msg="…" key=value`, as Prometheus's default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Formats events as `logfmt` or JSON lines.
pub(crate) struct StructuredLines {
    pub(crate) json: bool,
}

/// The event's message and fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name(), text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }
}

/// A logfmt value: bare when it has no space, `=`, quote or control character, else quoted
/// with Go-style escapes.
fn logfmt_value(value: &str, out: &mut String) {
    let bare = !value.is_empty() && !value.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if bare {
        out.push_str(value);
    } else {
        // serde_json's string escaping is the same as Go's strconv.Quote for these characters.
        out.push_str(&serde_json::Value::String(value.to_string()).to_string());
    }
}

impl<S, N> FormatEvent<S, N> for StructuredLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let level = metadata.level().as_str().to_ascii_lowercase();
        let caller = metadata.module_path().unwrap_or_else(|| metadata.target());
        let mut line = String::with_capacity(128);
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("ts".into(), ts.into());
            object.insert("level".into(), level.into());
            object.insert("caller".into(), caller.into());
            object.insert("msg".into(), fields.message.into());
            for (key, value) in fields.pairs {
                object.insert(key.into(), value.into());
            }
            line.push_str(&serde_json::Value::Object(object).to_string());
        } else {
            let _ = write!(line, "ts={ts} level={level} caller={caller} msg=");
            logfmt_value(&fields.message, &mut line);
            for (key, value) in fields.pairs {
                let _ = write!(line, " {key}=");
                logfmt_value(&value, &mut line);
            }
        }
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_where_needed() {
        let mut out = String::new();
        logfmt_value("plain", &mut out);
        out.push(' ');
        logfmt_value("two words \"quoted\"\n", &mut out);
        out.push(' ');
        logfmt_value("", &mut out);
        assert_eq!(out, r#"plain "two words \"quoted\"\n" """#);
    }
}
