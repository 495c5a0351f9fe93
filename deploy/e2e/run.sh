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
# 3. Applies the manifests `kubectl kustomize deploy/` renders (the Deployment stays Pending: no
#    kubelet runs here) plus Endpoints pointing the `ringtail` Service at the namespace's address,
#    and feeds Ringtail the shipped ConfigMap's config.yaml and adapter.yaml.
# 4. Creates Deployments and autoscaling/v2beta2 HPAs for a Pods metric (ei_scale_ratio,
#    AverageValue 1), an Object metric on a Service (http_requests) and an External metric
#    (queue_messages_ready). Pods get no kubelet either: a driver loop marks them Running/Ready
#    through the status subresource.
# 5. Drives the values — ei_scale_ratio and queue_messages_ready through vmagent remote-writing to
#    Ringtail, http_requests_total from a pod Ringtail discovers and scrapes itself — and asserts
#    1 → 4 → 1 replicas for each HPA, `kubectl get hpa` showing values, and the authentication
#    and authorization matrix of every listener (auth-matrix.sh).
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
subnet="$(free_subnet)" || { echo "no free /30 in 10.251.0.0/16" >&2; exit 1; }
host_ip="${subnet%.*}.$((${subnet##*.} + 1))"
ns_ip="${subnet%.*}.$((${subnet##*.} + 2))"
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

# --- test host: a network namespace behind a veth pair --------------------------------------
log "creating network namespace $netns ($ns_ip) joined to $host_ip"
ip netns add "$netns"
ip link add "$veth_host" type veth peer name "$veth_ns"
ip link set "$veth_ns" netns "$netns"
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip netns exec "$netns" ip addr add "$ns_ip/30" dev "$veth_ns"
ip netns exec "$netns" ip link set "$veth_ns" up
ip netns exec "$netns" ip link set lo up

# --- control plane ----------------------------------------------------------------------------
log "starting the control plane from $bin_dir"
"$here/control-plane.sh" up "$cp_dir" "$bin_dir" "$host_ip"
api_port="$(cat "$cp_dir/api-port")"

# --- the shipped manifests --------------------------------------------------------------------
log "applying the manifests rendered by kubectl kustomize deploy/"
kubectl kustomize "$repo/deploy" >"$work/rendered.yaml"
if kc apply -f "$work/rendered.yaml" >"$work/apply.log" 2>&1; then
  pass "the rendered deploy/ manifests apply to kube-apiserver $(kc version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
else
  fail "kubectl apply of the rendered manifests"; cat "$work/apply.log"; exit 1
fi
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata: {name: ringtail, namespace: ringtail}
subsets:
  - addresses: [{ip: $ns_ip}]
    ports: [{name: https, port: 6443}, {name: http, port: 9201}]
EOF
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

# --- Ringtail in the test host ----------------------------------------------------------------
log "starting Ringtail at $ns_ip (HTTP :9201, metrics APIs :6443)"
ip netns exec "$netns" env RINGTAIL_LOG="${RINGTAIL_LOG:-info}" "$ringtail" serve \
  --data-dir "$work/data" --listen "$ns_ip:9201" --secure-listen "$ns_ip:6443" \
  --config "$work/config.yaml" --adapter-config "$work/adapter.yaml" \
  --kubeconfig "$work/ringtail.kubeconfig" >"$work/ringtail.log" 2>&1 &
pids+=($!)
if wait_until 60 curl -sf "http://$ns_ip:9201/-/ready"; then
  pass "Ringtail is ready inside the test host, connected with the ringtail ServiceAccount's token"
else
  fail "Ringtail did not become ready"; tail -30 "$work/ringtail.log"; exit 1
fi
if wait_until 90 kc get --raw /apis/custom.metrics.k8s.io/v1beta2; then
  pass "kube-aggregator serves custom.metrics.k8s.io/v1beta2 from Ringtail (APIService Available)"
else
  fail "APIService v1beta2.custom.metrics.k8s.io never became available"
  kc get apiservice v1beta2.custom.metrics.k8s.io -o yaml | tail -15
fi

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
vmagent -promscrape.config "$work/vmagent.yaml" -remoteWrite.url "http://$ns_ip:9201/api/v1/write" \
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

scale_and_check 4 4 150
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

metric_path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/$app_ns/pods/%2A/ei_scale_ratio?labelSelector=app%3Dinference"
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

log "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
