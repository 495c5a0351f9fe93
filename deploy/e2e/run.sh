#!/usr/bin/env bash
# End-to-end proof that a real HPA controller scales on Ringtail's metrics, with no Prometheus.
#
#   deploy/e2e/run.sh RINGTAIL_BINARY [CONTROL_PLANE_BIN_DIR]
#
# 1. Starts etcd, kube-apiserver (aggregation, front-proxy CA, RBAC) and kube-controller-manager
#    (deployment, replicaset, HPA controllers) with control-plane.sh.
# 2. Makes a test host: a network namespace joined to this machine by a veth pair (Endpoints may
#    not point at loopback), and runs Ringtail in it with a kubeconfig holding the token of the
#    `ringtail` ServiceAccount that deploy/rbac.yaml grants: everything Ringtail does in the
#    cluster goes through the shipped RBAC.
# 3. Applies the manifests `kubectl kustomize deploy/` renders (the StatefulSet makes no pods: no
#    controller for it runs here) plus Endpoints pointing the `ringtail` Service at the test
#    hosts, and feeds Ringtail the shipped ConfigMap's config.yaml and adapter.yaml. Two replicas
#    run, as deploy/ ships them: A and B, each in a network namespace of its own, each scraping
#    and receiving the same data, both behind the Service (kube-apiserver routes to Endpoints).
# 4. Creates Deployments and autoscaling/v2beta2 HPAs for a Pods metric (ei_scale_ratio,
#    AverageValue 1), an Object metric on a Service (http_requests) and an External metric
#    (queue_messages_ready). Pods get no kubelet either: a driver loop marks them Running/Ready
#    through the status subresource.
# 5. Drives the values — ei_scale_ratio and queue_messages_ready through vmagent remote-writing to
#    Ringtail, http_requests_total from a pod Ringtail discovers and scrapes itself — and asserts
#    1 → 4 → 1 replicas for each HPA, `kubectl get hpa` showing values, and the authentication
#    and authorization matrix of every listener (auth-matrix.sh).
# 6. Availability: replica B is killed (-9) while the HPAs scale 1 → 4; they still get there and
#    `kubectl get --raw` keeps answering from A. B restarts with --ready-after=rule-window, is not
#    Ready for one rule window, and then answers through the aggregator as A does.
# 7. Resource metrics (resource-metrics.sh): deploy/ plus components/resource-metrics applied; a
#    kubelet-shaped exporter over TLS behind a real Node object, scraped directly by Ringtail
#    (role node, jobs from `scrape_config_files`); `kubectl top pod/node` and the raw
#    metrics.k8s.io API show the values it serves, and a Resource-metric (cpu Utilization) HPA
#    scales 1 → 4 → 1.
# 8. Discovery roles (discovery.sh): endpoints, endpointslice (v1beta1 here), ingress and pod with
#    attach_metadata and a field selector, each compared with vmagent 1.79 discovering the same
#    objects (the targets' labels before relabeling, from both /api/v1/targets).
# 9. The scenarios of deploy/examples/ (scenarios.sh), beside the steps above: Seldon Model and
#    Server custom resources on infer_rps, Istio's requests_per_second and DCGM's GPU
#    utilisation as Pods metrics, Object metrics on a Service through v2beta1 and v2beta2 HPAs,
#    and a dotted metric name (renamed by a rule, then received under its UTF-8 name over
#    remote-write 2.0), each scaled 1 -> 4 -> 1 with its reaction times printed.
# Prints "N passed, M failed" and exits non-zero when anything failed. Needs root (netns).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ringtail="$(realpath "${1:?usage: run.sh RINGTAIL_BINARY [CONTROL_PLANE_BIN_DIR]}")"
bin_dir="${2:-}"
if [ -z "$bin_dir" ]; then bin_dir="$("$here/build-control-plane.sh" | tail -n1)"; fi

work="$(mktemp -d /tmp/ringtail-e2e.XXXXXX)"
cp_dir="$work/control-plane"
netns="rt-e2e-$$"
veth_host="rte$$h"; veth_ns="rte$$n"
veth_host="${veth_host:0:15}"; veth_ns="${veth_ns:0:15}"
netns_b="rt-e2eb-$$"
veth_host_b="rtb$$h"; veth_ns_b="rtb$$n"
veth_host_b="${veth_host_b:0:15}"; veth_ns_b="${veth_ns_b:0:15}"
# A /30 in 10.251.0.0/16 that no interface here uses yet: a run killed with SIGKILL leaves its
# veth behind, and the next run must not share (and lose) its address.
free_subnet() {
  local used third
  used="$(ip -o -4 addr show | awk '{print $4}')"
  for third in $(seq 0 255); do
    for fourth in $(seq 0 4 252); do
      if ! grep -q "^10\.251\.$third\.$((fourth + 1))/" <<<"$used" \
        && ! grep -q "^10\.251\.$third\.$((fourth + 2))/" <<<"$used"; then
        echo "10.251.$third.$fourth"; return 0
      fi
    done
  done
  return 1
}
app_ns=e2e
push_port=19101   # the page vmagent scrapes and remote-writes to Ringtail
pod_port=19102    # the page Ringtail scrapes through Kubernetes pod discovery
pids=()
passed=0
failed=0

log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
pass() { passed=$((passed + 1)); log "PASS: $*"; }
fail() { failed=$((failed + 1)); log "FAIL: $*"; }

cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  "$here/control-plane.sh" down "$cp_dir" >/dev/null 2>&1
  ip netns del "$netns" 2>/dev/null
  ip link del "$veth_host" 2>/dev/null
  ip netns del "$netns_b" 2>/dev/null
  ip link del "$veth_host_b" 2>/dev/null
  if [ "$failed" -gt 0 ] || [ "${KEEP_E2E:-}" = 1 ]; then
    log "logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

kc() { kubectl --kubeconfig "$cp_dir/admin.kubeconfig" "$@"; }

wait_until() { # wait_until SECONDS COMMAND... — true once COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# --- test hosts: network namespaces behind veth pairs ----------------------------------------
# Sets host_ip/ns_ip-style variables through the names given (bash has no tuples).
make_test_host() { # NETNS VETH_HOST VETH_NS HOST_VAR NS_VAR
  local subnet host ns
  subnet="$(free_subnet)" || { echo "no free /30 in 10.251.0.0/16" >&2; exit 1; }
  host="${subnet%.*}.$((${subnet##*.} + 1))"
  ns="${subnet%.*}.$((${subnet##*.} + 2))"
  ip netns add "$1"
  ip link add "$2" type veth peer name "$3"
  ip link set "$3" netns "$1"
  ip addr add "$host/30" dev "$2"
  ip link set "$2" up
  ip netns exec "$1" ip addr add "$ns/30" dev "$3"
  ip netns exec "$1" ip link set "$3" up
  ip netns exec "$1" ip link set lo up
  # The control plane and the exporters listen on test host A's host-side address; every test
  # host reaches this machine's addresses through its own veth.
  ip netns exec "$1" ip route add default via "$host"
  printf -v "$4" '%s' "$host"
  printf -v "$5" '%s' "$ns"
}
make_test_host "$netns" "$veth_host" "$veth_ns" host_ip ns_ip
log "test host A: network namespace $netns ($ns_ip) joined to $host_ip"
make_test_host "$netns_b" "$veth_host_b" "$veth_ns_b" host_ip_b ns_ip_b
log "test host B: network namespace $netns_b ($ns_ip_b) joined to $host_ip_b"

# --- control plane ----------------------------------------------------------------------------
log "starting the control plane from $bin_dir"
"$here/control-plane.sh" up "$cp_dir" "$bin_dir" "$host_ip"
api_port="$(cat "$cp_dir/api-port")"

# --- the shipped manifests --------------------------------------------------------------------
log "applying the manifests rendered by kubectl kustomize deploy/"
# The test control plane is Kubernetes 1.20, which predates policy/v1 (1.21): the
# PodDisruptionBudget goes in as the policy/v1beta1 of its day, unchanged otherwise.
kubectl kustomize "$repo/deploy" | sed 's#^apiVersion: policy/v1$#apiVersion: policy/v1beta1#' >"$work/rendered.yaml"
if kc apply -f "$work/rendered.yaml" >"$work/apply.log" 2>&1; then
  pass "the rendered deploy/ manifests apply to kube-apiserver $(kc version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
else
  fail "kubectl apply of the rendered manifests"; cat "$work/apply.log"; exit 1
fi
source "$here/resource-metrics.sh"
rm_apply_overlay
# What the endpoints controller does from the replicas' readiness: the Service lists the
# addresses of the Ready ones.
set_endpoints() { # IP...
  local addresses="" ip
  for ip in "$@"; do addresses="$addresses{ip: $ip}, "; done
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata: {name: ringtail, namespace: ringtail}
subsets:
  - addresses: [${addresses%, }]
    ports: [{name: https, port: 6443}, {name: http, port: 9201}]
EOF
}
set_endpoints "$ns_ip" "$ns_ip_b"
kc -n ringtail get configmap ringtail-config -o jsonpath='{.data.config\.yaml}' >"$work/config.yaml"
kc -n ringtail get configmap ringtail-config -o jsonpath='{.data.adapter\.yaml}' >"$work/adapter.yaml"

# The ServiceAccount's token (the 1.20 token controller writes it into a Secret).
service_account_token() { # NAMESPACE NAME
  local secret
  secret="$(kc -n "$1" get serviceaccount "$2" -o jsonpath='{.secrets[0].name}')" || return 1
  [ -n "$secret" ] || return 1
  kc -n "$1" get secret "$secret" -o jsonpath='{.data.token}' | base64 -d
}
wait_until 60 service_account_token ringtail ringtail || { fail "no token for ServiceAccount ringtail/ringtail"; exit 1; }
ringtail_token="$(service_account_token ringtail ringtail)"
cat >"$work/ringtail.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {certificate-authority: $cp_dir/ca.crt, server: "https://$host_ip:$api_port"}}]
users: [{name: ringtail, user: {token: "$ringtail_token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: ringtail}}]
current-context: e2e
EOF
rm_prepare_config   # the kubelet jobs in a scrape_config_files file, certificates, token
source "$here/discovery.sh"
sd_prepare_config   # the discovery roles' jobs, for Ringtail and for a vmagent beside it
source "$here/scenarios.sh"
sc_prepare_config   # Seldon's CRDs; adapter.yaml = deploy/examples' rules, then the shipped ones

# --- Ringtail in the test hosts ---------------------------------------------------------------
start_replica() { # NETNS IP DATA_DIR LOG [FLAG...] — appends the pid to pids; sets started_pid
  local host_netns="$1" ip="$2" data="$3" log_file="$4"
  shift 4
  ip netns exec "$host_netns" env RINGTAIL_LOG="${RINGTAIL_LOG:-info}" "$ringtail" serve \
    --data-dir "$data" --listen "$ip:9201" --secure-listen "$ip:6443" \
    --config "$work/config.yaml" --adapter-config "$work/adapter.yaml" \
    --kubeconfig "$work/ringtail.kubeconfig" "$@" >>"$log_file" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
# A fresh cluster has no data a window could be missing: the first start is Ready at once. The
# restart below runs with the shipped --ready-after=rule-window.
log "starting Ringtail replica A at $ns_ip and B at $ns_ip_b (HTTP :9201, metrics APIs :6443)"
start_replica "$netns" "$ns_ip" "$work/data" "$work/ringtail.log"
start_replica "$netns_b" "$ns_ip_b" "$work/data-b" "$work/ringtail-b.log"
ringtail_b_pid="$started_pid"
if wait_until 60 curl -sf "http://$ns_ip:9201/-/ready" && wait_until 60 curl -sf "http://$ns_ip_b:9201/-/ready"; then
  pass "both Ringtail replicas are ready inside their test hosts, connected with the ringtail ServiceAccount's token"
else
  fail "Ringtail did not become ready"; tail -30 "$work/ringtail.log" "$work/ringtail-b.log"; exit 1
fi
if wait_until 90 kc get --raw /apis/custom.metrics.k8s.io/v1beta2; then
  pass "kube-aggregator serves custom.metrics.k8s.io/v1beta2 from Ringtail (APIService Available)"
else
  fail "APIService v1beta2.custom.metrics.k8s.io never became available"
  kc get apiservice v1beta2.custom.metrics.k8s.io -o yaml | tail -15
fi
rm_start   # the test kubelet, its Node, pods on it, the cpu HPA; metrics.k8s.io available
sd_objects # a Service with Endpoints (mirrored into EndpointSlices), pods, an Ingress; vmagent

# --- metric sources ---------------------------------------------------------------------------
echo >"$work/push.spec"
echo >"$work/pod.spec"
python3 "$here/exporter.py" "$host_ip" "$push_port" "$work/push.spec" &
pids+=($!)
python3 "$here/exporter.py" "$host_ip" "$pod_port" "$work/pod.spec" &
pids+=($!)
cat >"$work/vmagent.yaml" <<EOF
scrape_configs:
  - job_name: inference-push
    scrape_interval: 1s
    honor_labels: true
    static_configs: [{targets: ["$host_ip:$push_port"]}]
EOF
sc_vmagent_job >>"$work/vmagent.yaml"
# Both replicas receive the same stream (what deploy/service.yaml tells senders to do).
vmagent -promscrape.config "$work/vmagent.yaml" -remoteWrite.url "http://$ns_ip:9201/api/v1/write" \
  -remoteWrite.url "http://$ns_ip_b:9201/api/v1/write" \
  -remoteWrite.flushInterval 1s -remoteWrite.tmpDataPath "$work/vmagent-data" -httpListenAddr 127.0.0.1:0 \
  >"$work/vmagent.log" 2>&1 &
pids+=($!)

# --- workloads and HPAs -----------------------------------------------------------------------
deployment() { # NAME
  cat <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $app_ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec: {containers: [{name: main, image: "e2e/$1:1"}]}
EOF
}
hpa() { # NAME METRIC_YAML
  cat <<EOF
---
apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata: {name: $1, namespace: $app_ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: $1}
  minReplicas: 1
  maxReplicas: 8
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
  metrics:
$2
EOF
}
{
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$app_ns"
  deployment inference
  deployment web
  deployment worker
  cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $app_ns}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-exporter
  namespace: $app_ns
  labels: {role: exporter}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "$pod_port"}
spec: {containers: [{name: exporter, image: "e2e/exporter:1", ports: [{containerPort: $pod_port}]}]}
EOF
  hpa inference '    - type: Pods
      pods:
        metric: {name: ei_scale_ratio}
        target: {type: AverageValue, averageValue: "1"}'
  hpa web '    - type: Object
      object:
        describedObject: {apiVersion: v1, kind: Service, name: web}
        metric: {name: http_requests}
        target: {type: AverageValue, averageValue: "10"}'
  hpa worker '    - type: External
      external:
        metric: {name: queue_messages_ready, selector: {matchLabels: {queue: jobs}}}
        target: {type: AverageValue, averageValue: "10"}'
} >"$work/workloads.yaml"
kc apply -f "$work/workloads.yaml" >/dev/null
sc_start   # the scenarios' objects and HPAs (deploy/examples), their metric sources and driver

# The driver: marks new pods Running/Ready (there is no kubelet) and writes the metric values the
# current phase asks for. ei_scale_ratio is the per-pod share of a total "load", so the Pods HPA's
# average times the pod count is the load: 4 asks for 4 replicas, 1 for 1.
echo 1 >"$work/load"
drive() {
  while true; do
    local load rows pods=() name phase
    load="$(cat "$work/load")"
    rows="$(kc -n "$app_ns" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null || true)"
    while read -r name phase deleting; do
      [ -n "$name" ] || continue
      [ -z "$deleting" ] || continue
      if [ "$phase" != Running ]; then
        kc -n "$app_ns" patch pod "$name" --subresource=status --type=merge -p \
          "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$host_ip\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null 2>&1 || true
      fi
      case "$name" in inference-*) pods+=("$name") ;; esac
    done <<<"$rows"
    {
      for name in "${pods[@]}"; do
        printf 'gauge ei_scale_ratio{namespace="%s",pod="%s"} %s\n' "$app_ns" "$name" \
          "$(python3 -c "print($load / ${#pods[@]})")"
      done
      printf 'gauge queue_messages_ready{namespace="%s",queue="jobs"} %s\n' "$app_ns" "$((load * 10))"
      printf 'gauge queue_messages_ready{namespace="%s",queue="other"} 1000\n' "$app_ns"
    } >"$work/push.spec.new"
    mv "$work/push.spec.new" "$work/push.spec"
    printf 'counter http_requests_total{service="web"} %s\n' "$((load * 10))" >"$work/pod.spec.new"
    mv "$work/pod.spec.new" "$work/pod.spec"
    sleep 1
  done
}
drive &
pids+=($!)

replicas() { kc -n "$app_ns" get deployment "$1" -o jsonpath='{.status.replicas}'; }
replicas_are() { [ "$(replicas "$1")" = "$2" ]; }
hpa_reads_values() { # every HPA has a current metric value (read as autoscaling/v2beta2)
  kc get --raw "/apis/autoscaling/v2beta2/namespaces/$app_ns/horizontalpodautoscalers" | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
sys.exit(0 if len(items) == 3 and all(i["status"].get("currentMetrics") for i in items) else 1)'
}

# Start at rest: every HPA has a value and one replica.
if wait_until 120 hpa_reads_values; then
  pass "all three HPAs read their metric from Ringtail (Pods, Object, External)"
else
  fail "the HPAs did not all get a metric value"; kc -n "$app_ns" describe hpa | grep -A3 -i 'warning\|condition' | head -40
fi
for d in inference web worker; do
  replicas_are "$d" 1 || fail "$d does not start at 1 replica (has $(replicas "$d"))"
done
rm_hpa_at_rest
# The scenarios run beside everything below; sc_collect waits for them at the end.
sc_run &
sc_run_pid=$!
pids+=("$sc_run_pid")

scale_and_check() { # LOAD EXPECTED TIMEOUT — all three HPAs watched at once, each timed
  local load="$1" expected="$2" timeout="$3" start now d pending=(inference web worker) still
  echo "$load" >"$work/load"
  start="$(date +%s.%N)"
  log "load set to $load: expecting $expected replicas"
  while [ "${#pending[@]}" -gt 0 ]; do
    now="$(date +%s.%N)"
    still=()
    for d in "${pending[@]}"; do
      if replicas_are "$d" "$expected"; then
        local took
        took="$(python3 -c "print(f'{$now - $start:.1f}')")"
        echo "$d $load $took" >>"$work/scale-times.txt"
        pass "$d scaled to $expected replicas ${took} s after the metric changed"
      else
        still+=("$d")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    if [ "${#pending[@]}" -gt 0 ] && python3 -c "import sys; sys.exit(0 if $now - $start > $timeout else 1)"; then
      for d in "${pending[@]}"; do
        fail "$d did not reach $expected replicas within ${timeout}s (has $(replicas "$d"))"
        kc -n "$app_ns" describe hpa "$d" | tail -12
      done
      return
    fi
    sleep 0.5
  done
}

# --- availability: replica B crashes as the HPAs scale up -------------------------------------
metric_path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/$app_ns/pods/%2A/ei_scale_ratio?labelSelector=app%3Dinference"
external_path="/apis/external.metrics.k8s.io/v1beta1/namespaces/$app_ns/queue_messages_ready?labelSelector=queue%3Djobs"
rm_raise_load   # the cpu HPA scales up alongside; checked in rm_checks
kill -9 "$ringtail_b_pid"
# Its readiness probe fails and the endpoints controller takes it out of the Service (in a
# cluster after periodSeconds × failureThreshold of the probe; here at once).
set_endpoints "$ns_ip"
log "replica B killed (-9) as the load rises; the Service lists replica A only"
probe_metrics_api() { # one line a second: ok, or why kubectl get --raw failed
  while true; do
    if kc get --raw "$metric_path" >/dev/null 2>"$work/probe.err"; then echo ok; else echo "failed: $(head -c 300 "$work/probe.err")"; fi
    sleep 1
  done
}
probe_metrics_api >"$work/probes.txt" &
probe_pid=$!
pids+=("$probe_pid")
scale_and_check 4 4 150
kill "$probe_pid"
if [ "$(grep -c '^ok$' "$work/probes.txt")" -ge 5 ] && ! grep -q '^failed' "$work/probes.txt"; then
  pass "kubectl get --raw answered all $(grep -c '^ok$' "$work/probes.txt") requests made while one replica was dead"
else
  fail "the metrics API did not keep answering with one replica dead: $(grep -m3 '^failed' "$work/probes.txt")"
fi
# B restarts on its volume with the shipped flag: not Ready until one rule window has passed.
window_s="$(python3 - "$work/adapter.yaml" <<'PY'
import re, sys
units = {"s": 1, "m": 60, "h": 3600}
ranges = re.findall(r"\[(\d+)([smh])[\]:]", open(sys.argv[1]).read())
print(max((int(n) * units[u] for n, u in ranges), default=0))
PY
)"
b_restarted=$SECONDS
start_replica "$netns_b" "$ns_ip_b" "$work/data-b" "$work/ringtail-b.log" --ready-after=rule-window
b_reports_waiting() {
  [ "$(curl -s -o "$work/b-ready.txt" -w '%{http_code}' "http://$ns_ip_b:9201/-/ready")" = 503 ] \
    && grep -q 'waits' "$work/b-ready.txt"
}
if [ "$window_s" -gt 0 ] && wait_until 30 b_reports_waiting; then
  pass "restarted replica B is not Ready while its ${window_s}s rule window fills: $(head -c 160 "$work/b-ready.txt")"
else
  fail "restarted replica B does not wait for its rule window (${window_s}s): $(head -c 300 "$work/b-ready.txt")"
fi
log "kubectl get hpa:"
kc -n "$app_ns" get hpa | tee "$work/get-hpa.txt"
if awk 'NR > 1 && $3 ~ /unknown/ {bad = 1} END {exit bad}' "$work/get-hpa.txt" && [ "$(wc -l <"$work/get-hpa.txt")" -eq 4 ]; then
  pass "kubectl get hpa shows current values for all three HPAs"
else
  fail "kubectl get hpa shows <unknown> values"
fi
scale_and_check 1 1 150

# --- authentication and authorization of every listener -------------------------------------
source "$here/auth-matrix.sh"

if kc get --raw "$metric_path" >"$work/through-aggregator.json" \
  && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["kind"]=="MetricValueList" and len(d["items"])==1' "$work/through-aggregator.json"; then
  pass "kubectl get --raw through the aggregator returns one MetricValue per inference pod"
else
  fail "kubectl get --raw through the aggregator: $(head -c 300 "$work/through-aggregator.json")"
fi

# ownerAggregation: the Deployment's value is the average over the pods it owns (Pod →
# ReplicaSet → Deployment through owner references in Ringtail's watched caches).
owner_path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/$app_ns/deployments.apps/inference/ei_scale_ratio"
owner_value_is_pod_average() {
  kc get --raw "$owner_path" >"$work/owner.json" && kc get --raw "$metric_path" >"$work/pods.json" \
    && python3 - "$work/owner.json" "$work/pods.json" <<'PY'
import json, sys
owner, pods = (json.load(open(p)) for p in sys.argv[1:3])
def number(q):
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)
[item] = owner["items"]
assert item["describedObject"]["kind"] == "Deployment" and item["describedObject"]["name"] == "inference", item
values = [number(i["value"]) for i in pods["items"]]
assert values and abs(number(item["value"]) - sum(values) / len(values)) < 1e-3, (item, values)
PY
}
# The first request starts the ReplicaSet watch (answered 503 until it has synced): retry briefly.
if wait_until 30 owner_value_is_pod_average; then
  pass "deployments.apps/inference/ei_scale_ratio answers the average of the pods it owns (ownerAggregation)"
else
  fail "owner aggregation through the aggregator: $(head -c 300 "$work/owner.json")"
fi

# B Ready after its window, then answers through the aggregator as A does.
if wait_until 300 curl -sf "http://$ns_ip_b:9201/-/ready"; then
  waited=$((SECONDS - b_restarted))
  if [ "$waited" -ge "$window_s" ]; then
    pass "restarted replica B became Ready ${waited}s after its start (rule window ${window_s}s)"
  else
    fail "restarted replica B became Ready after ${waited}s, before its ${window_s}s rule window"
  fi
else
  fail "restarted replica B never became Ready"; tail -20 "$work/ringtail-b.log"
fi
answers_through() { # IP PREFIX — the metrics APIs' answers with only IP behind the Service
  set_endpoints "$1"
  sleep 2
  kc get --raw "$metric_path" >"$2-pods.json" && kc get --raw "$external_path" >"$2-external.json"
}
if answers_through "$ns_ip_b" "$work/answer-b" && answers_through "$ns_ip" "$work/answer-a" \
  && python3 - "$work/answer-a" "$work/answer-b" <<'PY'
import json, sys
def values(prefix):
    out = {}
    for kind in ("pods", "external"):
        for item in json.load(open(f"{prefix}-{kind}.json"))["items"]:
            key = (kind, item.get("describedObject", {}).get("name") or json.dumps(item.get("metricLabels"), sort_keys=True))
            out[key] = item["value"]
    return out
a, b = values(sys.argv[1]), values(sys.argv[2])
assert a and a == b, (a, b)
PY
then
  pass "replicas A and B give the same Pods and External metric values through the aggregator"
else
  fail "replicas A and B answer differently: $(cat "$work/answer-a-pods.json" "$work/answer-b-pods.json" 2>/dev/null | head -c 600)"
fi
set_endpoints "$ns_ip" "$ns_ip_b"

# --- resource metrics: kubectl top, the raw API, the cpu HPA ----------------------------------
rm_checks
sd_checks
sc_collect "$sc_run_pid"

log "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
