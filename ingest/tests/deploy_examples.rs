//! The scrape configurations shipped in `deploy/` load as they are: every key known, every role
//! supported, every relabel rule compiles, and the kubelet jobs reach the node proxy path. The
//! kubelet jobs are the file the resource-metrics component mounts at /etc/ringtail-scrape.d/
//! (`deploy/components/resource-metrics/kubelet.yaml`, a `scrape_config_files` file); the direct
//! variant is `deploy/examples/scrape-kubelet.yaml`.

use ingest::ScrapeConfigs;

fn deploy_file(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

const COMPONENT_JOBS: &str = "components/resource-metrics/kubelet.yaml";

#[test]
fn the_components_kubelet_scrape_jobs_load_and_route_through_the_node_proxy() {
    let configs = ScrapeConfigs::from_yaml(&deploy_file(COMPONENT_JOBS)).expect("the component's kubelet.yaml loads");
    let jobs = configs.resolve().expect("every job resolves");
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["kubelet", "kubelet-cadvisor", "kubelet-resource"]);
    for config in &configs.scrape_configs {
        assert_eq!(config.kubernetes_sd_configs[0].role, "node", "{}", config.job_name);
        assert_eq!(config.scheme, "https");
    }
}

#[test]
fn the_component_mounts_its_kubelet_yaml_where_the_shipped_config_globs() {
    let component = deploy_file("components/resource-metrics/kustomization.yaml");
    assert!(component.contains("files: [kubelet.yaml]"), "the ConfigMap is generated from kubelet.yaml");
    let patch = deploy_file("components/resource-metrics/statefulset-patch.yaml");
    assert!(patch.contains("mountPath: /etc/ringtail-scrape.d"));
    assert!(deploy_file("configmap.yaml").contains("scrape_config_files: [/etc/ringtail-scrape.d/*.yaml]"));
    assert!(
        !deploy_file("kustomization.yaml").lines().any(|l| l.trim_start().starts_with("components:")),
        "the base must not claim metrics.k8s.io"
    );
}

#[test]
fn a_node_target_is_rewritten_to_the_api_server_proxy_path() {
    let configs = ScrapeConfigs::from_yaml(&deploy_file(COMPONENT_JOBS)).expect("the component's kubelet.yaml loads");
    let jobs = configs.resolve().expect("every job resolves");
    for (job, path) in jobs.iter().zip(["/metrics", "/metrics/cadvisor", "/metrics/resource"]) {
        // The labels node discovery and the job's defaults give a target before relabeling.
        let mut labels = tsdb::Labels::from_pairs([
            ("__address__", "10.0.0.7:10250"),
            ("__metrics_path__", job.metrics_path.as_str()),
            ("__meta_kubernetes_node_name", "worker-1"),
            ("__meta_kubernetes_node_label_kubernetes_io_os", "linux"),
        ]);
        assert!(job.relabel.apply(&mut labels), "{}", job.name);
        assert_eq!(labels.get("__address__"), Some("kubernetes.default.svc:443"));
        assert_eq!(labels.get("__metrics_path__"), Some(format!("/api/v1/nodes/worker-1/proxy{path}").as_str()));
        assert_eq!((labels.get("node"), labels.get("kubernetes_io_os")), (Some("worker-1"), Some("linux")));
    }
}

#[test]
fn the_direct_kubelet_example_loads_and_labels_the_node() {
    let configs = ScrapeConfigs::from_yaml(&deploy_file("examples/scrape-kubelet.yaml")).expect("the example loads");
    let jobs = configs.resolve().expect("every job resolves");
    let [job] = jobs.as_slice() else { panic!("one direct job, got {}", jobs.len()) };
    assert_eq!((job.name.as_str(), job.metrics_path.as_str()), ("kubelet-cadvisor-direct", "/metrics/cadvisor"));
    let mut labels = tsdb::Labels::from_pairs([
        ("__address__", "10.0.0.7:10250"),
        ("__metrics_path__", job.metrics_path.as_str()),
        ("__meta_kubernetes_node_name", "worker-1"),
    ]);
    assert!(job.relabel.apply(&mut labels));
    assert_eq!((labels.get("__address__"), labels.get("node")), (Some("10.0.0.7:10250"), Some("worker-1")));
}
