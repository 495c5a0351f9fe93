//! `scrape_targets` turns Kubernetes objects into scrape target groups carrying the
//! `__meta_kubernetes_*` labels Prometheus's `kubernetes_sd_configs` sets, so the usual relabel
//! configs (`prometheus.io/scrape` annotations, `labelmap`) work unchanged. Pure functions: the
//! watch loop in `scrape_discovery` feeds them.

use ingest::TargetGroup;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Deserialize;
use std::collections::BTreeMap;

const META: &str = "__meta_kubernetes_";

/// Replaces every character Prometheus does not allow in a label name with `_`
/// (as its `strutil.SanitizeLabelName`).
pub(crate) fn sanitize_label_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn bool_text(value: bool) -> String {
    if value { "true" } else { "false" }.to_string()
}

/// Adds `<prefix>label_<name>`, `<prefix>labelpresent_<name>` and the annotation twins.
fn add_object_meta(
    labels: &mut BTreeMap<String, String>,
    prefix: &str,
    object_labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) {
    for (key, value) in object_labels.into_iter().flatten() {
        let name = sanitize_label_name(key);
        labels.insert(format!("{prefix}label_{name}"), value.clone());
        labels.insert(format!("{prefix}labelpresent_{name}"), "true".into());
    }
    for (key, value) in annotations.into_iter().flatten() {
        let name = sanitize_label_name(key);
        labels.insert(format!("{prefix}annotation_{name}"), value.clone());
        labels.insert(format!("{prefix}annotationpresent_{name}"), "true".into());
    }
}

fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `__meta_kubernetes_pod_ready`: the Ready condition's status lower-cased (`true`, `false`,
/// `unknown`), `unknown` without one, as Prometheus sets it.
fn pod_ready(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conds| conds.iter().find(|c| c.type_ == "Ready"))
        .map_or_else(|| "unknown".to_string(), |c| c.status.to_ascii_lowercase())
}

/// The labels every target of a pod shares (`__meta_kubernetes_pod_*` without container fields).
fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let prefix = format!("{META}pod_");
    labels.insert(format!("{META}namespace"), meta.namespace.clone().unwrap_or_default());
    labels.insert(format!("{prefix}name"), meta.name.clone().unwrap_or_default());
    labels.insert(format!("{prefix}uid"), meta.uid.clone().unwrap_or_default());
    labels.insert(format!("{prefix}ip"), status.and_then(|s| s.pod_ip.clone()).unwrap_or_default());
    labels.insert(format!("{prefix}host_ip"), status.and_then(|s| s.host_ip.clone()).unwrap_or_default());
    labels.insert(format!("{prefix}phase"), status.and_then(|s| s.phase.clone()).unwrap_or_default());
    labels.insert(format!("{prefix}ready"), pod_ready(pod));
    labels.insert(format!("{prefix}node_name"), spec.and_then(|s| s.node_name.clone()).unwrap_or_default());
    if let Some(owner) = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        labels.insert(format!("{prefix}controller_kind"), owner.kind.clone());
        labels.insert(format!("{prefix}controller_name"), owner.name.clone());
    }
    add_object_meta(&mut labels, &prefix, meta.labels.as_ref(), meta.annotations.as_ref());
    labels
}

/// Target groups for role `pod`: one target per declared container port; a container without
/// ports yields one target at the pod IP alone (relabeling usually sets the port). Pods without an
/// IP yet have no targets.
pub(crate) fn pod_targets(pod: &Pod) -> Vec<TargetGroup> {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else {
        return Vec::new();
    };
    let shared = pod_labels(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let containers = spec.containers.iter().map(|c| (c, false));
    let init_containers = spec.init_containers.iter().flatten().map(|c| (c, true));
    let mut groups = Vec::new();
    for (container, is_init) in containers.chain(init_containers) {
        let mut base = shared.clone();
        base.insert(format!("{META}pod_container_name"), container.name.clone());
        base.insert(format!("{META}pod_container_image"), container.image.clone().unwrap_or_default());
        base.insert(format!("{META}pod_container_init"), bool_text(is_init));
        let ports = container.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            // Prometheus lists port-less init containers only through their ports; skip them too.
            if !is_init {
                groups.push(TargetGroup { targets: vec![ip.clone()], labels: base });
            }
            continue;
        }
        for port in ports {
            let mut labels = base.clone();
            labels.insert(format!("{META}pod_container_port_name"), port.name.clone().unwrap_or_default());
            labels.insert(format!("{META}pod_container_port_number"), port.container_port.to_string());
            labels.insert(
                format!("{META}pod_container_port_protocol"),
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            groups.push(TargetGroup { targets: vec![join_host_port(&ip, port.container_port)], labels });
        }
    }
    groups
}

/// Address types in the order Prometheus picks a node's address from them.
const NODE_ADDRESS_PREFERENCE: [&str; 6] =
    ["InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname"];

/// Target groups for role `node`: one target per node at its preferred address and the kubelet's
/// port (`status.daemonEndpoints.kubeletEndpoint.port`), `instance` set to the node's name, with
/// `__meta_kubernetes_node_name`, `_provider_id`, `_address_<type>` (the first of each type) and
/// the node's labels and annotations. A node without an address has no target.
pub(crate) fn node_targets(node: &Node) -> Vec<TargetGroup> {
    let meta = &node.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let addresses = status.and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let Some(host) = NODE_ADDRESS_PREFERENCE
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a.type_ == *kind).map(|a| a.address.clone()))
    else {
        return Vec::new();
    };
    let port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(0, |endpoint| endpoint.port);
    let prefix = format!("{META}node_");
    let mut labels = BTreeMap::new();
    labels.insert(format!("{prefix}name"), name.clone());
    labels.insert(
        format!("{prefix}provider_id"),
        node.spec.as_ref().and_then(|s| s.provider_id.clone()).unwrap_or_default(),
    );
    for address in addresses {
        labels.entry(format!("{prefix}address_{}", address.type_)).or_insert_with(|| address.address.clone());
    }
    add_object_meta(&mut labels, &prefix, meta.labels.as_ref(), meta.annotations.as_ref());
    labels.insert("instance".into(), name);
    vec![TargetGroup { targets: vec![join_host_port(&host, port)], labels }]
}

fn service_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let meta = &service.metadata;
    labels.insert(format!("{META}namespace"), meta.namespace.clone().unwrap_or_default());
    labels.insert(format!("{META}service_name"), meta.name.clone().unwrap_or_default());
    add_object_meta(&mut labels, &format!("{META}service_"), meta.labels.as_ref(), meta.annotations.as_ref());
    labels
}

/// Target groups for role `service`: one target per service port at `<name>.<namespace>.svc:<port>`.
pub(crate) fn service_targets(service: &Service) -> Vec<TargetGroup> {
    let shared = service_labels(service);
    let name = service.metadata.name.clone().unwrap_or_default();
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    spec.ports
        .iter()
        .flatten()
        .map(|port| {
            let mut labels = shared.clone();
            labels.insert(format!("{META}service_port_name"), port.name.clone().unwrap_or_default());
            labels.insert(format!("{META}service_port_number"), port.port.to_string());
            labels
                .insert(format!("{META}service_port_protocol"), port.protocol.clone().unwrap_or_else(|| "TCP".into()));
            labels.insert(format!("{META}service_type"), spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()));
            if let Some(ip) = &spec.cluster_ip {
                labels.insert(format!("{META}service_cluster_ip"), ip.clone());
            }
            TargetGroup { targets: vec![format!("{name}.{namespace}.svc:{}", port.port)], labels }
        })
        .collect()
}

/// Target groups for role `endpoints`: one target per address and port of every subset, with the
/// service's labels and, for addresses backed by a known pod, the pod's labels too.
pub(crate) fn endpoints_targets(
    endpoints: &Endpoints,
    service: Option<&Service>,
    pod_by_name: &dyn Fn(&str, &str) -> Option<Pod>,
) -> Vec<TargetGroup> {
    let namespace = endpoints.metadata.namespace.clone().unwrap_or_default();
    let mut shared = service.map(service_labels).unwrap_or_default();
    shared.insert(format!("{META}namespace"), namespace.clone());
    shared.insert(format!("{META}endpoints_name"), endpoints.metadata.name.clone().unwrap_or_default());
    add_object_meta(
        &mut shared,
        &format!("{META}endpoints_"),
        endpoints.metadata.labels.as_ref(),
        endpoints.metadata.annotations.as_ref(),
    );
    let mut groups = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (address, is_ready) in ready.chain(not_ready) {
            for port in subset.ports.iter().flatten() {
                let mut labels = shared.clone();
                labels.insert(format!("{META}endpoint_ready"), bool_text(is_ready));
                labels.insert(format!("{META}endpoint_port_name"), port.name.clone().unwrap_or_default());
                labels.insert(
                    format!("{META}endpoint_port_protocol"),
                    port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                );
                if let Some(hostname) = &address.hostname {
                    labels.insert(format!("{META}endpoint_hostname"), hostname.clone());
                }
                if let Some(node) = &address.node_name {
                    labels.insert(format!("{META}endpoint_node_name"), node.clone());
                }
                if let Some(target) = &address.target_ref {
                    let kind = target.kind.clone().unwrap_or_default();
                    let target_name = target.name.clone().unwrap_or_default();
                    labels.insert(format!("{META}endpoint_address_target_kind"), kind.clone());
                    labels.insert(format!("{META}endpoint_address_target_name"), target_name.clone());
                    if kind == "Pod" {
                        if let Some(pod) = pod_by_name(&namespace, &target_name) {
                            labels.extend(pod_labels(&pod));
                            add_matching_container_port(&mut labels, &pod, Some(port.port), port.protocol.as_deref());
                        }
                    }
                }
                groups.push(TargetGroup { targets: vec![join_host_port(&address.ip, port.port)], labels });
            }
        }
    }
    groups
}

/// Nodes by name (what `attach_metadata: {node: true}` looks a target's node up in).
pub(crate) type NodeLookup<'a> = &'a dyn Fn(&str) -> Option<Node>;

/// `attach_metadata: {node: true}`: the name, labels and annotations of node `node_name`, if
/// known, as Prometheus adds them (`__meta_kubernetes_node_name`, `_node_label_*`,
/// `_node_labelpresent_*`, `_node_annotation_*`, `_node_annotationpresent_*`).
pub(crate) fn add_node_metadata(
    labels: &mut BTreeMap<String, String>,
    node_name: Option<&str>,
    nodes: &dyn Fn(&str) -> Option<Node>,
) {
    let Some(name) = node_name.filter(|n| !n.is_empty()) else { return };
    let Some(node) = nodes(name) else { return };
    labels.insert(format!("{META}node_name"), name.to_string());
    let meta = &node.metadata;
    add_object_meta(labels, &format!("{META}node_"), meta.labels.as_ref(), meta.annotations.as_ref());
}

/// An EndpointSlice as `discovery.k8s.io/v1` and `v1beta1` both write it (read from a dynamic
/// watch, since 1.20 serves only v1beta1 and 1.25 only v1): v1beta1's `topology` map is v1's
/// `deprecatedTopology`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointSliceShape {
    #[serde(default)]
    pub(crate) address_type: String,
    #[serde(default)]
    pub(crate) endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub(crate) ports: Option<Vec<SlicePort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SliceEndpoint {
    #[serde(default)]
    pub(crate) addresses: Vec<String>,
    #[serde(default)]
    pub(crate) conditions: Option<SliceConditions>,
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    #[serde(default)]
    pub(crate) node_name: Option<String>,
    #[serde(default)]
    pub(crate) target_ref: Option<SliceTargetRef>,
    /// v1beta1's `topology`.
    #[serde(default)]
    pub(crate) topology: Option<BTreeMap<String, String>>,
    /// v1's `deprecatedTopology`.
    #[serde(default)]
    pub(crate) deprecated_topology: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SliceConditions {
    #[serde(default)]
    pub(crate) ready: Option<bool>,
    #[serde(default)]
    pub(crate) serving: Option<bool>,
    #[serde(default)]
    pub(crate) terminating: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SliceTargetRef {
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SlicePort {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<i32>,
    #[serde(default)]
    pub(crate) protocol: Option<String>,
    #[serde(default)]
    pub(crate) app_protocol: Option<String>,
}

/// What target building needs besides the slice: its metadata, its Service (named by the
/// `kubernetes.io/service-name` label), the pods and nodes by name.
pub(crate) struct SliceContext<'a> {
    pub(crate) metadata: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub(crate) service: Option<&'a Service>,
    pub(crate) pod_by_name: &'a dyn Fn(&str, &str) -> Option<Pod>,
    /// Nodes by name, when `attach_metadata: {node: true}`.
    pub(crate) node_by_name: Option<NodeLookup<'a>>,
}

/// The label of an EndpointSlice naming its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Target groups for role `endpointslice`: one target per endpoint address and port, with
/// Prometheus's `__meta_kubernetes_endpointslice_*` labels, the Service's labels and, for
/// addresses backed by a known pod, the pod's labels too.
pub(crate) fn endpointslice_targets(slice: &EndpointSliceShape, context: &SliceContext<'_>) -> Vec<TargetGroup> {
    let meta = context.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let mut shared = context.service.map(service_labels).unwrap_or_default();
    shared.insert(format!("{META}namespace"), namespace.clone());
    let prefix = format!("{META}endpointslice_");
    shared.insert(format!("{prefix}name"), meta.name.clone().unwrap_or_default());
    shared.insert(format!("{prefix}address_type"), slice.address_type.clone());
    add_object_meta(&mut shared, &prefix, meta.labels.as_ref(), meta.annotations.as_ref());
    let no_port = [SlicePort::default()];
    let ports: &[SlicePort] = match slice.ports.as_deref() {
        Some(ports) if !ports.is_empty() => ports,
        _ => &no_port,
    };
    let mut groups = Vec::new();
    for endpoint in &slice.endpoints {
        for port in ports {
            for address in &endpoint.addresses {
                let mut labels = shared.clone();
                let target = match port.port {
                    Some(number) => {
                        labels.insert(format!("{prefix}port"), number.to_string());
                        join_host_port(address, number)
                    }
                    None => address.clone(),
                };
                if let Some(name) = &port.name {
                    labels.insert(format!("{prefix}port_name"), name.clone());
                }
                if let Some(protocol) = &port.protocol {
                    labels.insert(format!("{prefix}port_protocol"), protocol.clone());
                }
                if let Some(app_protocol) = &port.app_protocol {
                    labels.insert(format!("{prefix}port_app_protocol"), app_protocol.clone());
                }
                if let Some(conditions) = &endpoint.conditions {
                    for (name, value) in [
                        ("ready", conditions.ready),
                        ("serving", conditions.serving),
                        ("terminating", conditions.terminating),
                    ] {
                        if let Some(value) = value {
                            labels.insert(format!("{prefix}endpoint_conditions_{name}"), bool_text(value));
                        }
                    }
                }
                if let Some(hostname) = &endpoint.hostname {
                    labels.insert(format!("{prefix}endpoint_hostname"), hostname.clone());
                }
                for (key, value) in endpoint.topology.iter().chain(&endpoint.deprecated_topology).flatten() {
                    let name = sanitize_label_name(key);
                    labels.insert(format!("{prefix}endpoint_topology_{name}"), value.clone());
                    labels.insert(format!("{prefix}endpoint_topology_present_{name}"), "true".into());
                }
                if let Some(target) = &endpoint.target_ref {
                    labels.insert(format!("{prefix}address_target_kind"), target.kind.clone());
                    labels.insert(format!("{prefix}address_target_name"), target.name.clone());
                    if target.kind == "Pod" {
                        let pod_namespace = target.namespace.as_deref().unwrap_or(&namespace);
                        if let Some(pod) = (context.pod_by_name)(pod_namespace, &target.name) {
                            labels.extend(pod_labels(&pod));
                            add_matching_container_port(&mut labels, &pod, port.port, port.protocol.as_deref());
                        }
                    }
                }
                if let Some(nodes) = context.node_by_name {
                    add_node_metadata(&mut labels, endpoint.node_name.as_deref(), nodes);
                }
                groups.push(TargetGroup { targets: vec![target], labels });
            }
        }
    }
    groups
}

/// The container port of `pod` an endpoint's port `number` reaches, as Prometheus labels it.
fn add_matching_container_port(
    labels: &mut BTreeMap<String, String>,
    pod: &Pod,
    number: Option<i32>,
    protocol: Option<&str>,
) {
    let Some(number) = number else { return };
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    for container in containers {
        if let Some(container_port) = container.ports.iter().flatten().find(|p| p.container_port == number) {
            labels.insert(format!("{META}pod_container_name"), container.name.clone());
            labels.insert(format!("{META}pod_container_image"), container.image.clone().unwrap_or_default());
            labels.insert(format!("{META}pod_container_port_name"), container_port.name.clone().unwrap_or_default());
            labels.insert(format!("{META}pod_container_port_number"), number.to_string());
            labels.insert(format!("{META}pod_container_port_protocol"), protocol.unwrap_or("TCP").to_string());
            return;
        }
    }
}

/// Whether TLS host `pattern` (`*.example.com` covers one leading label) covers `host`.
fn tls_host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Target groups for role `ingress`: one target per rule and path, at the rule's host, with
/// `__meta_kubernetes_ingress_scheme` `https` when a TLS entry covers the host.
pub(crate) fn ingress_targets(ingress: &Ingress) -> Vec<TargetGroup> {
    let meta = &ingress.metadata;
    let prefix = format!("{META}ingress_");
    let mut shared = BTreeMap::new();
    shared.insert(format!("{META}namespace"), meta.namespace.clone().unwrap_or_default());
    shared.insert(format!("{prefix}name"), meta.name.clone().unwrap_or_default());
    add_object_meta(&mut shared, &prefix, meta.labels.as_ref(), meta.annotations.as_ref());
    let Some(spec) = ingress.spec.as_ref() else { return Vec::new() };
    if let Some(class) = &spec.ingress_class_name {
        shared.insert(format!("{prefix}class_name"), class.clone());
    }
    let tls_hosts: Vec<&str> =
        spec.tls.iter().flatten().flat_map(|t| t.hosts.iter().flatten()).map(String::as_str).collect();
    let mut groups = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.clone().unwrap_or_default();
        let scheme = if tls_hosts.iter().any(|pattern| tls_host_matches(pattern, &host)) { "https" } else { "http" };
        let mut paths: Vec<String> = rule
            .http
            .iter()
            .flat_map(|http| http.paths.iter())
            .map(|p| p.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()))
            .collect();
        if paths.is_empty() {
            paths.push("/".into());
        }
        for path in paths {
            let mut labels = shared.clone();
            labels.insert(format!("{prefix}scheme"), scheme.into());
            labels.insert(format!("{prefix}host"), host.clone());
            labels.insert(format!("{prefix}path"), path);
            groups.push(TargetGroup { targets: vec![host.clone()], labels });
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "inference-0", "namespace": "ml", "uid": "u1",
                "labels": {"app": "inference", "app.kubernetes.io/part-of": "demo"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "inference-7d9",
                                     "uid": "r1", "controller": true}]
            },
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "server", "image": "inference:1", "ports": [{"name": "http", "containerPort": 8080}]},
                {"name": "sidecar", "image": "proxy:1"}
            ]},
            "status": {"phase": "Running", "podIP": "10.1.2.3", "hostIP": "192.0.2.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    #[test]
    fn pod_role_sets_prometheus_meta_labels() {
        let groups = pod_targets(&pod());
        assert_eq!(groups.len(), 2, "{groups:?}");
        let server = &groups[0];
        assert_eq!(server.targets, vec!["10.1.2.3:8080".to_string()]);
        let l = &server.labels;
        assert_eq!(l["__meta_kubernetes_namespace"], "ml");
        assert_eq!(l["__meta_kubernetes_pod_name"], "inference-0");
        assert_eq!(l["__meta_kubernetes_pod_ready"], "true");
        assert_eq!(l["__meta_kubernetes_pod_phase"], "Running");
        assert_eq!(l["__meta_kubernetes_pod_node_name"], "node-a");
        assert_eq!(l["__meta_kubernetes_pod_label_app"], "inference");
        assert_eq!(l["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"], "demo");
        assert_eq!(l["__meta_kubernetes_pod_labelpresent_app"], "true");
        assert_eq!(l["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true");
        assert_eq!(l["__meta_kubernetes_pod_container_port_number"], "8080");
        assert_eq!(l["__meta_kubernetes_pod_container_port_name"], "http");
        assert_eq!(l["__meta_kubernetes_pod_controller_kind"], "ReplicaSet");
        assert_eq!(l["__meta_kubernetes_pod_controller_name"], "inference-7d9");
        let sidecar = &groups[1];
        assert_eq!(sidecar.targets, vec!["10.1.2.3".to_string()]);
        assert!(!sidecar.labels.contains_key("__meta_kubernetes_pod_container_port_number"));
    }

    /// One EndpointSlice as `version` writes it: a ready pod endpoint and a not-ready one.
    fn slice(version: &str) -> (k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, EndpointSliceShape) {
        let topology_key = if version == "v1" { "deprecatedTopology" } else { "topology" };
        let value = json!({
            "metadata": {"name": "web-abcde", "namespace": "ml",
                         "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "x"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.2.3"], "conditions": {"ready": true}, "nodeName": "node-a",
                 "targetRef": {"kind": "Pod", "name": "inference-0", "namespace": "ml"},
                 topology_key: {"kubernetes.io/hostname": "node-a"}},
                {"addresses": ["10.1.2.4"], "conditions": {"ready": false}, "hostname": "h4"}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        let meta = serde_json::from_value(value["metadata"].clone()).unwrap();
        (meta, serde_json::from_value(value).unwrap())
    }

    #[test]
    fn endpointslice_role_reads_v1_and_v1beta1_alike() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ml", "labels": {"tier": "front"}},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap();
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "node-a", "labels": {"zone": "z1"}}})).unwrap();
        let find_pod = |ns: &str, name: &str| (ns == "ml" && name == "inference-0").then(pod);
        let find_node = |name: &str| (name == "node-a").then(|| node.clone());
        let mut seen = Vec::new();
        for version in ["v1", "v1beta1"] {
            let (meta, shape) = slice(version);
            let context = SliceContext {
                metadata: &meta,
                service: Some(&service),
                pod_by_name: &find_pod,
                node_by_name: Some(&find_node),
            };
            let groups = endpointslice_targets(&shape, &context);
            assert_eq!(groups.len(), 2);
            assert_eq!(groups[0].targets, ["10.1.2.3:8080"]);
            let l = &groups[0].labels;
            assert_eq!(l["__meta_kubernetes_namespace"], "ml");
            assert_eq!(l["__meta_kubernetes_endpointslice_name"], "web-abcde");
            assert_eq!(l["__meta_kubernetes_endpointslice_address_type"], "IPv4");
            assert_eq!(l["__meta_kubernetes_endpointslice_port"], "8080");
            assert_eq!(l["__meta_kubernetes_endpointslice_port_name"], "http");
            assert_eq!(l["__meta_kubernetes_endpointslice_port_protocol"], "TCP");
            assert_eq!(l["__meta_kubernetes_endpointslice_endpoint_conditions_ready"], "true");
            assert_eq!(l["__meta_kubernetes_endpointslice_endpoint_topology_kubernetes_io_hostname"], "node-a");
            assert_eq!(l["__meta_kubernetes_endpointslice_endpoint_topology_present_kubernetes_io_hostname"], "true");
            assert_eq!(l["__meta_kubernetes_endpointslice_address_target_kind"], "Pod");
            assert_eq!(l["__meta_kubernetes_endpointslice_label_kubernetes_io_service_name"], "web");
            assert_eq!(l["__meta_kubernetes_service_name"], "web");
            assert_eq!(l["__meta_kubernetes_service_label_tier"], "front");
            assert_eq!(l["__meta_kubernetes_pod_name"], "inference-0");
            assert_eq!(l["__meta_kubernetes_pod_container_name"], "server");
            assert_eq!(l["__meta_kubernetes_pod_container_port_number"], "8080");
            assert_eq!(l["__meta_kubernetes_node_name"], "node-a", "attach_metadata: node");
            assert_eq!(l["__meta_kubernetes_node_label_zone"], "z1");
            let other = &groups[1].labels;
            assert_eq!(groups[1].targets, ["10.1.2.4:8080"]);
            assert_eq!(other["__meta_kubernetes_endpointslice_endpoint_conditions_ready"], "false");
            assert_eq!(other["__meta_kubernetes_endpointslice_endpoint_hostname"], "h4");
            assert!(
                !other.contains_key("__meta_kubernetes_pod_name") && !other.contains_key("__meta_kubernetes_node_name")
            );
            seen.push(groups);
        }
        assert_eq!(seen[0], seen[1], "both versions give the same targets");
    }

    #[test]
    fn ingress_role_gives_one_target_per_rule_path() {
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "shop", "namespace": "web", "labels": {"team": "a"}},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["*.example.com"]}],
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/cart", "pathType": "Prefix", "backend": {"service": {"name": "cart", "port": {"number": 80}}}},
                        {"pathType": "Prefix", "backend": {"service": {"name": "home", "port": {"number": 80}}}}
                    ]}},
                    {"host": "a.b.example.com"},
                    {"host": "plain.example.org"}
                ]
            }
        }))
        .unwrap();
        let groups = ingress_targets(&ingress);
        let summary: Vec<(String, &str, &str)> = groups
            .iter()
            .map(|g| {
                (
                    g.targets[0].clone(),
                    g.labels["__meta_kubernetes_ingress_scheme"].as_str(),
                    g.labels["__meta_kubernetes_ingress_path"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("shop.example.com".to_string(), "https", "/cart"),
                ("shop.example.com".to_string(), "https", "/"),
                ("a.b.example.com".to_string(), "http", "/"),
                ("plain.example.org".to_string(), "http", "/"),
            ],
            "a wildcard TLS host covers one label only"
        );
        let l = &groups[0].labels;
        assert_eq!(l["__meta_kubernetes_ingress_name"], "shop");
        assert_eq!(l["__meta_kubernetes_ingress_class_name"], "nginx");
        assert_eq!(l["__meta_kubernetes_ingress_host"], "shop.example.com");
        assert_eq!(l["__meta_kubernetes_ingress_label_team"], "a");
        assert_eq!(l["__meta_kubernetes_namespace"], "web");
    }

    #[test]
    fn node_role_sets_prometheus_meta_labels() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1", "labels": {"kubernetes.io/os": "linux"}, "annotations": {"a": "b"}},
            "spec": {"providerID": "kind://docker/worker-1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "worker-1"},
                    {"type": "InternalIP", "address": "10.0.0.7"},
                    {"type": "InternalIP", "address": "10.0.0.8"}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
            }
        }))
        .unwrap();
        let groups = node_targets(&node);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets, vec!["10.0.0.7:10250".to_string()], "InternalIP first");
        let l = &groups[0].labels;
        assert_eq!(l["instance"], "worker-1");
        assert_eq!(l["__meta_kubernetes_node_name"], "worker-1");
        assert_eq!(l["__meta_kubernetes_node_provider_id"], "kind://docker/worker-1");
        assert_eq!(l["__meta_kubernetes_node_address_InternalIP"], "10.0.0.7");
        assert_eq!(l["__meta_kubernetes_node_address_Hostname"], "worker-1");
        assert_eq!(l["__meta_kubernetes_node_label_kubernetes_io_os"], "linux");
        assert_eq!(l["__meta_kubernetes_node_labelpresent_kubernetes_io_os"], "true");
        assert_eq!(l["__meta_kubernetes_node_annotation_a"], "b");
        let bare: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert!(node_targets(&bare).is_empty(), "no address, no target");
    }

    #[test]
    fn pod_without_ip_has_no_targets() {
        let mut p = pod();
        p.status.as_mut().unwrap().pod_ip = None;
        assert!(pod_targets(&p).is_empty());
    }

    #[test]
    fn service_and_endpoints_roles() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "frontend", "namespace": "web", "labels": {"tier": "fe"}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }))
        .unwrap();
        let groups = service_targets(&service);
        assert_eq!(groups[0].targets, vec!["frontend.web.svc:80".to_string()]);
        assert_eq!(groups[0].labels["__meta_kubernetes_service_label_tier"], "fe");
        assert_eq!(groups[0].labels["__meta_kubernetes_service_port_number"], "80");

        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "frontend", "namespace": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "inference-0"}}],
                "notReadyAddresses": [{"ip": "10.1.0.6"}],
                "ports": [{"name": "http", "port": 8080}]
            }]
        }))
        .unwrap();
        let the_pod = pod();
        let groups =
            endpoints_targets(&endpoints, Some(&service), &|_, name| (name == "inference-0").then(|| the_pod.clone()));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].targets, vec!["10.1.0.5:8080".to_string()]);
        assert_eq!(groups[0].labels["__meta_kubernetes_endpoint_ready"], "true");
        assert_eq!(groups[0].labels["__meta_kubernetes_service_name"], "frontend");
        assert_eq!(groups[0].labels["__meta_kubernetes_pod_label_app"], "inference");
        assert_eq!(groups[1].labels["__meta_kubernetes_endpoint_ready"], "false");
    }
}
