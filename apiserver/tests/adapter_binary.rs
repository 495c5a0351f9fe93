//! The adapter through the real `ringtail` binary: the `serve` flags (`--secure-listen`,
//! `--adapter-config`, generated CA beside the data dir, kubectl trusting it), given TLS files,
//! `ringtail adapter-config check`, and prometheus-adapter's Deployment args given without
//! `serve` (`--secure-port`, `--cert-dir`, `--config` naming a rules file, …).

mod adapter_support;
#[path = "ingest_common/ports.rs"]
mod ports;

use adapter_support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use ports::free_port;

fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path, path: &str) -> Result<serde_json::Value, String> {
    let output = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", path])
        .env("HOME", home)
        .output()
        .expect("kubectl runs");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

fn start(dir: &std::path::Path, extra: &[&str]) -> (Guard, u16) {
    let secure = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--secure-listen")
        .arg(format!("127.0.0.1:{secure}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ringtail.log")).expect("log file"))
        .spawn()
        .expect("ringtail starts");
    (Guard(child), secure)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_generates_a_ca_beside_the_data_dir_and_kubectl_trusts_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("adapter.yaml");
    std::fs::write(&rules, "rules: []\nexternalRules: []\n").unwrap();
    let (_guard, port) = start(dir.path(), &["--adapter-config", rules.to_str().unwrap()]);
    let ca = dir.path().join("data-tls").join("ca.crt");
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &format!("127.0.0.1:{port}"), &ca, None);
    wait_for("the adapter", || ca.exists() && kubectl(&kubeconfig, dir.path(), "/apis").is_ok());
    let apis = kubectl(&kubeconfig, dir.path(), "/apis").expect("discovery");
    let groups: Vec<&str> = apis["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(groups, vec!["custom.metrics.k8s.io", "external.metrics.k8s.io"]);
    let list = kubectl(&kubeconfig, dir.path(), "/apis/custom.metrics.k8s.io/v1beta2").expect("resource list");
    assert_eq!(list["resources"], serde_json::json!([]));
}

#[test]
fn serve_uses_given_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    // A pair made the same way an operator's Secret would hold it.
    let pair_dir = dir.path().join("pair");
    apiserver::adapter::http::tls::ensure_generated_pair(&pair_dir).unwrap();
    let (ca, cert, key) = apiserver::adapter::http::tls::generated_paths(&pair_dir);
    let (_guard, port) = start(
        dir.path(),
        &["--tls-cert-file", cert.to_str().unwrap(), "--tls-private-key-file", key.to_str().unwrap()],
    );
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &format!("127.0.0.1:{port}"), &ca, None);
    wait_for("the adapter", || kubectl(&kubeconfig, dir.path(), "/apis/external.metrics.k8s.io/v1beta1").is_ok());
    assert!(!dir.path().join("data-tls").exists(), "no pair is generated when files are given");
}

#[test]
fn adapter_config_check_explains_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "rules:\n- seriesQuery: '{__name__=~\"^seldon_model.*_total\",namespace!=\"\"}'\n  resources:\n    overrides:\n      model: {group: mlops.seldon.io, resource: model}\n      namespace: {resource: namespace}\n  name:\n    matches: '^seldon_model_(.*)_total'\n    as: '${1}_rps'\n  metricsQuery: 'sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[2m]))'\n",
    )
    .unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_ringtail")).args(["adapter-config", "check"]).arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 rules") && !stdout.contains("warning"), "{stdout}");
    assert!(stdout.contains("rules[0]"), "{stdout}");

    // resourceRules with a window only: both cpu and memory are needed to serve metrics.k8s.io.
    let window_only = dir.path().join("window-only.yaml");
    std::fs::write(&window_only, "resourceRules:\n  window: 2m\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["adapter-config", "check"])
        .arg(&window_only)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("resourceRules.cpu: must be set"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n- seriesQuery: 'up'\n  metricsQuery: 'x'\n  resource: {}\n").unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_ringtail")).args(["adapter-config", "check"]).arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rules[0].resource"), "unknown key named by path: {stderr}");
}

/// Starts `ringtail` the way a prometheus-adapter Deployment would after only its image changed:
/// no `serve`, prometheus-adapter's flags (`--prometheus-url` aside), plus a data directory and
/// HTTP listener of the test's own.
fn start_with_adapter_args(dir: &std::path::Path, secure_port: u16, adapter_args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen=127.0.0.1:{}", free_port()))
        .arg(format!("--secure-port={secure_port}"))
        .args(adapter_args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ringtail.log")).expect("log file"))
        .spawn()
        .expect("ringtail starts")
}

#[test]
fn prometheus_adapter_deployment_args_start_the_server_without_serve() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("config.yaml");
    std::fs::write(
        &rules,
        "rules:\n- seriesQuery: 'http_requests_total{namespace!=\"\",pod!=\"\"}'\n  resources:\n    overrides:\n      namespace: {resource: namespace}\n      pod: {resource: pod}\n  name:\n    matches: '^(.*)_total$'\n    as: '${1}_per_second'\n  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let cert_dir = dir.path().join("serving-cert");
    let port = free_port();
    let args: Vec<String> = [
        format!("--cert-dir={}", cert_dir.display()),
        format!("--config={}", rules.display()),
        "--metrics-relist-interval=1m".into(),
        "--metrics-max-age=5m".into(),
        "--v=4".into(),
        "--logtostderr=true".into(),
    ]
    .into();
    let _guard = Guard(start_with_adapter_args(dir.path(), port, &args));
    let ca = cert_dir.join("ca.crt");
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &format!("127.0.0.1:{port}"), &ca, None);
    wait_for("the adapter", || ca.exists() && kubectl(&kubeconfig, dir.path(), "/apis").is_ok());
    let list = kubectl(&kubeconfig, dir.path(), "/apis/custom.metrics.k8s.io/v1beta2").expect("resource list");
    assert_eq!(list["resources"], serde_json::json!([]), "no series yet");
    assert!(!dir.path().join("data-tls").exists(), "the pair is generated in --cert-dir, not beside the data");
    let log = std::fs::read_to_string(dir.path().join("ringtail.log")).unwrap();
    assert!(log.contains("--config names a prometheus-adapter rules file"), "{log}");
    assert!(log.contains("--metrics-relist-interval=1m has no effect"), "{log}");
    assert!(log.contains("DEBUG"), "--v=4 logs at debug: {log}");
}

#[test]
fn a_rules_file_given_to_config_is_checked_as_rules_and_a_cert_dir_pair_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // A rules file with a mistake: refused at start, named as the rules checker names it.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n- seriesQuery: 'up'\n  metricsQuery: 'x'\n  resource: {}\n").unwrap();
    let mut child = start_with_adapter_args(dir.path(), free_port(), &[format!("--config={}", bad.display())]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ringtail kept running on a bad rules file");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("ringtail.log")).unwrap();
    assert!(log.contains("rules[0].resource"), "the rules reader, not the settings reader: {log}");

    // A certificate directory holding apiserver.crt / apiserver.key (as a Secret mounts them).
    let run = tempfile::tempdir().unwrap();
    let pair_dir = run.path().join("pair");
    apiserver::adapter::http::tls::ensure_generated_pair(&pair_dir).unwrap();
    let (ca, cert, key) = apiserver::adapter::http::tls::generated_paths(&pair_dir);
    let cert_dir = run.path().join("serving-cert");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(&cert, cert_dir.join("apiserver.crt")).unwrap();
    std::fs::copy(&key, cert_dir.join("apiserver.key")).unwrap();
    let port = free_port();
    let _guard = Guard(start_with_adapter_args(run.path(), port, &[format!("--cert-dir={}", cert_dir.display())]));
    let kubeconfig = run.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &format!("127.0.0.1:{port}"), &ca, None);
    wait_for("the adapter", || kubectl(&kubeconfig, run.path(), "/apis/external.metrics.k8s.io/v1beta1").is_ok());
    assert!(!cert_dir.join("tls.crt").exists(), "the given pair is served, none generated");
}
