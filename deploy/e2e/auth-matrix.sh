# Authentication and authorization matrix of every Ringtail listener, against the real control
# plane (issue 16 point 6). Sourced by run.sh once Ringtail serves the metrics APIs and the HPAs
# have run; uses its variables (work, cp_dir, ns_ip, host_ip, api_port, app_ns, ringtail, pids)
# and helpers (pass, fail, log, kc, wait_until, service_account_token).
#
# The metrics APIs (:6443). Each credential is sent twice: straight to Ringtail, and to
# kube-apiserver for the same aggregated path. kube-apiserver authenticates with the same
# front-proxy settings Ringtail reads from kube-system/extension-apiserver-authentication, so its
# answer is the oracle: k8s.io/apiserver's delegated authentication (what prometheus-adapter and
# metrics-server run) is a union of requestheader, client-CA and TokenReview authenticators,
# then anonymous (`Anonymous: true` in DelegatingAuthenticationOptions): a certificate or token
# that fails is 401, no credentials is system:anonymous and the SubjectAccessReview's 403. Both
# answers must be the expected one.
#
# The HTTP port (:9201). The e2e Ringtail runs it without --web.config.file, as the shipped
# manifest does: it is open (vmagent writes to it without credentials), which one row shows. A
# second Ringtail in the same network namespace runs the port with a web config requiring TLS
# (client certificates verified if given) and basic auth; its expected answers are what
# Prometheus's exporter-toolkit (Go crypto/tls, VerifyClientCertIfGiven) gives: a client
# certificate from another CA, or an expired one, fails the TLS handshake; no or wrong
# credentials 401; plain HTTP on the TLS port 400.

am_dir="$work/auth-matrix"
mkdir -p "$am_dir"
am_rows=()

am_client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

am_ca() { # NAME CN — a CA in am_dir
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$am_dir/$1.key" -subj "/CN=$2" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$am_dir/$1.crt" 2>/dev/null
}

am_sign() { # NAME SUBJECT CA_PATH_WITHOUT_SUFFIX EXT [expired] — a key and certificate in am_dir
  local name="$1" subject="$2" ca="$3" ext="$4"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$am_dir/$name.key" -subj "$subject" \
    -out "$am_dir/$name.csr" 2>/dev/null
  if [ "${5:-}" = expired ]; then
    # `openssl ca` is what sets both dates in the past on OpenSSL 3.0 (`x509 -req` has only -days).
    mkdir -p "$am_dir/ca-db"; : >"$am_dir/ca-db/index.txt"; openssl rand -hex 8 >"$am_dir/ca-db/serial"
    printf '[ca]\ndefault_ca = expired\n[expired]\ndatabase = %s\nnew_certs_dir = %s\nserial = %s\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n' \
      "$am_dir/ca-db/index.txt" "$am_dir/ca-db" "$am_dir/ca-db/serial" >"$am_dir/ca.cnf"
    openssl ca -batch -config "$am_dir/ca.cnf" -cert "$ca.crt" -keyfile "$ca.key" -in "$am_dir/$name.csr" \
      -out "$am_dir/$name.crt" -startdate 20200101000000Z -enddate 20200102000000Z -notext \
      -extfile <(printf '%s\n' "$ext") 2>/dev/null
  else
    openssl x509 -req -in "$am_dir/$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 1 \
      -extfile <(printf '%s\n' "$ext") -out "$am_dir/$name.crt" 2>/dev/null
  fi
}

am_status() { # URL CURL_ARGS... — the HTTP status, or "TLS refused" when the handshake failed
  local url="$1" code rc=0
  shift
  rm -f "$am_dir/last-body"
  code="$(curl -sk --max-time 10 -o "$am_dir/last-body" -w '%{http_code}' "$@" "$url" 2>/dev/null)" || rc=$?
  case "$rc:$code" in
    0:*) echo "$code" ;;
    35:* | 55:* | 56:* | 58:*) echo "TLS refused" ;; # curl: handshake failed, or the alert cut the send or receive
    *) echo "no answer (curl $rc)" ;;
  esac
}

am_check() { # CASE LISTENER EXPECTED GOT
  am_rows+=("$1|$2|$3|$4")
  if [ "$4" = "$3" ]; then
    pass "auth matrix: $1 — $2 answers $4"
  else
    fail "auth matrix: $1 — $2 answered $4, expected $3: $(head -c 300 "$am_dir/last-body" 2>/dev/null)"
  fi
}

# --- the metrics APIs -------------------------------------------------------------------------
am_path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/$app_ns/pods/%2A/ei_scale_ratio?labelSelector=app%3Dinference"
am_ringtail="https://$ns_ip:6443$am_path"
am_kube="https://$host_ip:$api_port$am_path"

am_both() { # CASE EXPECTED CURL_ARGS... — sent to Ringtail and through kube-apiserver
  local case="$1" expected="$2"
  shift 2
  am_check "$case" "Ringtail :6443" "$expected" "$(am_status "$am_ringtail" "$@")"
  am_check "$case" "kube-apiserver (aggregated)" "$expected" "$(am_status "$am_kube" "$@")"
}

log "auth matrix: certificates, ServiceAccounts and RBAC"
am_ca foreign-ca e2e-foreign-ca
am_sign foreign "/CN=front-proxy-client" "$am_dir/foreign-ca" "$am_client_ext"
am_sign intruder "/CN=intruder" "$cp_dir/front-proxy-ca" "$am_client_ext"
am_sign expired "/CN=front-proxy-client" "$cp_dir/front-proxy-ca" "$am_client_ext" expired
am_sign expired-admin "/O=system:masters/CN=e2e-admin" "$cp_dir/ca" "$am_client_ext" expired
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: auth-matrix-nobody, namespace: $app_ns}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: auth-matrix-reader, namespace: $app_ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: auth-matrix-custom-metrics-reader}
rules: [{apiGroups: [custom.metrics.k8s.io], resources: ["*"], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: auth-matrix-custom-metrics-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: auth-matrix-custom-metrics-reader}
subjects: [{kind: ServiceAccount, name: auth-matrix-reader, namespace: $app_ns}]
EOF
wait_until 60 service_account_token "$app_ns" auth-matrix-nobody || fail "no token for ServiceAccount auth-matrix-nobody"
wait_until 60 service_account_token "$app_ns" auth-matrix-reader || fail "no token for ServiceAccount auth-matrix-reader"
nobody_token="$(service_account_token "$app_ns" auth-matrix-nobody || true)"
reader_token="$(service_account_token "$app_ns" auth-matrix-reader || true)"
front_proxy=(--cert "$cp_dir/front-proxy-client.crt" --key "$cp_dir/front-proxy-client.key")
as_admin=(-H 'X-Remote-User: system:admin' -H 'X-Remote-Group: system:masters')

am_both "no credentials (system:anonymous)" 403
am_both "client certificate from a CA the cluster does not know" 401 \
  --cert "$am_dir/foreign.crt" --key "$am_dir/foreign.key" "${as_admin[@]}"
am_both "front-proxy CA certificate, CN not in requestheader-allowed-names" 401 \
  --cert "$am_dir/intruder.crt" --key "$am_dir/intruder.key" "${as_admin[@]}"
am_both "expired front-proxy certificate (CN front-proxy-client)" 401 \
  --cert "$am_dir/expired.crt" --key "$am_dir/expired.key" "${as_admin[@]}"
am_both "client certificate from the cluster's client CA (system:masters)" 200 \
  --cert "$cp_dir/admin.crt" --key "$cp_dir/admin.key"
am_both "expired client certificate from the cluster's client CA" 401 \
  --cert "$am_dir/expired-admin.crt" --key "$am_dir/expired-admin.key"
am_both "front-proxy certificate without a user header" 401 "${front_proxy[@]}"
am_both "bearer token TokenReview rejects" 401 -H "Authorization: Bearer not-a-token"
am_both "token authenticates, SubjectAccessReview denies (no RBAC)" 403 -H "Authorization: Bearer $nobody_token"
am_both "token allowed (ClusterRole get custom.metrics.k8s.io)" 200 -H "Authorization: Bearer $reader_token"
am_both "front-proxy certificate for a user without RBAC" 403 "${front_proxy[@]}" -H 'X-Remote-User: someone-else'
am_both "front-proxy certificate for the HPA controller" 200 "${front_proxy[@]}" \
  -H 'X-Remote-User: system:serviceaccount:kube-system:horizontal-pod-autoscaler'
if kc get --raw "$am_path" >"$am_dir/last-body" 2>&1; then am_code=200; else am_code="refused"; fi
am_check "kubectl get --raw (aggregator presents the front-proxy certificate)" "kube-apiserver (aggregated)" 200 "$am_code"

# --- the HTTP port ----------------------------------------------------------------------------
am_check "no credentials (no --web.config.file, as in the manifest: open)" "Ringtail :9201 (plain HTTP)" 200 \
  "$(am_status "http://$ns_ip:9201/api/v1/query?query=up")"

log "auth matrix: a second Ringtail with --web.config.file (TLS + basic auth) at $ns_ip:9202"
am_ca web-ca e2e-web-ca
am_sign web-server "/CN=ringtail-web" "$am_dir/web-ca" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$ns_ip"
am_sign web-client "/CN=web-client" "$am_dir/web-ca" "$am_client_ext"
am_sign web-client-expired "/CN=web-client" "$am_dir/web-ca" "$am_client_ext" expired
am_sign web-foreign "/CN=web-client" "$am_dir/foreign-ca" "$am_client_ext"
# bcrypt (cost 10) of "e2e-secret", made once with Python's crypt (libxcrypt) `$2b$` method.
cat >"$am_dir/web-config.yaml" <<EOF
tls_server_config:
  cert_file: web-server.crt
  key_file: web-server.key
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: web-ca.crt
basic_auth_users:
  e2e: \$2b\$10\$CBPdGqZoLVO/r1VXsZClAefoRksj37uW6HTkbiMyJLmX5Qg4Uqn0y
EOF
ip netns exec "$netns" env RINGTAIL_LOG="${RINGTAIL_LOG:-info}" "$ringtail" serve --standalone \
  --data-dir "$work/data-web-config" --listen "$ns_ip:9202" --secure-listen 127.0.0.1:6444 \
  --web.config.file "$am_dir/web-config.yaml" >"$work/ringtail-web-config.log" 2>&1 &
pids+=($!)
am_web="https://$ns_ip:9202/api/v1/query?query=up"
am_user=(-u e2e:e2e-secret)
if wait_until 30 curl -sfk "${am_user[@]}" "https://$ns_ip:9202/-/ready"; then
  am_check "no credentials" "Ringtail :9202 (web config)" 401 "$(am_status "$am_web")"
  am_check "basic auth, wrong password" "Ringtail :9202 (web config)" 401 "$(am_status "$am_web" -u e2e:wrong)"
  am_check "basic auth, right password" "Ringtail :9202 (web config)" 200 "$(am_status "$am_web" "${am_user[@]}")"
  am_check "plain HTTP on the TLS port" "Ringtail :9202 (web config)" 400 \
    "$(am_status "http://$ns_ip:9202/api/v1/query?query=up" "${am_user[@]}")"
  am_check "valid client certificate, no basic auth" "Ringtail :9202 (web config)" 401 \
    "$(am_status "$am_web" --cert "$am_dir/web-client.crt" --key "$am_dir/web-client.key")"
  am_check "valid client certificate and basic auth" "Ringtail :9202 (web config)" 200 \
    "$(am_status "$am_web" --cert "$am_dir/web-client.crt" --key "$am_dir/web-client.key" "${am_user[@]}")"
  am_check "client certificate from another CA, with basic auth" "Ringtail :9202 (web config)" "TLS refused" \
    "$(am_status "$am_web" --cert "$am_dir/web-foreign.crt" --key "$am_dir/web-foreign.key" "${am_user[@]}")"
  am_check "expired client certificate, with basic auth" "Ringtail :9202 (web config)" "TLS refused" \
    "$(am_status "$am_web" --cert "$am_dir/web-client-expired.crt" --key "$am_dir/web-client-expired.key" "${am_user[@]}")"
else
  fail "the Ringtail with --web.config.file did not become ready"; tail -20 "$work/ringtail-web-config.log"
fi

log "auth matrix:"
printf '  %-70s %-28s %-12s %s\n' CASE LISTENER EXPECTED GOT
for row in "${am_rows[@]}"; do
  IFS='|' read -r am_case am_listener am_expected am_got <<<"$row"
  printf '  %-70s %-28s %-12s %s\n' "$am_case" "$am_listener" "$am_expected" "$am_got"
done | tee "$am_dir/table.txt"
