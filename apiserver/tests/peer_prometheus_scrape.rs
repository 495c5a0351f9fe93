//! Real peer: Ringtail and Prometheus 2.42 scrape the same exporter endpoint side by side. Both
//! must see the same series set, and when the target stops both must report `up` 0 and mark the
//! target's series stale. Relabeling, limits, the targets API, redirects and proxies are
//! compared the same way. Skipped (saying so) when Prometheus is not installed, unless
//! `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type LabelSet = std::collections::BTreeMap<String, String>;

/// The config Prometheus serves at `/api/v1/status/config` (every default spelled out), checked
/// to hold each of `expected`.
async fn config_as_prometheus_writes_it(prometheus: &Prometheus, expected: &[&str]) -> String {
    let status: serde_json::Value = client()
        .get(format!("{}/api/v1/status/config", prometheus.url()))
        .send()
        .await
        .expect("Prometheus's config")
        .json()
        .await
        .expect("JSON");
    let written = status["data"]["yaml"].as_str().expect("the config as Prometheus writes it").to_string();
    for text in expected {
        assert!(written.contains(text), "Prometheus writes {text:?}:\n{written}");
    }
    written
}

/// The series of `selector` in Prometheus and in Ringtail, once each holds `jobs` `up` series of
/// at least `scrapes` samples.
async fn series_after_scrapes(
    prometheus: &Prometheus,
    ringtail: &Ringtail,
    selector: &str,
    jobs: usize,
    scrapes: usize,
) -> (BTreeSet<LabelSet>, BTreeSet<LabelSet>) {
    let is_up = |labels: &LabelSet| labels.get("__name__").map(String::as_str) == Some("up");
    let theirs =
        eventually(&format!("Prometheus to scrape {selector} {scrapes} times"), Duration::from_secs(90), || async {
            let samples = prometheus.raw_samples(selector).await;
            let ups = samples.iter().filter(|(l, s)| is_up(l) && s.len() >= scrapes);
            (ups.count() == jobs).then(|| samples.into_iter().map(|(l, _)| l).collect::<BTreeSet<LabelSet>>())
        })
        .await;
    let ours =
        eventually(&format!("Ringtail to scrape {selector} {scrapes} times"), Duration::from_secs(90), || async {
            let exported = ringtail.export(selector).await;
            let ups = exported.iter().filter(|s| is_up(&s.metric) && s.timestamps.len() >= scrapes);
            (ups.count() == jobs).then(|| exported.into_iter().map(|s| s.metric).collect::<BTreeSet<LabelSet>>())
        })
        .await;
    (theirs, ours)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_series_up_and_staleness_as_prometheus() {
    if !peer::peers_installed("same_series_up_and_staleness_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let mut target = TestTarget::start().await;
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{}'], labels: {{team: core}}}}]\n",
        target.addr
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let prometheus = Prometheus::start(&scrape).await;

    let prometheus_series = eventually("Prometheus to scrape the target 3 times", Duration::from_secs(90), || async {
        let samples = prometheus.raw_samples("{job=\"demo\"}").await;
        let up = samples.iter().find(|(l, _)| l.get("__name__").map(String::as_str) == Some("up"))?;
        (up.1.len() >= 3).then(|| samples.into_iter().map(|(l, _)| l).collect::<BTreeSet<LabelSet>>())
    })
    .await;
    let ringtail_series = eventually("Ringtail to scrape the target 3 times", Duration::from_secs(90), || async {
        let exported = ringtail.export("{job=\"demo\"}").await;
        let up = exported.iter().find(|s| s.metric.get("__name__").map(String::as_str) == Some("up"))?;
        (up.timestamps.len() >= 3).then(|| exported.into_iter().map(|s| s.metric).collect::<BTreeSet<LabelSet>>())
    })
    .await;
    assert_eq!(ringtail_series, prometheus_series, "series sets differ");
    assert!(ringtail_series.iter().any(|l| l.get("team").map(String::as_str) == Some("core")));

    target.stop().await;

    // Prometheus: up drops to 0 and the target's series are stale (gone from instant queries).
    eventually("Prometheus to see the target down", Duration::from_secs(60), || async {
        let up = prometheus.instant("up{job=\"demo\"}").await;
        let gone = prometheus.instant("demo_requests_total").await.is_empty();
        (up.len() == 1 && up[0].1 == 0.0 && gone).then_some(())
    })
    .await;
    // Ringtail: the newest `up` is 0 and every target series ends with a staleness marker.
    eventually("Ringtail to see the target down", Duration::from_secs(60), || async {
        let exported = ringtail.export("{job=\"demo\"}").await;
        let up = exported.iter().find(|s| s.metric.get("__name__").map(String::as_str) == Some("up"))?;
        let up_is_zero = up.floats().last() == Some(&0.0);
        let all_stale = exported
            .iter()
            .filter(|s| s.metric.get("__name__").is_some_and(|n| n.starts_with("demo_")))
            .all(|s| s.floats().last().is_some_and(|v| tsdb::is_stale_nan(*v)));
        (up_is_zero && all_stale).then_some(())
    })
    .await;
}

/// Relabel actions (`lowercase`, `uppercase`, `keepequal`, `dropequal`) and the per-job limits
/// (`label_limit`, `target_limit`): the same scrape config given to Ringtail and Prometheus 2.42
/// yields the same series, and the same `up` for the jobs a limit fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_actions_and_job_limits_as_prometheus() {
    if !peer::peers_installed("relabel_actions_and_job_limits_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let addr = target.addr;
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: cases\n  static_configs: [{{targets: ['{addr}'], labels: {{team: Core-Team, copy: Core-Team}}}}]\n\
         \x20 relabel_configs:\n\
         \x20 - {{source_labels: [team], target_label: team_lower, action: lowercase}}\n\
         \x20 - {{source_labels: [team, copy], target_label: both_upper, action: uppercase}}\n\
         \x20 - {{source_labels: [copy], target_label: team, action: keepequal}}\n\
         \x20 metric_relabel_configs:\n\
         \x20 - {{source_labels: [room], target_label: room_upper, action: uppercase}}\n\
         \x20 - {{source_labels: [code], regex: '200', target_label: code_copy, replacement: '200'}}\n\
         \x20 - {{source_labels: [code], target_label: code_copy, action: dropequal}}\n\
         - job_name: dropped\n  static_configs: [{{targets: ['{addr}'], labels: {{a: x, b: y}}}}]\n\
         \x20 relabel_configs: [{{source_labels: [a], target_label: b, action: keepequal}}]\n\
         - job_name: labels_limited\n  label_limit: 4\n  static_configs: [{{targets: ['{addr}']}}]\n\
         - job_name: targets_limited\n  target_limit: 1\n\
         \x20 static_configs: [{{targets: ['{addr}'], labels: {{n: '1'}}}}, {{targets: ['{addr}'], labels: {{n: '2'}}}}]\n"
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let prometheus = Prometheus::start(&scrape).await;
    let selector = "{job=~\"cases|dropped|labels_limited|targets_limited\"}";
    let settled = |series: &BTreeSet<LabelSet>, ups: usize| {
        series.iter().filter(|l| l.get("__name__").map(String::as_str) == Some("up")).count() >= ups
    };
    let prometheus_series = eventually("Prometheus to scrape every job", Duration::from_secs(90), || async {
        let samples = prometheus.raw_samples(selector).await;
        let series: BTreeSet<LabelSet> = samples.into_iter().filter(|(_, s)| s.len() >= 2).map(|(l, _)| l).collect();
        settled(&series, 4).then_some(series)
    })
    .await;
    let ringtail_series = eventually("Ringtail to scrape every job", Duration::from_secs(90), || async {
        let exported = ringtail.export(selector).await;
        let series: BTreeSet<LabelSet> =
            exported.into_iter().filter(|s| s.timestamps.len() >= 2).map(|s| s.metric).collect();
        settled(&series, 4).then_some(series)
    })
    .await;
    assert_eq!(ringtail_series, prometheus_series, "series sets differ");
    let cases: Vec<&LabelSet> =
        ringtail_series.iter().filter(|l| l.get("job").map(String::as_str) == Some("cases")).collect();
    assert!(cases.iter().all(|l| l.get("team_lower").map(String::as_str) == Some("core-team")));
    assert!(cases.iter().all(|l| l.get("both_upper").map(String::as_str) == Some("CORE-TEAM;CORE-TEAM")));
    // dropequal: code 200 equals its copy; a series with neither label compares "" with "".
    assert!(!cases.iter().any(|l| l.get("code").map(String::as_str) == Some("200")), "dropequal dropped code 200");
    assert!(cases.iter().any(|l| l.get("code").map(String::as_str) == Some("500")));
    assert!(!cases.iter().any(|l| l.get("__name__").map(String::as_str) == Some("demo_temperature_celsius")));
    assert!(!ringtail_series.iter().any(|l| l.get("job").map(String::as_str) == Some("dropped")));
    for job in ["labels_limited", "targets_limited"] {
        let query = format!("up{{job=\"{job}\"}}");
        let in_prometheus = prometheus.instant(&query).await;
        assert!(!in_prometheus.is_empty() && in_prometheus.iter().all(|(_, v)| *v == 0.0), "{job}: {in_prometheus:?}");
        let in_ringtail = ringtail.export(&query).await;
        assert_eq!(in_ringtail.len(), in_prometheus.len(), "{job}");
        assert!(in_ringtail.iter().all(|s| s.floats().last() == Some(&0.0)), "{job}: up is 0 in Ringtail too");
    }
}

/// `/api/v1/targets` of both for the same scrape config: one target up, one down (nothing
/// listens), one dropped by relabeling, one job with `params` (two values of one, one needing
/// escaping) and a `__param_target` set by relabeling, as the blackbox exporter is configured,
/// and one whose `metrics_path` needs escaping (a space, `?`, `%`, `!`); the fields compared one
/// by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_api_as_prometheus() {
    if !peer::peers_installed("targets_api_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let addr = target.addr;
    let closed = format!("127.0.0.1:{}", free_port());
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: pages\n  static_configs: [{{targets: ['{addr}', '{closed}', 'drop.me:1'], labels: {{team: a}}}}]\n\
         \x20 relabel_configs: [{{source_labels: [__address__], regex: 'drop[.].*', action: drop}}]\n\
         - job_name: probe\n  metrics_path: /metrics\n  params: {{module: [http_2xx, 'b c*~']}}\n  scrape_interval: 2s\n\
         \x20 static_configs: [{{targets: ['{addr}']}}]\n\
         \x20 relabel_configs: [{{source_labels: [__address__], target_label: __param_target}}]\n\
         - job_name: odd_path\n  metrics_path: '/odd path?x=1&y%!'\n  static_configs: [{{targets: ['{addr}']}}]\n"
    );
    let ringtail = Ringtail::start(Some(&scrape), &[]).await;
    let prometheus = Prometheus::start(&scrape).await;
    let targets_of = |base: String| async move {
        let body: serde_json::Value =
            client().get(format!("{base}/api/v1/targets")).send().await.expect("targets").json().await.expect("json");
        body
    };
    let settled = |body: &serde_json::Value| {
        body["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.len() == 4 && a.iter().all(|t| t["health"] != "unknown"))
    };
    let ours = eventually("Ringtail's targets scraped once", Duration::from_secs(60), || async {
        let body = targets_of(ringtail.url()).await;
        settled(&body).then_some(body)
    })
    .await;
    let theirs = eventually("Prometheus's targets scraped once", Duration::from_secs(60), || async {
        let body = targets_of(prometheus.url()).await;
        settled(&body).then_some(body)
    })
    .await;
    let key = |t: &serde_json::Value| (t["scrapePool"].to_string(), t["scrapeUrl"].to_string());
    let mut ours_active = ours["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
    let mut theirs_active = theirs["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
    ours_active.sort_by_key(key);
    theirs_active.sort_by_key(key);
    for (a, b) in ours_active.iter().zip(&theirs_active) {
        for field in [
            "scrapePool",
            "scrapeUrl",
            "globalUrl",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
            "labels",
            "discoveredLabels",
        ] {
            if field == "globalUrl" {
                // Prometheus puts its host name in the global URL; compare the path part.
                let path = |v: &serde_json::Value| {
                    v.as_str()
                        .and_then(|u| u.split_once("//"))
                        .map(|(_, r)| r.split_once('/').map(|(_, p)| p.to_string()))
                };
                assert_eq!(path(&a[field]), path(&b[field]), "globalUrl path: {a}\nvs {b}");
                continue;
            }
            assert_eq!(a[field], b[field], "{field}: Ringtail {a}\nPrometheus {b}");
        }
        assert_eq!(
            a["lastError"].as_str().is_some_and(str::is_empty),
            b["lastError"].as_str().is_some_and(str::is_empty)
        );
        assert!(a["lastScrape"].as_str().is_some_and(|t| t.starts_with("20")), "{a}");
        assert!(a["lastScrapeDuration"].as_f64().is_some(), "{a}");
    }
    let dropped = |body: &serde_json::Value| body["data"]["droppedTargets"].clone();
    assert_eq!(dropped(&ours), dropped(&theirs));
    let only_dropped = client()
        .get(format!("{}/api/v1/targets?state=dropped&scrapePool=pages", ringtail.url()))
        .send()
        .await
        .expect("targets")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(only_dropped["data"]["activeTargets"], serde_json::json!([]));
    assert_eq!(only_dropped["data"]["droppedTargets"].as_array().map(Vec::len), Some(1));
    let bad = client().get(format!("{}/api/v1/targets?state=sleeping", ringtail.url())).send().await.expect("targets");
    assert_eq!(bad.status().as_u16(), 400);
}

/// The client settings a scrape config can carry: `follow_redirects` (on by default, off for one
/// job) against a page behind a redirect, and `proxy_url` for a target no one could reach
/// directly. Prometheus is given the config; Ringtail is given the config as Prometheus writes it
/// back (`/api/v1/status/config`, with every default spelled out), so a file taken from a running
/// Prometheus loads. Both must scrape the same series and report the same `up` for every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_proxies_and_prometheus_written_config_as_prometheus() {
    if !peer::peers_installed("redirects_proxies_and_prometheus_written_config_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    // The exporter: `/metrics` redirects to `/page`.
    let exporter = axum::Router::new()
        .route("/metrics", axum::routing::get(|| async { axum::response::Redirect::to("/page") }))
        .route("/page", axum::routing::get(|| async { "redirected_page_value 1\n" }));
    let exporter_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter_addr = exporter_listener.local_addr().unwrap();
    let exporter_task = tokio::spawn(async move {
        let _ = axum::serve(exporter_listener, exporter).await;
    });
    // The proxy: answers every request itself, with the target it was asked for and who asked.
    let asked: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let seen = asked.clone();
    let proxy = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        async move {
            let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let product = agent.split('/').next().unwrap_or("").to_string();
            seen.lock().unwrap().insert((uri.authority().map(|a| a.to_string()).unwrap_or_default(), product));
            "proxied_page_value 2\n"
        }
    });
    let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let proxy_task = tokio::spawn(async move {
        let _ = axum::serve(proxy_listener, proxy).await;
    });
    let unreachable = "unreachable.invalid:9";
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: follows\n  static_configs: [{{targets: ['{exporter_addr}']}}]\n\
         - job_name: stays\n  follow_redirects: false\n  static_configs: [{{targets: ['{exporter_addr}']}}]\n\
         - job_name: proxied\n  proxy_url: http://{proxy_addr}\n  static_configs: [{{targets: ['{unreachable}']}}]\n"
    );
    let prometheus = Prometheus::start(&scrape).await;
    let written = config_as_prometheus_writes_it(
        &prometheus,
        &["follow_redirects: true", "follow_redirects: false", "enable_http2: true", "proxy_url: "],
    )
    .await;
    let ringtail = Ringtail::start(Some(&written), &[]).await;

    let selector = "{job=~\"follows|stays|proxied\"}";
    let (prometheus_series, ringtail_series) = series_after_scrapes(&prometheus, &ringtail, selector, 3, 2).await;
    assert_eq!(ringtail_series, prometheus_series, "series sets differ");
    let has = |name: &str, job: &str| {
        ringtail_series.iter().any(|l| {
            l.get("__name__").map(String::as_str) == Some(name) && l.get("job").map(String::as_str) == Some(job)
        })
    };
    assert!(has("redirected_page_value", "follows"), "the redirect is followed by default");
    assert!(!has("redirected_page_value", "stays"), "follow_redirects: false stops at the redirect");
    assert!(has("proxied_page_value", "proxied"), "the proxy's page is scraped");
    for (job, expected) in [("follows", 1.0), ("stays", 0.0), ("proxied", 1.0)] {
        let query = format!("up{{job=\"{job}\"}}");
        let in_prometheus = prometheus.instant(&query).await;
        assert_eq!(in_prometheus.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![expected], "{job} in Prometheus");
        let in_ringtail = ringtail.export(&query).await;
        assert_eq!(in_ringtail.len(), 1, "{job}");
        assert_eq!(in_ringtail[0].floats().last(), Some(&expected), "{job} in Ringtail:\n{}", ringtail.log());
    }
    let asked = asked.lock().unwrap().clone();
    for product in ["Prometheus", "Ringtail"] {
        assert!(
            asked.contains(&(unreachable.to_string(), product.to_string())),
            "{product} asked the proxy for {unreachable}: {asked:?}"
        );
    }
    exporter_task.abort();
    proxy_task.abort();
}

/// A whole prometheus.yml — with `alerting`, `remote_read` and `storage`, as Debian's sample and
/// most real files have — as Prometheus writes it back: Ringtail starts with it, scrapes its job
/// as Prometheus does, takes `storage.tsdb.out_of_order_time_window` as its out-of-order window,
/// and names the blocks it does not act on in warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_prometheus_yml_loads_and_what_is_not_used_is_named() {
    if !peer::peers_installed("a_whole_prometheus_yml_loads_and_what_is_not_used_is_named", &[peer::PROMETHEUS]) {
        return;
    }
    let target = TestTarget::start().await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels: {{monitor: example}}\n  \
         query_log_file: /dev/null\n\
         alerting:\n  alertmanagers:\n  - static_configs: [{{targets: ['{nowhere}']}}]\n\
         rule_files: []\n\
         remote_read:\n- url: http://{nowhere}/api/v1/read\n\
         storage:\n  tsdb:\n    out_of_order_time_window: 7m\n\
         scrape_configs:\n- job_name: whole\n  static_configs: [{{targets: ['{}']}}]\n",
        target.addr
    );
    let prometheus = Prometheus::start(&config).await;
    let written = config_as_prometheus_writes_it(
        &prometheus,
        &["alerting:", "remote_read:", "out_of_order_time_window: 7m", "query_log_file: /dev/null"],
    )
    .await;
    let ringtail = Ringtail::start(Some(&written), &[]).await;

    let (prometheus_series, ringtail_series) =
        series_after_scrapes(&prometheus, &ringtail, "{job=\"whole\"}", 1, 2).await;
    assert_eq!(ringtail_series, prometheus_series, "series sets differ");

    let flags: serde_json::Value = client()
        .get(format!("{}/api/v1/status/flags", ringtail.url()))
        .send()
        .await
        .expect("Ringtail's flags")
        .json()
        .await
        .expect("JSON");
    assert_eq!(flags["data"]["out-of-order-window"], "7m", "storage.tsdb's window: {flags}");
    let log = ringtail.log();
    for named in [
        "alerting: Ringtail sends no alert notifications",
        "remote_read: queries read Ringtail's own store",
        "global.query_log_file: Ringtail keeps no query log",
    ] {
        assert!(log.contains(named), "the log names {named:?}:\n{log}");
    }
}

/// What a token endpoint was asked: the asker (`Prometheus` or `Ringtail`), the Authorization
/// header, and the form fields sorted.
type TokenRequest = (String, String, Vec<(String, String)>);

/// `oauth2` client credentials: a job whose exporter wants a token from a token endpoint, and a
/// job whose secret the endpoint refuses. Prometheus and Ringtail must ask the endpoint the same
/// things (credentials, scope, endpoint params; the secret in the form after the Basic header is
/// refused), scrape the same series and report the same `up`. Tokens expire at once, so both
/// ask again for every scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials_as_prometheus() {
    if !peer::peers_installed("oauth2_client_credentials_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    use axum::http::{HeaderMap, StatusCode};
    let issued: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let asked: Arc<Mutex<BTreeSet<TokenRequest>>> = Arc::default();
    let (issued_by_endpoint, asked_by_endpoint) = (issued.clone(), asked.clone());
    let token_endpoint = move |headers: HeaderMap, body: String| {
        let (issued, asked) = (issued_by_endpoint.clone(), asked_by_endpoint.clone());
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let product = header("user-agent").split('/').next().unwrap_or("").to_string();
            let authorization = header("authorization");
            let mut form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
            form.sort();
            asked.lock().unwrap().insert((product, authorization.clone(), form.clone()));
            // "id:1" / "s&cret", query-escaped, in a Basic header: aWQlM0ExOnMlMjZjcmV0.
            let good_header = authorization == "Basic aWQlM0ExOnMlMjZjcmV0";
            let good_form = form.contains(&("client_secret".into(), "s&cret".into()));
            let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
            if !(good_header || good_form) || header("content-type") != "application/x-www-form-urlencoded" {
                return (StatusCode::UNAUTHORIZED, json, "{\"error\":\"invalid_client\"}".to_string());
            }
            let mut issued = issued.lock().unwrap();
            let token = format!("tok-{}", issued.len());
            issued.insert(token.clone());
            (
                StatusCode::OK,
                json,
                format!("{{\"access_token\":\"{token}\",\"token_type\":\"bearer\",\"expires_in\":2}}"),
            )
        }
    };
    let issued_for_exporter = issued.clone();
    let exporter = move |headers: HeaderMap| {
        let issued = issued_for_exporter.clone();
        async move {
            let token =
                headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            match token {
                Some(token) if issued.lock().unwrap().contains(token) => (StatusCode::OK, "oauth_page_value 7\n"),
                _ => (StatusCode::UNAUTHORIZED, "no token\n"),
            }
        }
    };
    let app = axum::Router::new()
        .route("/token/{job}", axum::routing::post(token_endpoint))
        .route("/metrics", axum::routing::get(exporter));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let oauth2 = |job: &str, secret: &str| {
        format!(
            "{{client_id: 'id:1', client_secret: '{secret}', scopes: [read, write], token_url: 'http://{addr}/token/{job}', \
             endpoint_params: {{audience: metrics}}}}"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: oauth\n  oauth2: {}\n  static_configs: [{{targets: ['{addr}']}}]\n\
         - job_name: refused\n  oauth2: {}\n  static_configs: [{{targets: ['{addr}']}}]\n",
        oauth2("oauth", "s&cret"),
        oauth2("refused", "wrong")
    );
    let prometheus = Prometheus::start(&config).await;
    let ringtail = Ringtail::start(Some(&config), &[]).await;

    let selector = "{job=~\"oauth|refused\"}";
    let (prometheus_series, ringtail_series) = series_after_scrapes(&prometheus, &ringtail, selector, 2, 3).await;
    assert_eq!(
        ringtail_series,
        prometheus_series,
        "series sets differ; the token endpoint was asked {:#?}",
        asked.lock().unwrap()
    );
    assert!(ringtail_series.iter().any(|l| l.get("__name__").map(String::as_str) == Some("oauth_page_value")));
    for (job, expected) in [("oauth", 1.0), ("refused", 0.0)] {
        let query = format!("up{{job=\"{job}\"}}");
        let in_prometheus = prometheus.instant(&query).await;
        assert_eq!(in_prometheus.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![expected], "{job} in Prometheus");
        let in_ringtail = ringtail.export(&query).await;
        assert_eq!(in_ringtail[0].floats().last(), Some(&expected), "{job} in Ringtail:\n{}", ringtail.log());
    }
    let asked = asked.lock().unwrap().clone();
    let by = |product: &str| -> BTreeSet<(String, Vec<(String, String)>)> {
        asked.iter().filter(|(p, _, _)| p == product).map(|(_, a, f)| (a.clone(), f.clone())).collect()
    };
    assert_eq!(by("Ringtail"), by("Prometheus"), "token requests differ: {asked:#?}");
    assert_eq!(by("Ringtail").len(), 3, "a Basic header for each job, then the form for the refused one: {asked:#?}");
    let tokens = issued.lock().unwrap().len();
    assert!(tokens >= 6, "a token per scrape, as each expires at once: {tokens}");
    server.abort();
}
