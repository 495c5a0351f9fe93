//! The scrape configurations shipped in `deploy/examples/` load as they are: every key known, every
//! role supported, every relabel rule compiles, and the kubelet jobs reach the node proxy path.

use ingest::ScrapeConfigs;

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn the_kubelet_scrape_jobs_load_and_route_through_the_node_proxy() {
    let configs = ScrapeConfigs::from_yaml(&example("scrape-kubelet.yaml")).expect("the example loads");
    let jobs = configs.resolve().expect("every job resolves");
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["kubelet", "kubelet-cadvisor", "kubelet-resource"]);
    for config in &configs.scrape_configs {
        assert_eq!(config.kubernetes_sd_configs[0].role, "node", "{}", config.job_name);
        assert_eq!(config.scheme, "https");
    }
}

#[test]
fn a_node_target_is_rewritten_to_the_api_server_proxy_path() {
    let configs = ScrapeConfigs::from_yaml(&example("scrape-kubelet.yaml")).expect("the example loads");
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
