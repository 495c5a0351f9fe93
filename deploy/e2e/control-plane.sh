#!/usr/bin/env bash
# Starts a real Kubernetes control plane on this machine for Ringtail's end-to-end test:
# etcd, kube-apiserver (RBAC, aggregation with a front-proxy CA, aggregator routing to Endpoints)
# and kube-controller-manager (deployment, replicaset and HPA controllers, and the mirroring of
# selector-less Services' Endpoints into EndpointSlices; HPA sync every 5 s).
# Nodes and kubelets are not run: the harness marks pods Running/Ready through the status subresource.
#
#   control-plane.sh up   DIR BIN_DIR HOST_IP   # certificates, processes and DIR/admin.kubeconfig
#   control-plane.sh down DIR                   # stops what `up` started
#
# HOST_IP is an address on this machine other than loopback (the host end of the test veth pair):
# the API server listens there too so a process inside the test network namespace reaches it.
set -euo pipefail

cmd="${1:?usage: control-plane.sh up|down DIR ...}"
dir="${2:?DIR}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.5
  done
}

sign() { # sign NAME SUBJECT CA EXT
  local name="$1" subject="$2" ca="$3" ext="$4"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
    -days 2 -extfile <(printf '%s\n' "$ext") -out "$dir/$name.crt" 2>/dev/null
}

make_ca() { # make_ca NAME CN
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$dir/$1.key" -subj "/CN=$2" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/$1.crt" 2>/dev/null
}

kubeconfig() { # kubeconfig NAME USER_CERT SERVER
  cat >"$dir/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    certificate-authority: $dir/ca.crt
    server: $3
users:
- name: $1
  user:
    client-certificate: $dir/$2.crt
    client-key: $dir/$2.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $1}
current-context: e2e
KC
}

up() {
  local bin_dir="${3:?BIN_DIR}" host_ip="${4:?HOST_IP}"
  mkdir -p "$dir"
  local client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  make_ca ca e2e-cluster-ca
  make_ca front-proxy-ca e2e-front-proxy-ca
  sign apiserver "/CN=kube-apiserver" ca "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$host_ip,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost"
  sign admin "/O=system:masters/CN=e2e-admin" ca "$client_ext"
  sign controller-manager "/CN=system:kube-controller-manager" ca "$client_ext"
  sign front-proxy-client "/CN=front-proxy-client" front-proxy-ca "$client_ext"
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null

  local etcd_client etcd_peer api_port
  etcd_client="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
  echo "$api_port" >"$dir/api-port"
  etcd --name e2e --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_client/health"

  "$bin_dir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address 0.0.0.0 --secure-port "$api_port" --insecure-port 0 --advertise-address "$host_ip" \
    --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
    --client-ca-file "$dir/ca.crt" \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode RBAC \
    --disable-admission-plugins ServiceAccount \
    --requestheader-client-ca-file "$dir/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$dir/front-proxy-client.crt" --proxy-client-key-file "$dir/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
  kubeconfig admin admin "https://127.0.0.1:$api_port"
  kubeconfig controller-manager controller-manager "https://127.0.0.1:$api_port"
  wait_for 120 kube-apiserver kubectl --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

  "$bin_dir/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers serviceaccount-token,serviceaccount,deployment,replicaset,horizontalpodautoscaling,garbagecollector,endpointslicemirroring \
    --use-service-account-credentials \
    --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/ca.crt" \
    --horizontal-pod-autoscaler-sync-period 5s \
    --horizontal-pod-autoscaler-downscale-stabilization 10s \
    --leader-elect=false --port 0 --secure-port 0 \
    >"$dir/kube-controller-manager.log" 2>&1 &
  echo $! >"$dir/kube-controller-manager.pid"
  echo "control plane up: kubeconfig $dir/admin.kubeconfig, API server https://127.0.0.1:$api_port and https://$host_ip:$api_port"
}

down() {
  for p in kube-controller-manager kube-apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for p in kube-controller-manager kube-apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
  done
}

case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  *) echo "usage: control-plane.sh up|down DIR ..." >&2; exit 2 ;;
esac
