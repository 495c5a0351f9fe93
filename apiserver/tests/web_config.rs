//! `--web.config.file` against the real binary: with TLS and basic auth required, plain HTTP is
//! refused, a missing or wrong password gets 401 with `WWW-Authenticate: Basic`, the right one
//! reaches the query API, remote-write and /metrics; a remote-write bearer token stands in for
//! the password. A rewritten web config (a new user, a new certificate from another CA) and a
//! rewritten token file are picked up without a restart, and a broken web config keeps the old
//! one (and is counted in /metrics).

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A bound on waiting for a reload that only a hang reaches (not a speed check).
const RELOAD_GUARD: Duration = Duration::from_secs(60);

/// A CA and a serving certificate for 127.0.0.1 and localhost it signed: `(ca pem, cert pem, key pem)`.
fn serving_pair(ca_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Writes `text` to `path` through a temporary file and a rename, as a Secret volume updates.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn web_config(cert: &str, key: &str, users: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS12\nbasic_auth_users:\n"
    );
    for (user, password) in users {
        yaml.push_str(&format!("  {user}: {}\n", bcrypt::hash(password, 4).unwrap()));
    }
    yaml
}

fn write_body(name: &str) -> Vec<u8> {
    encode_body(&v1::WriteRequest {
        timeseries: vec![series(&[("__name__", name)], &[(1_000, 1.0)])],
        metadata: vec![],
    })
}

async fn status(request: reqwest::RequestBuilder) -> Option<u16> {
    request.send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_guard_the_http_port_and_reload_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_one, cert_one, key_one) = serving_pair("ca-one");
    let (ca_two, cert_two, key_two) = serving_pair("ca-two");
    for (name, text) in [("one.crt", &cert_one), ("one.key", &key_one), ("two.crt", &cert_two), ("two.key", &key_two)] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_config("one.crt", "one.key", &[("alice", "alice-pw")])).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-one\n").unwrap();
    let config = dir.path().join("ringtail.yaml");
    std::fs::write(&config, "scrape_configs: []\n").unwrap();

    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringtail"));
    command
        .arg("serve")
        .arg("--standalone")
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--secure-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--config", config.to_str().unwrap()])
        .args(["--web.config.file", web.to_str().unwrap()])
        .args(["--remote-write-bearer-token-file", token.to_str().unwrap()])
        .env("RINGTAIL_LOG", "info");
    let _ringtail = ChildGuard::spawn("ringtail", &mut command, &dir.path().join("ringtail.log"));

    let one = https_client(&ca_one);
    eventually("Ringtail answers over TLS", START_TIMEOUT, || async {
        (status(one.get(format!("{base}/-/ready")).basic_auth("alice", Some("alice-pw"))).await == Some(200))
            .then_some(())
    })
    .await;

    // Plain HTTP on the TLS port: Go's answer, as Prometheus gives it.
    let plain = client().get(format!("http://127.0.0.1:{port}/-/healthy")).send().await;
    if let Ok(response) = plain {
        assert_eq!(response.status(), 400);
        assert!(response.text().await.unwrap().contains("HTTP request to an HTTPS server"));
    }

    // Every path needs a user, the health endpoints too, as in Prometheus.
    for path in ["/-/healthy", "/metrics", "/api/v1/query?query=up"] {
        let response = one.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Basic", "{path}");
        let wrong = one.get(format!("{base}{path}")).basic_auth("alice", Some("nope")).send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let stranger = one.get(format!("{base}{path}")).basic_auth("mallory", Some("alice-pw")).send().await.unwrap();
        assert_eq!(stranger.status(), 401, "{path}");
        let right = one.get(format!("{base}{path}")).basic_auth("alice", Some("alice-pw")).send().await.unwrap();
        assert_eq!(right.status(), 200, "{path}");
    }

    let write = |client: &reqwest::Client, name: &str| {
        client
            .post(format!("{base}/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(write_body(name))
    };
    assert_eq!(status(write(&one, "unauthenticated")).await, Some(401));
    // With a token file the receiver wants its token (a sender sends one Authorization header).
    assert_eq!(status(write(&one, "with_password").basic_auth("alice", Some("alice-pw"))).await, Some(401));
    assert_eq!(status(write(&one, "with_token").bearer_auth("token-one")).await, Some(204));
    assert_eq!(status(write(&one, "wrong_token").bearer_auth("token-two")).await, Some(401));
    let query_with_token = one.get(format!("{base}/api/v1/query?query=up")).bearer_auth("token-one");
    assert_eq!(status(query_with_token).await, Some(401), "the bearer token opens remote-write only");

    // A new token file is picked up without a restart.
    replace(&token, "token-two\n");
    eventually("the new bearer token is accepted", RELOAD_GUARD, || async {
        (status(write(&one, "new_token").bearer_auth("token-two")).await == Some(204)).then_some(())
    })
    .await;
    assert_eq!(status(write(&one, "old_token").bearer_auth("token-one")).await, Some(401));

    // A new web config: another user, a certificate from another CA.
    replace(&web, &web_config("two.crt", "two.key", &[("bob", "bob-pw")]));
    let two = https_client(&ca_two);
    eventually("the new certificate and user are served", RELOAD_GUARD, || async {
        (status(two.get(format!("{base}/metrics")).basic_auth("bob", Some("bob-pw"))).await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(status(two.get(format!("{base}/metrics")).basic_auth("alice", Some("alice-pw"))).await, Some(401));
    // Open connections keep their handshake; a new one meets the new certificate.
    let fresh_one = https_client(&ca_one);
    assert_eq!(status(fresh_one.get(format!("{base}/-/ready"))).await, None, "the old CA no longer verifies the port");

    // A broken web config keeps the one in force, and says so in /metrics.
    replace(&web, "basic_auth_users: {carol: not-a-hash}\n");
    let failures = eventually("the broken web config is counted", RELOAD_GUARD, || async {
        let response = two.get(format!("{base}/metrics")).basic_auth("bob", Some("bob-pw")).send().await.ok()?;
        let text = response.text().await.ok()?;
        text.lines()
            .find(|line| line.starts_with("ringtail_config_reload_failures_total{file=\"web_config\"}"))
            .map(str::to_string)
    })
    .await;
    assert!(failures.ends_with(" 1"), "{failures}");
    assert_eq!(status(two.get(format!("{base}/-/healthy")).basic_auth("bob", Some("bob-pw"))).await, Some(200));
    assert_eq!(status(two.get(format!("{base}/-/healthy")).basic_auth("carol", Some("not-a-hash"))).await, Some(401));
}
