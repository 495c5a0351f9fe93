//! The scenario files of deploy/examples/ as a user takes them: the first document is a
//! prometheus-adapter rules file that `ringtail adapter-config check` accepts, the others are
//! Kubernetes objects, and every HPA among them asks for a metric one of the file's rules can name.
//! (deploy/e2e/run.sh applies them to a real control plane; this runs without one.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

/// The YAML documents of `path`, in order.
fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).expect("reading an example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The metric names an HPA document asks for (autoscaling v2beta1, v2beta2 and v2 shapes).
fn hpa_metric_names(hpa: &serde_yaml::Value) -> Vec<String> {
    let mut names = Vec::new();
    for metric in hpa["spec"]["metrics"].as_sequence().into_iter().flatten() {
        for kind in ["pods", "object", "external"] {
            let source = &metric[kind];
            let name = source["metric"]["name"].as_str().or_else(|| source["metricName"].as_str());
            names.extend(name.map(str::to_string));
        }
    }
    names
}

#[test]
fn every_scenario_file_holds_checked_rules_and_hpas_on_metrics_they_name() {
    let mut scenario_files = 0;
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(examples_dir()).expect("deploy/examples").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let docs = documents(path);
        let Some(rules) = docs.first().filter(|d| d.get("rules").is_some() || d.get("externalRules").is_some()) else {
            continue; // a plain manifest, not a scenario file
        };
        scenario_files += 1;
        let dir = tempfile::tempdir().expect("temp dir");
        let rules_file = dir.path().join("adapter.yaml");
        std::fs::write(&rules_file, serde_yaml::to_string(rules).expect("rules as YAML")).expect("writing the rules");
        let check = Command::new(env!("CARGO_BIN_EXE_ringtail"))
            .args(["adapter-config", "check"])
            .arg(&rules_file)
            .output()
            .expect("running ringtail adapter-config check");
        assert!(
            check.status.success(),
            "{}: adapter-config check refused the rules:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let rules_text = serde_yaml::to_string(rules).expect("rules as YAML");
        let objects = &docs[1..];
        assert!(!objects.is_empty(), "{}: no Kubernetes objects after the rules", path.display());
        let mut hpas = 0;
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", path.display()));
            assert!(object["apiVersion"].as_str().is_some(), "{}: {kind} without apiVersion", path.display());
            if kind != "HorizontalPodAutoscaler" {
                continue;
            }
            hpas += 1;
            let names = hpa_metric_names(object);
            assert!(!names.is_empty(), "{}: an HPA with no custom metric", path.display());
            for name in names {
                // A rule names the metric by its series (seriesQuery) or its `as`.
                assert!(rules_text.contains(&name), "{}: no rule here names the HPA's metric {name}", path.display());
            }
        }
        assert!(hpas > 0, "{}: no HorizontalPodAutoscaler", path.display());
    }
    assert!(scenario_files >= 6, "found {scenario_files} scenario files in deploy/examples");
}
