#!/usr/bin/env python3
"""A kubelet's metrics endpoints for the end-to-end test, driven through a file.

Serves, over TLS on HOST:PORT, what a kubelet 1.20 serves on :10250:

    /metrics/cadvisor   cAdvisor's container_cpu_usage_seconds_total (counter, cpu="total") and
                        container_memory_working_set_bytes (gauge), labelled container, id, image,
                        name, namespace, pod: one series per container, one for the pause
                        container (container="POD", as under dockershim), one per pod
                        (container="", the pod's cgroup), /kubepods, and the node's root cgroup
                        (id="/"). Stamped with the time of cAdvisor's last housekeeping: the
                        stats change every HOUSEKEEPING_MS (1 s here, 10 s in a kubelet), and a
                        scrape between two housekeepings gets the same samples again.
    /metrics/resource   container_, pod_ and node_ cpu_usage_seconds_total and
                        memory_working_set_bytes (no id, image or name) and scrape_error.
    /metrics            a few of the kubelet's own series.

Like the kubelet with client-certificate and webhook-token authentication: the TLS handshake
fails without a client certificate signed by CLIENT_CA, and a request without
`Authorization: Bearer <the token in TOKEN_FILE>` is answered 401.

STATE_FILE (re-read at each request, rewritten atomically by the harness) has lines

    node <name> <cores> <memory bytes>
    container <namespace> <pod> <container> <cores> <memory bytes>

Each cpu counter grows by <cores> core-seconds per second from when its line first appears
(starting from ten minutes' worth, as for a container that has been running), and keeps its total
when the rate changes; a container gone from the file is gone from the pages.

usage: kubelet.py HOST PORT STATE_FILE CERT KEY CLIENT_CA TOKEN_FILE
"""
import hashlib
import http.server
import ssl
import sys
import threading
import time

HOST, PORT, STATE_FILE, CERT, KEY, CLIENT_CA, TOKEN_FILE = sys.argv[1:8]
HOUSEKEEPING_MS = 1000
PAUSE_CORES, PAUSE_MEMORY = 0.002, 1 << 20  # the pause container: left out by the rules
counters = {}  # key -> [core-seconds, ms of the last advance]
lock = threading.Lock()


def read_state():
    node, containers = None, []
    try:
        with open(STATE_FILE) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "node":
            node = (parts[1], float(parts[2]), int(parts[3]))
        elif len(parts) == 6 and parts[0] == "container":
            containers.append((parts[1], parts[2], parts[3], float(parts[4]), int(parts[5])))
    return node, containers


def advance(key, cores, now_ms):
    """The counter of KEY at NOW_MS, grown at CORES since its last advance (exact in ms)."""
    total, last = counters.get(key, (cores * 600.0, now_ms))
    total += cores * (now_ms - last) / 1000.0
    counters[key] = (total, now_ms)
    return total


def uid(namespace, pod):
    h = hashlib.sha1(f"{namespace}/{pod}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def container_id(namespace, pod, container):
    return hashlib.sha256(f"{namespace}/{pod}/{container}".encode()).hexdigest()


def labels(**kv):
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


def snapshot():
    """Per-cgroup (labels, cores-counter, memory) at the last housekeeping, and its time."""
    now_ms = int(time.time() * 1000)
    stamp = now_ms - now_ms % HOUSEKEEPING_MS
    node, containers = read_state()
    pods = {}
    for namespace, pod, container, cores, memory in containers:
        pods.setdefault((namespace, pod), []).append((container, cores, memory))
    rows = []  # (cadvisor labels dict, resource kind or None, cpu total, memory)
    with lock:
        live = set()
        kubepods_cpu, kubepods_mem = 0.0, 0
        for (namespace, pod), members in sorted(pods.items()):
            pod_uid = uid(namespace, pod)
            cgroup = f"/kubepods/burstable/pod{pod_uid}"
            pod_cpu, pod_mem = 0.0, 0
            for container, cores, memory in members + [("POD", PAUSE_CORES, PAUSE_MEMORY)]:
                key = (namespace, pod, container)
                live.add(key)
                cpu = advance(key, cores, stamp)
                pod_cpu += cpu
                pod_mem += memory
                image = "k8s.gcr.io/pause:3.2" if container == "POD" else f"e2e/{container}:1"
                rows.append((
                    dict(container=container, id=f"{cgroup}/{container_id(namespace, pod, container)}", image=image,
                         name=f"k8s_{container}_{pod}_{namespace}_{pod_uid}_0", namespace=namespace, pod=pod),
                    None if container == "POD" else "container", cpu, memory))
            rows.append((dict(container="", id=cgroup, image="", name="", namespace=namespace, pod=pod),
                         "pod", pod_cpu, pod_mem))
            kubepods_cpu += pod_cpu
            kubepods_mem += pod_mem
        rows.append((dict(container="", id="/kubepods", image="", name="", namespace="", pod=""), None,
                     kubepods_cpu, kubepods_mem))
        if node is not None:
            live.add(("", "", "/"))
            rows.append((dict(container="", id="/", image="", name="", namespace="", pod=""), "node",
                         advance(("", "", "/"), node[1], stamp), node[2]))
        for key in list(counters):
            if key not in live:
                del counters[key]
    return rows, stamp


def cadvisor():
    rows, stamp = snapshot()
    out = ["# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.",
           "# TYPE container_cpu_usage_seconds_total counter"]
    for l, _, cpu, _ in rows:
        l = dict(l)
        out.append(f"container_cpu_usage_seconds_total{labels(container=l['container'], cpu='total', id=l['id'], image=l['image'], name=l['name'], namespace=l['namespace'], pod=l['pod'])} {cpu!r} {stamp}")
    out += ["# HELP container_memory_working_set_bytes Current working set in bytes.",
            "# TYPE container_memory_working_set_bytes gauge"]
    for l, _, _, memory in rows:
        out.append(f"container_memory_working_set_bytes{labels(**l)} {memory} {stamp}")
    return out


def resource():
    rows, stamp = snapshot()
    out = []
    for kind, what in (("container", "the container"), ("pod", "the pod"), ("node", "the node")):
        mine = [r for r in rows if r[1] == kind]
        def key(l):
            return (labels(container=l["container"], namespace=l["namespace"], pod=l["pod"]) if kind == "container"
                    else labels(namespace=l["namespace"], pod=l["pod"]) if kind == "pod" else "")
        out += [f"# HELP {kind}_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by {what} in core-seconds",
                f"# TYPE {kind}_cpu_usage_seconds_total counter"]
        out += [f"{kind}_cpu_usage_seconds_total{key(l)} {cpu!r} {stamp}" for l, _, cpu, _ in mine]
        out += [f"# HELP {kind}_memory_working_set_bytes [ALPHA] Current working set of {what} in bytes",
                f"# TYPE {kind}_memory_working_set_bytes gauge"]
        out += [f"{kind}_memory_working_set_bytes{key(l)} {memory} {stamp}" for l, _, _, memory in mine]
    out += ["# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
            "# TYPE scrape_error gauge", "scrape_error 0"]
    return out


def kubelet():
    _, containers = read_state()
    return ["# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox",
            "# TYPE kubelet_running_pods gauge",
            f"kubelet_running_pods {len({(c[0], c[1]) for c in containers})}",
            "# HELP kubelet_running_containers [ALPHA] Number of containers currently running",
            "# TYPE kubelet_running_containers gauge",
            f'kubelet_running_containers{{container_state="running"}} {len(containers)}']


PAGES = {"/metrics/cadvisor": cadvisor, "/metrics/resource": resource, "/metrics": kubelet}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body, content_type="text/plain; version=0.0.4; charset=utf-8"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with open(TOKEN_FILE) as f:
            token = f.read().strip()
        if self.headers.get("Authorization", "") != f"Bearer {token}":
            self.reply(401, b"Unauthorized\n", "text/plain; charset=utf-8")
            return
        page = PAGES.get(self.path.split("?")[0])
        if page is None:
            self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        self.reply(200, ("\n".join(page()) + "\n").encode())

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        # The handshake runs in the request's thread, so a client that fails it (no
        # certificate) or stalls does not hold up the others.
        sock, addr = self.socket.accept()
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request_thread(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
context.verify_mode = ssl.CERT_REQUIRED
context.load_verify_locations(CLIENT_CA)
Server((HOST, int(PORT)), Handler).serve_forever()
