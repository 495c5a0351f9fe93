//! `ringtail query 'EXPR'` asks a running Ringtail (or any Prometheus-compatible server) over its
//! HTTP API and prints the result readably: instant by default, `--range START END STEP` for a
//! range query. Times are RFC 3339 or Unix seconds; `now` and `now-1h`-style offsets work too.

use anyhow::{bail, Context};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Flags of `ringtail query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The PromQL expression.
    expr: String,
    /// Base URL of the server [default: http://127.0.0.1:9201].
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9201")]
    server: String,
    /// Evaluation time of an instant query: RFC 3339, Unix seconds, `now` or `now-<duration>`
    /// [default: now].
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Range query instead: start, end (as for --time) and step (`15s`, or seconds).
    #[arg(long, num_args = 3, value_names = ["START", "END", "STEP"])]
    range: Option<Vec<String>>,
    /// Server-side evaluation timeout (`30s`, or seconds) [default: the server's].
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Print the raw JSON response instead of the table.
    #[arg(long)]
    json: bool,
}

/// Resolves `now`, `now-5m` and `now+1h`; passes other forms through for the server to parse.
fn resolve_time(text: &str) -> anyhow::Result<String> {
    let Some(rest) = text.strip_prefix("now") else { return Ok(text.to_string()) };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?.as_secs_f64();
    if rest.is_empty() {
        return Ok(format!("{now:.3}"));
    }
    let (sign, duration) = match rest.split_at(1) {
        ("-", d) => (-1.0, d),
        ("+", d) => (1.0, d),
        _ => bail!("cannot parse time {text:?}: expected now, now-<duration> or now+<duration>"),
    };
    let ms = query::parse_duration_ms(duration).with_context(|| format!("bad duration {duration:?} in {text:?}"))?;
    Ok(format!("{:.3}", now + sign * ms as f64 / 1000.0))
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let mut form: Vec<(String, String)> = vec![("query".into(), args.expr.clone())];
    let path = match &args.range {
        Some(r) => {
            form.push(("start".into(), resolve_time(&r[0])?));
            form.push(("end".into(), resolve_time(&r[1])?));
            form.push(("step".into(), r[2].clone()));
            "/api/v1/query_range"
        }
        None => {
            if let Some(t) = &args.time {
                form.push(("time".into(), resolve_time(t)?));
            }
            "/api/v1/query"
        }
    };
    if let Some(t) = &args.timeout {
        form.push(("timeout".into(), t.clone()));
    }
    let url = format!("{base}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let (status, body) = runtime
        .block_on(async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
            let response = client.post(&url).form(&form).send().await?;
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
        .with_context(|| format!("cannot reach {url} (is `ringtail serve` running there? pick it with --server)"))?;
    if args.json {
        println!("{body}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("server answered {status} with non-JSON: {body}"))?;
    if json["status"] != "success" {
        bail!(
            "{} ({}): {}",
            json["errorType"].as_str().unwrap_or("error"),
            status,
            json["error"].as_str().unwrap_or(&body)
        );
    }
    if !args.json {
        print!("{}", render(&json["data"]));
    }
    for key in ["warnings", "infos"] {
        for note in json[key].as_array().into_iter().flatten() {
            eprintln!("{}: {}", key.trim_end_matches('s'), note.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

fn metric(labels: &serde_json::Value) -> String {
    let Some(map) = labels.as_object() else { return "{}".into() };
    let name = map.get("__name__").and_then(|v| v.as_str()).unwrap_or("");
    let rest: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str().unwrap_or_default())))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn point(p: &serde_json::Value) -> String {
    let ts = p[0].as_f64().unwrap_or(f64::NAN);
    let value = p[1].as_str().unwrap_or("?");
    let when = chrono::DateTime::from_timestamp_millis((ts * 1000.0).round() as i64)
        .map_or_else(|| ts.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    format!("{value} @ {when}")
}

/// Renders the `data` object of a query response as text.
fn render(data: &serde_json::Value) -> String {
    let mut out = String::new();
    let result = &data["result"];
    match data["resultType"].as_str().unwrap_or("") {
        "scalar" | "string" => out.push_str(&format!("{}\n", point(result))),
        "vector" => {
            for s in result.as_array().into_iter().flatten() {
                out.push_str(&format!("{} => {}\n", metric(&s["metric"]), point(&s["value"])));
            }
            if result.as_array().is_none_or(|v| v.is_empty()) {
                out.push_str("(empty result)\n");
            }
        }
        "matrix" => {
            for s in result.as_array().into_iter().flatten() {
                out.push_str(&format!("{}\n", metric(&s["metric"])));
                for p in s["values"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}\n", point(p)));
                }
            }
            if result.as_array().is_none_or(|v| v.is_empty()) {
                out.push_str("(empty result)\n");
            }
        }
        other => out.push_str(&format!("unknown result type {other:?}: {result}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vectors_and_matrices() {
        let data: serde_json::Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[0,"1"]}]}"#,
        )
        .unwrap();
        assert_eq!(render(&data), "up{job=\"a\"} => 1 @ 1970-01-01T00:00:00.000Z\n");
        let data: serde_json::Value =
            serde_json::from_str(r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1.5,"2"]]}]}"#).unwrap();
        assert_eq!(render(&data), "{}\n  2 @ 1970-01-01T00:00:01.500Z\n");
    }

    #[test]
    fn now_offsets_resolve() {
        assert!(resolve_time("now-5m").unwrap().parse::<f64>().is_ok());
        assert_eq!(resolve_time("1700000000").unwrap(), "1700000000");
        assert!(resolve_time("now*2").is_err());
    }
}
