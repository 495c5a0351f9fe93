# Kubernetes discovery roles against the real control plane, compared with vmagent 1.79
# discovering the same objects (Debian's Prometheus 2.42 is built without Kubernetes discovery:
# it refuses `kubernetes_sd_configs`). Sourced by run.sh; uses its variables (work, cp_dir, host_ip,
# ns_ip, pids) and helpers (pass, fail, log, kc, wait_until), and resource-metrics.sh's Node.
#
# - sd_prepare_config: the jobs below in a `scrape_config_files` file for Ringtail, and the same
#   jobs for a vmagent on this host (with `kubeconfig_file`, the one difference):
#   role endpoints and role endpointslice over one Service, role ingress, and role pod with
#   `attach_metadata: {node: true}` and a field selector `status.phase=Running`.
# - sd_objects: in namespace e2e-sd, a selector-less Service whose Endpoints are written here
#   and mirrored into EndpointSlices (discovery.k8s.io/v1beta1 on 1.20) by kube-controller-manager's
#   endpointslicemirroring controller; a Running pod and a Pending one on the test Node; an
#   Ingress with a wildcard TLS host.
# - sd_checks: for each job, the targets' labels before relabeling (`discoveredLabels` of
#   /api/v1/targets, active and dropped) are the same in Ringtail and in vmagent; role
#   endpointslice finds the targets role endpoints finds; the Pending pod is not discovered (the
#   API server filtered it).

sd_ns=e2e-sd
sd_peer_port=19105

sd_prepare_config() {
  local jobs="$work/sd-jobs.yaml"
  cat >"$jobs" <<EOF
scrape_configs:
  - job_name: sd-endpoints
    scrape_interval: 1m
    kubernetes_sd_configs: [{role: endpoints, namespaces: {names: [$sd_ns]}}]
  - job_name: sd-endpointslice
    scrape_interval: 1m
    kubernetes_sd_configs: [{role: endpointslice, namespaces: {names: [$sd_ns]}}]
  - job_name: sd-ingress
    scrape_interval: 1m
    kubernetes_sd_configs: [{role: ingress, namespaces: {names: [$sd_ns]}}]
  - job_name: sd-pods
    scrape_interval: 1m
    kubernetes_sd_configs: [{role: pod, namespaces: {names: [$sd_ns]}, attach_metadata: {node: true}, selectors: [{role: pod, field: status.phase=Running}]}]
EOF
  cp "$jobs" "$work/scrape.d/discovery.yaml"
  sed "s#kubernetes_sd_configs: \[{role: #kubernetes_sd_configs: [{kubeconfig_file: $cp_dir/admin.kubeconfig, role: #" \
    "$jobs" >"$work/vmagent-sd.yaml"
}

sd_objects() {
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $sd_ns}
---
apiVersion: v1
kind: Service
metadata: {name: sd-web, namespace: $sd_ns, labels: {tier: front}}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: sd-web-0, namespace: $sd_ns, labels: {app: sd-web}}
spec: {nodeName: $rm_node, containers: [{name: web, image: "e2e/web:1", ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: sd-web-1, namespace: $sd_ns, labels: {app: sd-web}}
spec: {nodeName: $rm_node, containers: [{name: web, image: "e2e/web:1", ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: $sd_ns, labels: {team: a}}
spec:
  tls: [{hosts: ["*.example.com"]}]
  rules:
    - host: shop.example.com
      http: {paths: [{path: /cart, pathType: Prefix, backend: {service: {name: sd-web, port: {number: 8080}}}}]}
    - host: plain.example.org
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: sd-web, port: {number: 8080}}}}]}
EOF
  kc -n "$sd_ns" patch pod sd-web-0 --subresource=status --type=merge -p \
    "{\"status\":{\"phase\":\"Running\",\"podIP\":\"10.252.0.10\",\"hostIP\":\"$host_ip\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata: {name: sd-web, namespace: $sd_ns, labels: {tier: front}}
subsets:
  - addresses: [{ip: 10.252.0.10, nodeName: $rm_node, targetRef: {kind: Pod, name: sd-web-0, namespace: $sd_ns}}]
    notReadyAddresses: [{ip: 10.252.0.11, targetRef: {kind: Pod, name: sd-web-1, namespace: $sd_ns}}]
    ports: [{name: http, port: 8080, protocol: TCP}]
EOF
  # Nothing receives its writes: only its discovery is used.
  vmagent -promscrape.config "$work/vmagent-sd.yaml" -httpListenAddr "127.0.0.1:$sd_peer_port" \
    -remoteWrite.url "http://127.0.0.1:9/api/v1/write" -remoteWrite.tmpDataPath "$work/vmagent-sd-data" \
    >"$work/vmagent-sd.log" 2>&1 &
  pids+=($!)
}

# The discoveredLabels of every target of JOB at URL, sorted, as JSON lines. Left out, where
# vmagent 1.79 and Prometheus 2.42 (whose labels Ringtail follows) differ: labels with an empty
# value (Prometheus treats them as absent; vmagent lists some, e.g. an Ingress's empty
# class_name), `__scrape_interval__`/`__scrape_timeout__` (vmagent prints 1m0s, Prometheus 1m),
# `__meta_kubernetes_pod_container_image` (newer than vmagent 1.79), and the Service's
# `cluster_ip`/`type` on endpoints targets (vmagent adds them; Prometheus only on role service).
sd_discovered() { # URL JOB
  curl -sf "$1/api/v1/targets?scrapePool=$2" | python3 -c '
import json, sys
data = json.load(sys.stdin)["data"]
targets = data.get("activeTargets", []) + data.get("droppedTargets", [])
skip = {"__scrape_interval__", "__scrape_timeout__", "__meta_kubernetes_pod_container_image",
        "__meta_kubernetes_service_cluster_ip", "__meta_kubernetes_service_type"}
rows = sorted(
    json.dumps({k: v for k, v in t["discoveredLabels"].items() if v != "" and k not in skip}, sort_keys=True)
    for t in targets if t["discoveredLabels"].get("job") == sys.argv[1])
print("\n".join(rows))' "$2"
}

sd_settled() { # every job has targets in both
  local job
  for job in sd-endpoints sd-endpointslice sd-ingress sd-pods; do
    [ -n "$(sd_discovered "http://$ns_ip:9201" "$job")" ] || return 1
    [ -n "$(sd_discovered "http://127.0.0.1:$sd_peer_port" "$job")" ] || return 1
  done
}

sd_checks() {
  local job ours theirs
  if ! wait_until 90 sd_settled; then
    fail "discovery: the sd-* jobs have no targets in Ringtail or vmagent within 90 s (vmagent log: $(grep -E 'error|warn' "$work/vmagent-sd.log" | tail -3 | tr '\n' ' '))"
    return
  fi
  sleep 6   # one more round of target updates
  for job in sd-endpoints sd-endpointslice sd-ingress sd-pods; do
    ours="$(sd_discovered "http://$ns_ip:9201" "$job")"
    theirs="$(sd_discovered "http://127.0.0.1:$sd_peer_port" "$job")"
    if [ "$ours" = "$theirs" ]; then
      pass "discovery: job $job finds the same $(printf '%s\n' "$ours" | wc -l) target(s) with the same labels as vmagent 1.79"
    else
      fail "discovery: job $job differs from vmagent 1.79 (< vmagent, > Ringtail):"
      diff <(printf '%s\n' "$theirs" | tr ',' '\n') <(printf '%s\n' "$ours" | tr ',' '\n') | head -40
    fi
  done
  local addresses_endpoints addresses_slices
  addresses_endpoints="$(sd_discovered "http://$ns_ip:9201" sd-endpoints | python3 -c 'import json,sys; print(sorted(json.loads(l)["__address__"] for l in sys.stdin if l.strip()))')"
  addresses_slices="$(sd_discovered "http://$ns_ip:9201" sd-endpointslice | python3 -c 'import json,sys; print(sorted(json.loads(l)["__address__"] for l in sys.stdin if l.strip()))')"
  if [ "$addresses_endpoints" = "$addresses_slices" ] && [ "$addresses_slices" != "[]" ]; then
    pass "discovery: role endpointslice (discovery.k8s.io/v1beta1 on 1.20) finds the targets role endpoints finds: $addresses_slices"
  else
    fail "discovery: role endpointslice found $addresses_slices, role endpoints $addresses_endpoints"
  fi
  local pods
  pods="$(sd_discovered "http://$ns_ip:9201" sd-pods | python3 -c 'import json,sys; print(sorted(json.loads(l)["__meta_kubernetes_pod_name"] for l in sys.stdin if l.strip()))')"
  if [ "$pods" = "['sd-web-0']" ] \
    && sd_discovered "http://$ns_ip:9201" sd-pods | grep -q "\"__meta_kubernetes_node_name\": \"$rm_node\""; then
    pass "discovery: the field selector status.phase=Running leaves the Pending pod out ($pods), attach_metadata adds the node's labels"
  else
    fail "discovery: role pod with status.phase=Running found $pods (want only sd-web-0, with node metadata)"
  fi
}
