# The resource metrics API (metrics.k8s.io) from Ringtail, against the real control plane. Sourced
# by run.sh, which calls its steps where they belong; uses run.sh's variables (work, repo, here,
# host_ip, ns_ip, ns_ip_b, ringtail_token, pids) and helpers (pass, fail, log, kc, wait_until).
#
# - rm_apply_overlay: an overlay adding deploy/components/resource-metrics to deploy/ renders and
#   applies (APIService v1beta1.metrics.k8s.io, ConfigMap ringtail-scrape-kubelet, the
#   StatefulSet mount); deploy/ alone claims no metrics.k8s.io.
# - rm_prepare_config: a kubelet's certificates (a test CA; the serving certificate names the
#   node, not its address) and the component's kubelet jobs pointed straight at it (https,
#   tls_config with server_name and a client certificate, the ringtail ServiceAccount's token as
#   authorization.credentials_file) in a file the shipped config's `scrape_config_files` glob
#   reads, rewritten to this run's directory.
# - rm_start: kubelet.py serves /metrics/cadvisor and /metrics/resource over TLS (client
#   certificate required, bearer token checked); a Node object whose status points at it, so
#   Ringtail discovers it with role node and scrapes it; pods on that node, and a driver that marks
#   them Running (startTime and Ready ten minutes ago, as the HPA wants of a pod whose cpu it
#   trusts), removes the deleted ones (the kubelet's part) and writes each container's cpu rate
#   and memory for kubelet.py. Then the APIService must become Available.
# - rm_hpa_at_rest / rm_raise_load: the Resource-metric HPA reads cpu at 1 replica, then the
#   load rises while run.sh goes on with its own scaling.
# - rm_checks: kubectl top pod -n / -A / --containers, kubectl top node, kubectl get --raw of one
#   PodMetrics and of a missing pod (404), and the HPA at 4 replicas, then back to 1.
#
# The values: the shipped adapter.yaml's resourceRules take cpu as a rate over 1m of cAdvisor's
# counter. kubelet.py stamps samples with its last housekeeping (every 1 s), so the newest sample
# is up to ~2 s old when a query runs, and rate() then extrapolates only half an interval towards
# the window's end: the value falls short by up to ~(2 s - 0.5 s) / 60 s, 2.5 % (seen: 294m for
# 300m). cpu is compared within 5 % (+1m for rounding), memory (a gauge) exactly; the pause
# container's 2m is checked by its absence from --containers and the raw API.

rm_dir="$work/resource-metrics"
rm_ns=e2e-resource
rm_node=e2e-node-1
kubelet_port=19103
mkdir -p "$rm_dir"

rm_apply_overlay() {
  local overlay="$rm_dir/overlay" base
  mkdir -p "$overlay"
  # An overlay lives outside deploy/ (kustomize refuses a base that contains its overlay).
  base="$(realpath --relative-to="$overlay" "$repo/deploy")"
  printf 'resources: [%s]\ncomponents: [%s/components/resource-metrics]\n' "$base" "$base" >"$overlay/kustomization.yaml"
  if grep -q '^  name: v1beta1.metrics.k8s.io$' "$work/rendered.yaml"; then
    fail "deploy/ alone registers v1beta1.metrics.k8s.io (it must not: metrics-server owns it where it runs)"
  fi
  if kubectl kustomize "$overlay" | sed 's#^apiVersion: policy/v1$#apiVersion: policy/v1beta1#' >"$work/rendered-resource-metrics.yaml" \
    && kc apply -f "$work/rendered-resource-metrics.yaml" >>"$work/apply.log" 2>&1 \
    && kc get apiservice v1beta1.metrics.k8s.io >/dev/null 2>&1 \
    && [ "$(kc -n ringtail get statefulset ringtail -o jsonpath='{.spec.template.spec.containers[0].volumeMounts[?(@.name=="scrape-kubelet")].mountPath}')" = /etc/ringtail-scrape.d ] \
    && kc -n ringtail get configmap ringtail-scrape-kubelet -o jsonpath='{.data.kubelet\.yaml}' | grep -q 'job_name: kubelet-cadvisor'; then
    pass "deploy/ plus components/resource-metrics renders and applies: APIService v1beta1.metrics.k8s.io, ConfigMap ringtail-scrape-kubelet (kubelet.yaml) mounted by the StatefulSet at /etc/ringtail-scrape.d; deploy/ alone has no metrics.k8s.io"
  else
    fail "the resource-metrics overlay does not render or apply"; tail -5 "$work/apply.log"
  fi
}

rm_sign() { # NAME SUBJECT EXT — a key and certificate from the test kubelet CA
  openssl req -new -newkey rsa:2048 -nodes -keyout "$rm_dir/$1.key" -subj "$2" -out "$rm_dir/$1.csr" 2>/dev/null
  openssl x509 -req -in "$rm_dir/$1.csr" -CA "$rm_dir/ca.crt" -CAkey "$rm_dir/ca.key" -CAcreateserial \
    -days 2 -extfile <(printf '%s\n' "$3") -out "$rm_dir/$1.crt" 2>/dev/null
}

rm_prepare_config() {
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$rm_dir/ca.key" -subj "/CN=e2e-kubelet-ca" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$rm_dir/ca.crt" 2>/dev/null
  rm_sign kubelet "/CN=$rm_node" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$rm_node"
  rm_sign ringtail-client "/O=system:monitoring/CN=ringtail" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  printf '%s' "$ringtail_token" >"$rm_dir/token"
  mkdir -p "$work/scrape.d"
  # deploy/components/resource-metrics/kubelet.yaml's jobs, straight at the kubelet instead of
  # through the API server's node proxy (this control plane has no kubelet client certificate).
  # Every second, so the 1m rate window fills within the run.
  cat >"$work/scrape.d/kubelet.yaml" <<EOF
scrape_configs:
  - job_name: kubelet
    scheme: https
    scrape_interval: 5s
    tls_config: &kubelet_tls
      ca_file: $rm_dir/ca.crt
      cert_file: $rm_dir/ringtail-client.crt
      key_file: $rm_dir/ringtail-client.key
      server_name: $rm_node
    authorization: &kubelet_auth {credentials_file: $rm_dir/token}
    kubernetes_sd_configs: [{role: node}]
    relabel_configs: &node_labels
      - {action: labelmap, regex: __meta_kubernetes_node_label_(.+)}
      - {target_label: node, source_labels: [__meta_kubernetes_node_name]}
  - job_name: kubelet-cadvisor
    scheme: https
    metrics_path: /metrics/cadvisor
    honor_timestamps: true
    scrape_interval: 1s
    scrape_timeout: 1s
    tls_config: *kubelet_tls
    authorization: *kubelet_auth
    kubernetes_sd_configs: [{role: node}]
    relabel_configs: *node_labels
  - job_name: kubelet-resource
    scheme: https
    metrics_path: /metrics/resource
    scrape_interval: 1s
    scrape_timeout: 1s
    tls_config: *kubelet_tls
    authorization: *kubelet_auth
    kubernetes_sd_configs: [{role: node}]
    relabel_configs: *node_labels
EOF
  echo "not a scrape file" >"$work/scrape.d/README.txt"   # outside the *.yaml glob
  sed -i "s#/etc/ringtail-scrape.d/\*\.yaml#$work/scrape.d/*.yaml#" "$work/config.yaml"
  grep -q "scrape_config_files: \[$work/scrape.d/\*.yaml\]" "$work/config.yaml" \
    || fail "the shipped config.yaml has no scrape_config_files: [/etc/ringtail-scrape.d/*.yaml] to point at this run's kubelet jobs"
}

# The driver's part of the kubelet: which containers run where, and what each uses.
echo 0.02 >"$rm_dir/load"   # cores over all cpu-burner pods: 20 % of one pod's 100m request
rm_drive() {
  local ago verb ns name
  while true; do
    ago="$(date -u -d '10 minutes ago' +%Y-%m-%dT%H:%M:%SZ)"
    if kc get pods -A -o json >"$rm_dir/pods.json" 2>/dev/null; then
      python3 - "$rm_dir/pods.json" "$rm_dir/load" "$rm_ns" "$rm_node" "$rm_dir/state" "$rm_dir/burners.log" \
        >"$rm_dir/todo" <<'PY' || true
import json, os, sys, time
pods, load_file, mine, node, state, history = sys.argv[1:7]
items = json.load(open(pods))["items"]
load = float(open(load_file).read())
def running(p):
    return p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
burners = [p for p in items if p["metadata"]["namespace"] == mine
           and p["metadata"]["name"].startswith("cpu-burner-") and running(p)]
# What each container uses (cores, bytes): fixed for top-a, the load shared by the cpu-burner
# pods, a little for every other pod in the cluster.
fixed = {"main": (0.25, 200 << 20), "sidecar": (0.05, 64 << 20)}
lines = [f"node {node} 1.5 {3 << 30}"]
for p in items:
    ns, name = p["metadata"]["namespace"], p["metadata"]["name"]
    if ns == mine and p["metadata"].get("deletionTimestamp"):
        print("delete", ns, name)
        continue
    if ns == mine and (p["status"].get("phase") != "Running" or not p["status"].get("startTime")):
        print("run", ns, name)
    if not running(p):
        continue
    for c in p["spec"]["containers"]:
        if ns == mine and name == "top-a":
            cores, memory = fixed[c["name"]]
        elif ns == mine and name.startswith("cpu-burner-"):
            cores, memory = load / len(burners), 32 << 20
        else:
            cores, memory = 0.005, 16 << 20
        lines.append(f"container {ns} {name} {c['name']} {cores!r} {memory}")
with open(history, "a") as f:   # when the count of running cpu-burner pods changed
    f.write(f"{time.time():.1f} {len(burners)}\n")
with open(state + ".new", "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(state + ".new", state)
PY
      while read -r verb ns name; do
        case "$verb" in
          run)
            kc -n "$ns" patch pod "$name" --subresource=status --type=merge -p \
              "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$host_ip\",\"hostIP\":\"$host_ip\",\"startTime\":\"$ago\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"$ago\"}]}}" >/dev/null 2>&1 || true ;;
          delete)
            kc -n "$ns" delete pod "$name" --grace-period=0 --force --wait=false >/dev/null 2>&1 || true ;;
        esac
      done <"$rm_dir/todo"
    fi
    sleep 1
  done
}

rm_query() { # IP PROMQL — the result vector of an instant query as JSON
  curl -sf "http://$1:9201/api/v1/query" --data-urlencode "query=$2" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["data"]["result"]))'
}
rm_scraped_by() { # IP — both kubelet jobs up on that replica, with the node's root cgroup stored
  local up root
  up="$(rm_query "$1" "sum(up{job=~\"kubelet-cadvisor|kubelet-resource\",node=\"$rm_node\",instance=\"$rm_node\"})")" || return 1
  root="$(rm_query "$1" "container_cpu_usage_seconds_total{job=\"kubelet-cadvisor\",id=\"/\",node=\"$rm_node\"}")" || return 1
  python3 -c 'import json,sys; up, root = json.loads(sys.argv[1]), json.loads(sys.argv[2]); sys.exit(0 if up and up[0]["value"][1] == "2" and len(root) == 1 else 1)' "$up" "$root"
}

rm_start() {
  python3 "$here/kubelet.py" "$host_ip" "$kubelet_port" "$rm_dir/state" "$rm_dir/kubelet.crt" "$rm_dir/kubelet.key" \
    "$rm_dir/ca.crt" "$rm_dir/token" >"$rm_dir/kubelet.log" 2>&1 &
  pids+=($!)
  local now
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $rm_node
  labels: {kubernetes.io/hostname: $rm_node, kubernetes.io/os: linux}
EOF
  kc patch node "$rm_node" --subresource=status --type=merge -p "{\"status\":{
    \"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$host_ip\"},{\"type\":\"Hostname\",\"address\":\"$rm_node\"}],
    \"daemonEndpoints\":{\"kubeletEndpoint\":{\"Port\":$kubelet_port}},
    \"capacity\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"pods\":\"110\"},\"allocatable\":{\"cpu\":\"4\",\"memory\":\"8Gi\",\"pods\":\"110\"},
    \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"lastHeartbeatTime\":\"$now\",\"lastTransitionTime\":\"$now\"}]}}" >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $rm_ns}
---
apiVersion: v1
kind: Pod
metadata: {name: top-a, namespace: $rm_ns, labels: {app: top}}
spec:
  nodeName: $rm_node
  containers: [{name: main, image: "e2e/main:1"}, {name: sidecar, image: "e2e/sidecar:1"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cpu-burner, namespace: $rm_ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: cpu-burner}}
  template:
    metadata: {labels: {app: cpu-burner}}
    spec:
      nodeName: $rm_node
      containers: [{name: main, image: "e2e/cpu-burner:1", resources: {requests: {cpu: 100m}}}]
---
apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata: {name: cpu-burner, namespace: $rm_ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: cpu-burner}
  minReplicas: 1
  maxReplicas: 8
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
EOF
  rm_drive &
  pids+=($!)

  wait_until 30 grep -q '^node ' "$rm_dir/state" || fail "the driver wrote no kubelet state"
  local k=(--resolve "$rm_node:$kubelet_port:$host_ip" --cacert "$rm_dir/ca.crt" -s -o "$rm_dir/curl.out" -w '%{http_code}')
  local url="https://$rm_node:$kubelet_port/metrics/cadvisor" no_cert no_token both
  no_cert="$(curl "${k[@]}" -H "Authorization: Bearer $ringtail_token" "$url" 2>/dev/null || true)"
  no_token="$(curl "${k[@]}" --cert "$rm_dir/ringtail-client.crt" --key "$rm_dir/ringtail-client.key" "$url" 2>/dev/null || true)"
  both="$(curl "${k[@]}" --cert "$rm_dir/ringtail-client.crt" --key "$rm_dir/ringtail-client.key" \
    -H "Authorization: Bearer $ringtail_token" "$url" 2>/dev/null || true)"
  if [ "$no_cert" = 000 ] && [ "$no_token" = 401 ] && [ "$both" = 200 ] && grep -q '^container_cpu_usage_seconds_total{.*id="/"' "$rm_dir/curl.out"; then
    pass "the test kubelet (Node $rm_node at $host_ip:$kubelet_port) fails the TLS handshake without a client certificate of its CA, answers 401 without the bearer token and 200 with both"
  else
    fail "the test kubelet answers: no client certificate $no_cert, no token $no_token, both $both"
  fi
  if wait_until 60 rm_scraped_by "$ns_ip" && wait_until 30 rm_scraped_by "$ns_ip_b"; then
    pass "both replicas discover Node $rm_node (role node) and scrape its kubelet directly over TLS (server_name, client certificate, token file), jobs from scrape_config_files: up=1 for kubelet-cadvisor and kubelet-resource"
  else
    fail "Ringtail does not scrape the test kubelet: $(curl -s "http://$ns_ip:9201/api/v1/targets" | head -c 600)"
  fi
  if wait_until 90 kc get --raw /apis/metrics.k8s.io/v1beta1 \
    && kc get --raw /apis/metrics.k8s.io/v1beta1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["kind"] == "APIResourceList" and {r["name"] for r in d["resources"]} >= {"pods", "nodes"}, d'; then
    pass "kube-aggregator serves metrics.k8s.io/v1beta1 from Ringtail (APIService Available; resources pods and nodes)"
  else
    fail "APIService v1beta1.metrics.k8s.io never became available: $(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions}' 2>&1 | head -c 400)"
  fi
}

rm_replicas() { kc -n "$rm_ns" get deployment cpu-burner -o jsonpath='{.status.replicas}'; }
rm_hpa_utilization() { # the HPA's current average utilization, if it has one
  kc get --raw "/apis/autoscaling/v2beta2/namespaces/$rm_ns/horizontalpodautoscalers/cpu-burner" | python3 -c '
import json, sys
m = json.load(sys.stdin)["status"].get("currentMetrics") or []
print(m[0]["resource"]["current"]["averageUtilization"])'
}
rm_hpa_at_rest() {
  if wait_until 60 rm_hpa_utilization && [ "$(rm_replicas)" = 1 ]; then
    pass "the HPA on the cpu Resource metric (Utilization, target 50 %) reads $(rm_hpa_utilization) % from metrics.k8s.io at 1 replica"
  else
    fail "the cpu Resource HPA has no value: $(kc -n "$rm_ns" describe hpa cpu-burner | grep -A4 -i 'conditions\|warning' | head -20)"
  fi
}
rm_raise_load() {
  echo 0.2 >"$rm_dir/load"   # 200 % of one pod's request: 4 pods at 50 % each
  rm_load_rose=$SECONDS
  rm_load_rose_at="$(date +%s.%N)"
  log "cpu-burner's load set to 0.2 cores over its pods: expecting 4 replicas"
}

rm_millis() { # QUANTITY — kubectl top's cpu in millicores
  case "$1" in *m) echo "${1%m}" ;; *) echo "$(( $1 * 1000 ))" ;; esac
}
rm_cpu_close() { # GOT_MILLIS WANT_MILLIS
  python3 -c 'import sys; got, want = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(got - want) <= 0.05 * want + 1 else 1)' "$1" "$2"
}
rm_top_row_is() { # FILE "FIRST COLUMNS" CPU_MILLIS MEMORY — that row of kubectl top shows these values
  local want_cpu="$3" want_mem="$4" row
  row="$(awk -v k="$2" -v n="$(wc -w <<<"$2")" '{ key = $1; for (i = 2; i <= n; i++) key = key " " $i }
    key == k { print $(n + 1), $(n + 2) }' "$1")"
  [ -n "$row" ] && rm_cpu_close "$(rm_millis "${row% *}")" "$want_cpu" && [ "${row#* }" = "$want_mem" ]
}

rm_first_at() { # COUNT SINCE — seconds from SINCE until the driver first saw COUNT running cpu-burner pods
  awk -v n="$1" -v t="$2" '$1 >= t && $2 == n { printf "%.1f", $1 - t; found = 1; exit } END { if (!found) print "?" }' "$rm_dir/burners.log"
}
rm_counts_since() { # SINCE — the running cpu-burner pod counts the driver saw since, in order
  awk -v since="$1" '$1 >= since && $2 != last { printf "%s%s", sep, $2; sep = " → "; last = $2 }' "$rm_dir/burners.log"
}

rm_checks() {
  log "metrics.k8s.io: kubectl top and the raw API"
  kc top pod -n "$rm_ns" >"$rm_dir/top-ns.txt" 2>"$rm_dir/top.err" || true
  kc top pod -n "$rm_ns" --containers >"$rm_dir/top-containers.txt" 2>>"$rm_dir/top.err" || true
  if rm_top_row_is "$rm_dir/top-ns.txt" top-a 300 264Mi \
    && rm_top_row_is "$rm_dir/top-containers.txt" "top-a main" 250 200Mi \
    && rm_top_row_is "$rm_dir/top-containers.txt" "top-a sidecar" 50 64Mi \
    && ! grep -q ' POD ' "$rm_dir/top-containers.txt"; then
    pass "kubectl top pod -n $rm_ns: $(awk '$1 == "top-a"' "$rm_dir/top-ns.txt" | tr -s ' ') (the kubelet serves 0.25 + 0.05 cores, 200Mi + 64Mi); --containers: main $(awk '$1 == "top-a" && $2 == "main" {print $3, $4}' "$rm_dir/top-containers.txt"), sidecar $(awk '$1 == "top-a" && $2 == "sidecar" {print $3, $4}' "$rm_dir/top-containers.txt"), no pause container"
  else
    fail "kubectl top pod -n $rm_ns: $(cat "$rm_dir/top-ns.txt" "$rm_dir/top-containers.txt" "$rm_dir/top.err" | head -20)"
  fi
  kc top pod -A >"$rm_dir/top-all.txt" 2>"$rm_dir/top.err" || true
  if rm_top_row_is "$rm_dir/top-all.txt" "$rm_ns top-a" 300 264Mi && rm_top_row_is "$rm_dir/top-all.txt" "e2e web-exporter" 5 16Mi; then
    pass "kubectl top pod -A: $(awk -v n="$rm_ns" '$1 == n && $2 == "top-a"' "$rm_dir/top-all.txt" | tr -s ' '); $(awk '$1 == "e2e" && $2 == "web-exporter"' "$rm_dir/top-all.txt" | tr -s ' ') ($(($(wc -l <"$rm_dir/top-all.txt") - 1)) pods)"
  else
    fail "kubectl top pod -A: $(head -20 "$rm_dir/top-all.txt" "$rm_dir/top.err")"
  fi
  kc top pod -A -l app=top >"$rm_dir/top-selected.txt" 2>"$rm_dir/top.err" || true
  if [ "$(awk 'NR > 1 { print $1 "/" $2 }' "$rm_dir/top-selected.txt")" = "$rm_ns/top-a" ] \
    && kc get --raw "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.namespace%3De2e,metadata.name%3Dweb-exporter" \
      >"$rm_dir/field-selected.json" 2>>"$rm_dir/top.err" \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["kind"] == "PodMetricsList" and [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in d["items"]] == [("e2e", "web-exporter")], d' "$rm_dir/field-selected.json"; then
    pass "selectors: kubectl top pod -A -l app=top lists only $rm_ns/top-a; /apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.namespace=e2e,metadata.name=web-exporter only e2e/web-exporter"
  else
    fail "selectors: $(cat "$rm_dir/top-selected.txt" "$rm_dir/top.err" | head -10) $(head -c 300 "$rm_dir/field-selected.json")"
  fi
  kc top node >"$rm_dir/top-node.txt" 2>"$rm_dir/top.err" || true
  local node_row
  node_row="$(awk -v n="$rm_node" '$1 == n { print $2, $4 }' "$rm_dir/top-node.txt")"
  if [ -n "$node_row" ] && rm_cpu_close "$(rm_millis "${node_row% *}")" 1500 && [ "${node_row#* }" = 3072Mi ]; then
    pass "kubectl top node: $(awk -v n="$rm_node" '$1 == n' "$rm_dir/top-node.txt" | tr -s ' ') (the kubelet's root cgroup: 1.5 cores, 3Gi; 4 cores, 8Gi allocatable)"
  else
    fail "kubectl top node: $(cat "$rm_dir/top-node.txt" "$rm_dir/top.err" | head -10)"
  fi
  local path="/apis/metrics.k8s.io/v1beta1/namespaces/$rm_ns/pods/top-a"
  if kc get --raw "$path" >"$rm_dir/top-a.json" 2>"$rm_dir/raw.err" && python3 - "$rm_dir/top-a.json" "$rm_ns" <<'PY'
import datetime, json, sys
d, ns = json.load(open(sys.argv[1])), sys.argv[2]
def cores(q):
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    return float(q[:-1]) * units[q[-1]] if q[-1] in units else float(q)
def bytes_(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(q[:-2]) * units[q[-2:]] if q[-2:] in units else int(q)
assert d["kind"] == "PodMetrics" and d["apiVersion"] == "metrics.k8s.io/v1beta1", d
assert (d["metadata"]["name"], d["metadata"]["namespace"], d["metadata"]["labels"]) == ("top-a", ns, {"app": "top"}), d["metadata"]
assert "creationTimestamp" in d["metadata"] and d["window"] == "1m0s", d
age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00"))
assert abs(age.total_seconds()) < 60, d["timestamp"]
got = {c["name"]: (cores(c["usage"]["cpu"]), bytes_(c["usage"]["memory"])) for c in d["containers"]}
assert set(got) == {"main", "sidecar"}, got
for name, (cpu, memory) in {"main": (0.25, 200 << 20), "sidecar": (0.05, 64 << 20)}.items():
    assert abs(got[name][0] - cpu) <= 0.05 * cpu + 0.001 and got[name][1] == memory, (name, got[name])
PY
  then
    pass "kubectl get --raw $path: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("window", d["window"], "; ".join(c["name"] + " " + c["usage"]["cpu"] + " " + c["usage"]["memory"] for c in d["containers"]))' "$rm_dir/top-a.json")"
  else
    fail "kubectl get --raw $path: $(head -c 600 "$rm_dir/top-a.json" "$rm_dir/raw.err")"
  fi
  if ! kc get --raw "/apis/metrics.k8s.io/v1beta1/namespaces/$rm_ns/pods/no-such-pod" >/dev/null 2>"$rm_dir/missing.err" \
    && grep -q 'NotFound' "$rm_dir/missing.err"; then
    pass "a missing pod is 404: $(head -c 200 "$rm_dir/missing.err")"
  else
    fail "a missing pod is not 404: $(head -c 300 "$rm_dir/missing.err")"
  fi

  # The HPA on cpu: 4 replicas since the load rose (while run.sh scaled its own), then 1.
  if wait_until $((rm_load_rose + 240 - SECONDS)) eval '[ "$(rm_replicas)" = 4 ]'; then
    pass "the HPA scaled cpu-burner 1 -> 4 on the cpu Resource metric: 4 pods running $(rm_first_at 4 "$rm_load_rose_at") s after the load rose (pod counts on the way: $(rm_counts_since "$rm_load_rose_at"); $(rm_hpa_utilization) % now)"
  else
    fail "cpu-burner did not reach 4 replicas (has $(rm_replicas)); not scaled down either"
    kc -n "$rm_ns" describe hpa cpu-burner | tail -12
    return
  fi
  echo 0.02 >"$rm_dir/load"
  local dropped=$SECONDS dropped_at
  dropped_at="$(date +%s.%N)"
  log "cpu-burner's load set to 0.02 cores: expecting 1 replica"
  if wait_until 150 eval '[ "$(rm_replicas)" = 1 ]'; then
    pass "the HPA scaled cpu-burner back to 1 replica $((SECONDS - dropped)) s after the load dropped (pod counts on the way: $(rm_counts_since "$dropped_at"))"
  else
    fail "cpu-burner did not return to 1 replica (has $(rm_replicas))"; kc -n "$rm_ns" describe hpa cpu-burner | tail -12
  fi
}
