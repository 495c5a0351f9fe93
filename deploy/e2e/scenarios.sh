# The scenarios Ringtail exists for, each scaled by the real HPA controller with the
# configuration shipped in deploy/examples/ (its adapter rules and its HPAs, applied as they are;
# autoscaling/v2 written as the v2beta2 of the 1.20 control plane). Sourced by run.sh; uses its
# variables (work, repo, cp_dir, host_ip, ns_ip, ns_ip_b, pids) and helpers (log, kc,
# wait_until). Everything lives in namespace `scenarios`.
#
# - seldon-core-2.yaml: Model and Server custom resources (CRDs shaped as Seldon's, with a scale
#   subresource), scaled on the Object metric infer_rps the Model describes (AverageValue), from
#   seldon_model_infer_total (rate over 2m).
# - istio-requests-per-second.yaml, dcgm-gpu-utilization.yaml: Pods metrics with AverageValue
#   targets, from series labelled as Istio's proxies and dcgm-exporter label them (the Istio
#   pods also report outbound traffic, reporter="source", which the rule leaves out).
# - service-object-metrics.yaml: http_requests and cpu_capacity_remaining from one exporter pod
#   Ringtail scrapes itself, answered for services, jobs.batch, pods and namespaces through
#   `template: <<.Resource>>`; an autoscaling/v2beta1 HPA (metricName/targetValue) and a v2beta2
#   one on the Service.
# - dotted-metric-name.yaml, then dotted-metric-name-utf8.yaml: the Object metric
#   net.http.request.count on a Service, first renamed from a legacy name by `name.as`, then (the
#   two rules name the same metric, so the adapter file is swapped and Ringtail reloads it)
#   received under its UTF-8 name over remote-write 2.0 (rw2_sender.py); v2beta1 HPAs with
#   targetValue 100.
#
# Series come from an exporter vmagent scrapes (honor_labels) and remote-writes to both replicas,
# from a pod Ringtail discovers and scrapes, and from the remote-write 2.0 sender. A driver marks
# the pods Running (there is no kubelet) and plays the Seldon operator for Models and Servers
# (status.replicas and status.selector follow spec.replicas). Each scenario goes from rest to a
# load that asks for 4 replicas and back; every change of replicas is timed from the change of
# load and the times are printed at the end (sc_collect).
#
# sc_prepare_config (before the replicas start): the CRDs, and adapter.yaml = the examples' rules
# first, then the shipped ConfigMap's. sc_vmagent_job: the scrape job run.sh's vmagent adds.
# sc_start: objects, sources, driver. sc_run (in the background): the phases; results go to a
# file that sc_collect folds into run.sh's counts.

sc_ns=scenarios
sc_push_port=19106 # the page vmagent scrapes and remote-writes (Seldon, Istio, DCGM, checkout)
sc_pod_port=19107  # the page of the exporter pod Ringtail scrapes (frontend's Service metrics)
sc_examples="$repo/deploy/examples"
sc_results="$work/scenario-results.txt"
sc_times="$work/scenario-times.txt"

sc_objects_of() { # EXAMPLE_FILE — its Kubernetes objects, autoscaling/v2 as v2beta2 (1.20)
  sed '1,/^---$/d' "$sc_examples/$1" | sed 's#^apiVersion: autoscaling/v2$#apiVersion: autoscaling/v2beta2#'
}

sc_adapter_config() { # OUT EXAMPLE_FILE... — the examples' rules first, then the shipped ones
  # Merged as text (the standard library has no YAML): each example's `rules:` and
  # `externalRules:` items, indented as the shipped file's, go right after the shipped key.
  python3 - "$work/adapter-shipped.yaml" "$@" <<'PY'
import sys
shipped_path, out_path, examples = sys.argv[1], sys.argv[2], sys.argv[3:]
KEYS = ("rules:", "externalRules:")

def blocks(lines):
    """{key: the lines of its block} for the top-level keys of one YAML document."""
    found, key = {}, None
    for line in lines:
        if line.rstrip() == "---":
            break
        top_level = line and not line[0].isspace() and not line.startswith("#")
        if top_level:
            key = line.rstrip() if line.rstrip() in KEYS else None
            if key:
                found[key] = []
            continue
        if key:
            found[key].append(line)
    return found

shipped = open(shipped_path).read().splitlines()
merged = {key: [] for key in KEYS}
for example in examples:
    for key, lines in blocks(open(example).read().splitlines()).items():
        merged[key] += lines
out = []
for line in shipped:
    out.append(line)
    if line.rstrip() in KEYS:
        out += merged.pop(line.rstrip())
for key, lines in merged.items():
    if lines:
        out += [key] + lines
open(out_path, "w").write("\n".join(out) + "\n")
PY
}

sc_prepare_config() {
  cp "$work/adapter.yaml" "$work/adapter-shipped.yaml"
  local common=(seldon-core-2.yaml istio-requests-per-second.yaml dcgm-gpu-utilization.yaml service-object-metrics.yaml)
  sc_adapter_config "$work/adapter.yaml" "${common[@]/#/$sc_examples/}" "$sc_examples/dotted-metric-name.yaml"
  sc_adapter_config "$work/adapter-utf8.yaml" "${common[@]/#/$sc_examples/}" "$sc_examples/dotted-metric-name-utf8.yaml"
  # Seldon's CRDs as Seldon Core 2 installs them, reduced to what the HPA uses: the scale
  # subresource. Created before Ringtail starts, so its API discovery knows them.
  local kind plural
  for kind in Model Server; do
    plural="$(tr '[:upper:]' '[:lower:]' <<<"$kind")s"
    cat <<EOF
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: $plural.mlops.seldon.io}
spec:
  group: mlops.seldon.io
  names: {kind: $kind, listKind: ${kind}List, plural: $plural, singular: ${plural%s}}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
      subresources:
        status: {}
        scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
EOF
  done >"$work/seldon-crds.yaml"
  if kc apply -f "$work/seldon-crds.yaml" >/dev/null \
    && wait_until 60 kc get --raw /apis/mlops.seldon.io/v1alpha1/servers; then
    log "scenarios: Seldon's Model and Server CRDs are served"
  else
    echo "FAIL the Seldon CRDs were not served" >>"$sc_results"
  fi
}

sc_vmagent_job() {
  cat <<EOF
  - job_name: scenarios-push
    scrape_interval: 1s
    honor_labels: true
    static_configs: [{targets: ["$host_ip:$sc_push_port"]}]
EOF
}

sc_start() {
  local d
  {
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$sc_ns"
    for d in reviews triton frontend capacity checkout payments; do
      cat <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $d, namespace: $sc_ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: $d}}
  template:
    metadata: {labels: {app: $d}}
    spec: {containers: [{name: main, image: "e2e/$d:1"}]}
EOF
    done
    for d in frontend checkout payments; do
      printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec: {selector: {app: %s}, ports: [{port: 80}]}\n' "$d" "$sc_ns" "$d"
    done
    cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: frontend-exporter
  namespace: $sc_ns
  labels: {app: frontend-exporter}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "$sc_pod_port"}
spec: {containers: [{name: exporter, image: "e2e/exporter:1", ports: [{containerPort: $sc_pod_port}]}]}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver, namespace: $sc_ns}
spec: {serverConfig: mlserver, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris, namespace: $sc_ns}
spec: {storageUri: "gs://seldon-models/mlserver/iris", requirements: [sklearn], server: mlserver, replicas: 1}
EOF
  } >"$work/scenario-objects.yaml"
  kc apply -f "$work/scenario-objects.yaml" >/dev/null
  for d in seldon-core-2.yaml istio-requests-per-second.yaml dcgm-gpu-utilization.yaml service-object-metrics.yaml dotted-metric-name.yaml; do
    sc_objects_of "$d" | kc -n "$sc_ns" apply -f - >/dev/null
  done
  echo rest >"$work/sc-phase"
  echo rest >"$work/sc-phase-utf8"
  : >"$work/sc-push.spec"
  : >"$work/sc-pod.spec"
  : >"$work/sc-rw2.spec"
  python3 "$here/exporter.py" "$host_ip" "$sc_push_port" "$work/sc-push.spec" &
  pids+=($!)
  python3 "$here/exporter.py" "$host_ip" "$sc_pod_port" "$work/sc-pod.spec" &
  pids+=($!)
  python3 "$here/rw2_sender.py" "$work/sc-rw2.spec" "http://$ns_ip:9201/api/v1/write" "http://$ns_ip_b:9201/api/v1/write" \
    2>"$work/rw2-sender.log" &
  pids+=($!)
  sc_drive &
  pids+=($!)
}

# What each phase asks for. At rest every HPA wants 1 replica; loaded, 4:
# Seldon 12/s ÷ 3 per replica; Istio 40/s ÷ 10 per pod; DCGM 200 % of GPU work at ≤ 100 % per
# pod ÷ 60 % (1 → 2 → 4); the Value targets (targetValue) 2.5× their target, bounded by
# maxReplicas 4, and a fifth of it at rest.
sc_level() { # PHASE REST LOADED
  if [ "$1" = up ]; then echo "$3"; else echo "$2"; fi
}

sc_drive() {
  set +e
  local phase utf8_phase rows name phase_now deleting reviews triton n total p i spec_r status_r kind
  while true; do
    phase="$(cat "$work/sc-phase")"
    utf8_phase="$(cat "$work/sc-phase-utf8")"
    rows="$(kc -n "$sc_ns" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null || true)"
    reviews=()
    triton=()
    while read -r name phase_now deleting; do
      [ -n "$name" ] || continue
      [ -z "$deleting" ] || continue
      if [ "$phase_now" != Running ]; then
        kc -n "$sc_ns" patch pod "$name" --subresource=status --type=merge -p \
          "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$host_ip\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null 2>&1 || true
      fi
      case "$name" in reviews-*) reviews+=("$name") ;; triton-*) triton+=("$name") ;; esac
    done <<<"$rows"
    # The Seldon operator's part: the custom resources' status follows their spec.
    while read -r kind spec_r status_r; do
      if [ -n "$spec_r" ] && [ "$spec_r" != "$status_r" ]; then
        kc -n "$sc_ns" patch "$kind" --subresource=status --type=merge -p \
          "{\"status\":{\"replicas\":$spec_r,\"selector\":\"app=${kind#*/}\"}}" >/dev/null 2>&1 || true
      fi
    done < <(kc -n "$sc_ns" get models,servers \
      -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.spec.replicas} {.status.replicas}{"\n"}{end}' 2>/dev/null \
      | tr '[:upper:]' '[:lower:]')
    {
      printf 'counter seldon_model_infer_total{namespace="%s",model="iris",model_internal="iris_1",server="mlserver",server_replica="0",pod="mlserver-0",method_type="rest",code="200"} %s\n' \
        "$sc_ns" "$(sc_level "$phase" 1 12)"
      n=${#reviews[@]}
      total="$(sc_level "$phase" 5 40)"
      for p in "${reviews[@]}"; do
        printf 'counter istio_requests_total{namespace="%s",pod="%s",reporter="destination",source_workload="productpage-v1",source_workload_namespace="%s",destination_workload="reviews-v1",destination_workload_namespace="%s",destination_service="reviews.%s.svc.cluster.local",destination_service_name="reviews",request_protocol="http",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} %s\n' \
          "$sc_ns" "$p" "$sc_ns" "$sc_ns" "$sc_ns" "$(awk -v t="$total" -v n="$n" 'BEGIN {print t / n}')"
        printf 'counter istio_requests_total{namespace="%s",pod="%s",reporter="source",source_workload="reviews-v1",source_workload_namespace="%s",destination_workload="ratings-v1",destination_workload_namespace="%s",destination_service="ratings.%s.svc.cluster.local",destination_service_name="ratings",request_protocol="http",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} 500\n' \
          "$sc_ns" "$p" "$sc_ns" "$sc_ns" "$sc_ns"
      done
      n=${#triton[@]}
      total="$(sc_level "$phase" 30 200)"
      i=0
      for p in "${triton[@]}"; do
        printf 'gauge DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5fa1c2d3-0000-4000-8000-%012d",device="nvidia0",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-node-%d",DCGM_FI_DRIVER_VERSION="535.104.05",container="triton",namespace="%s",pod="%s"} %s\n' \
          "$i" "$i" "$sc_ns" "$p" "$(awk -v t="$total" -v n="$n" 'BEGIN {v = t / n; print (v > 100 ? 100 : v)}')"
        i=$((i + 1))
      done
      printf 'counter net_http_request_count_total{namespace="%s",service="checkout"} %s\n' "$sc_ns" "$(sc_level "$phase" 20 250)"
    } >"$work/sc-push.spec.new"
    mv "$work/sc-push.spec.new" "$work/sc-push.spec"
    {
      printf 'counter http_requests_total{service="frontend"} %s\n' "$(sc_level "$phase" 2 25)"
      printf 'gauge cpu_capacity_remaining{service="frontend"} %s\n' "$(sc_level "$phase" 10 125)"
    } >"$work/sc-pod.spec.new"
    mv "$work/sc-pod.spec.new" "$work/sc-pod.spec"
    printf 'counter %s __name__=net.http.request.count namespace=%s service=payments\n' \
      "$(sc_level "$utf8_phase" 20 250)" "$sc_ns" >"$work/sc-rw2.spec.new"
    mv "$work/sc-rw2.spec.new" "$work/sc-rw2.spec"
    sleep 1
  done
}

sc_pass() { log "PASS: $*"; echo "PASS $*" >>"$sc_results"; }
sc_fail() { log "FAIL: $*"; echo "FAIL $*" >>"$sc_results"; }

sc_all_replicas() { # "kind/name replicas" lines for every scale target (one API call)
  kc -n "$sc_ns" get deployments,models,servers \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.spec.replicas}{"\n"}{end}' 2>/dev/null \
    | tr '[:upper:]' '[:lower:]'
}

sc_hpas_read_values() { # NAME... — each HPA has a current metric value (read as v2beta2)
  kc get --raw "/apis/autoscaling/v2beta2/namespaces/$sc_ns/horizontalpodautoscalers" | python3 -c '
import json, sys
items = {i["metadata"]["name"]: i for i in json.load(sys.stdin)["items"]}
sys.exit(0 if all(items.get(n, {}).get("status", {}).get("currentMetrics") for n in sys.argv[1:]) else 1)' "$@"
}

sc_phase() { # PHASE_FILE PHASE EXPECTED TIMEOUT TARGET... — sets the load and times each target
  local phase_file="$1" phase="$2" expected="$3" timeout="$4" start now t r pending still took
  shift 4
  pending=("$@")
  echo "$phase" >"$phase_file"
  start="$(date +%s.%N)"
  log "scenarios: load $phase, expecting $expected replicas for ${pending[*]}"
  local -A replicas
  while [ "${#pending[@]}" -gt 0 ]; do
    now="$(date +%s.%N)"
    replicas=()
    while read -r t r; do [ -n "$t" ] && replicas[$t]="$r"; done < <(sc_all_replicas)
    still=()
    for t in "${pending[@]}"; do
      r="${replicas[$t]:-0}"
      # Up: the first time it has the replicas asked for (a Pods metric may overshoot while a rate
      # window still holds the old pods' shares); back at rest: exactly 1.
      if { [ "$phase" = up ] && [ "$r" -ge "$expected" ]; } || { [ "$phase" != up ] && [ "$r" = "$expected" ]; }; then
        took="$(awk -v a="$start" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
        echo "$t $phase $took" >>"$sc_times"
        sc_pass "$t scaled to $r replicas ${took} s after its metric changed ($phase)"
      else
        still+=("$t")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    if [ "${#pending[@]}" -gt 0 ] && awk -v a="$start" -v b="$now" -v t="$timeout" 'BEGIN {exit !(b - a > t)}'; then
      for t in "${pending[@]}"; do
        sc_fail "$t did not reach $expected replicas within ${timeout}s ($phase; has ${replicas[$t]:-none})"
        kc -n "$sc_ns" describe hpa "${t#*/}" 2>&1 | tail -8
      done
      return
    fi
    sleep 1
  done
}

sc_get_hpa_shows() { # NAME... — kubectl get hpa shows a value for each
  local out="$work/sc-get-hpa.txt" n bad=""
  kc -n "$sc_ns" get hpa >"$out" 2>&1
  cat "$out"
  for n in "$@"; do
    awk -v n="$n" '$1 == n && $3 !~ /unknown/ {found = 1} END {exit !found}' "$out" || bad="$bad $n"
  done
  if [ -z "$bad" ]; then sc_pass "kubectl get hpa shows a value for $*"; else sc_fail "kubectl get hpa shows no value for$bad"; fi
}

sc_template_resources() { # http_requests answers for services, jobs.batch, pods and namespaces
  local base=/apis/custom.metrics.k8s.io/v1beta2 listed
  listed="$(kc get --raw /apis/custom.metrics.k8s.io/v1beta1 | python3 -c '
import json, sys
names = {r["name"] for r in json.load(sys.stdin)["resources"]}
want = ["services/http_requests", "jobs.batch/http_requests", "pods/http_requests", "namespaces/http_requests"]
print(" ".join(w for w in want if w not in names))')" || listed="(discovery failed)"
  if [ -n "$listed" ]; then sc_fail "custom.metrics.k8s.io/v1beta1 does not list $listed"; return; fi
  local path answered=""
  for path in "namespaces/$sc_ns/services/frontend/http_requests" "namespaces/$sc_ns/jobs.batch/kubernetes-pods/http_requests" \
    "namespaces/$sc_ns/pods/frontend-exporter/http_requests" "namespaces/$sc_ns/metrics/http_requests"; do
    kc get --raw "$base/$path" 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
sys.exit(0 if len(items) == 1 and items[0]["value"] not in ("0", "") else 1)' || { sc_fail "$base/$path has no value"; return; }
    answered="$answered ${path#namespaces/$sc_ns/}"
  done
  sc_pass "http_requests is listed and answered for services, jobs.batch, pods and namespaces:$answered"
}

sc_run() {
  set +e
  local first=(iris mlserver reviews triton frontend capacity checkout)
  local targets=(model/iris server/mlserver deployment/reviews deployment/triton deployment/frontend deployment/capacity deployment/checkout)
  if wait_until 180 sc_hpas_read_values "${first[@]}"; then
    sc_pass "the scenario HPAs read their metrics from Ringtail: ${first[*]}"
  else
    sc_fail "not every scenario HPA got a metric value"
    kc -n "$sc_ns" describe hpa 2>&1 | grep -B2 -A3 -i 'warning\|failed' | head -40
  fi
  sc_phase "$work/sc-phase" up 4 300 "${targets[@]}"
  sc_get_hpa_shows "${first[@]}"
  sc_template_resources
  sc_phase "$work/sc-phase" rest 1 300 "${targets[@]}"
  # The UTF-8 name: its rule replaces the rename (the two name the same metric).
  cp "$work/adapter-utf8.yaml" "$work/adapter.yaml"
  sc_objects_of dotted-metric-name-utf8.yaml | kc -n "$sc_ns" apply -f - >/dev/null
  if wait_until 180 sc_hpas_read_values payments; then
    sc_pass "the payments HPA reads net.http.request.count received under its UTF-8 name over remote-write 2.0"
  else
    sc_fail "the payments HPA got no value for net.http.request.count (UTF-8 name)"
    kc -n "$sc_ns" describe hpa payments 2>&1 | tail -8
  fi
  sc_phase "$work/sc-phase-utf8" up 4 240 deployment/payments
  sc_get_hpa_shows payments
  sc_phase "$work/sc-phase-utf8" rest 1 240 deployment/payments
}

sc_collect() { # SC_RUN_PID — waits for sc_run, folds its results into run.sh's counts
  wait "$1" 2>/dev/null || true
  local n
  n="$(grep -c '^PASS' "$sc_results" 2>/dev/null || true)"
  passed=$((passed + ${n:-0}))
  n="$(grep -c '^FAIL' "$sc_results" 2>/dev/null || true)"
  failed=$((failed + ${n:-0}))
  log "scenario reaction times (metric change → replica change, seconds):"
  python3 - "$sc_times" <<'PY'
import sys
rows = {}
try:
    for line in open(sys.argv[1]):
        target, phase, took = line.split()
        rows.setdefault(target, {})[phase] = took
except FileNotFoundError:
    pass
print(f"  {'target':<24} {'1 -> 4':>8} {'4 -> 1':>8}")
for target, phases in rows.items():
    print(f"  {target:<24} {phases.get('up', '-'):>8} {phases.get('rest', '-'):>8}")
PY
}
