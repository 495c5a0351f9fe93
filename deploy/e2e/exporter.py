#!/usr/bin/env python3
"""A scrape target for the end-to-end test, driven through a file.

Serves GET /metrics on HOST:PORT in the Prometheus text format. Each request re-reads SPEC_FILE,
whose lines are either

    gauge <series> <value>       exposed as written, e.g. `gauge ei_scale_ratio{pod="a"} 0.5`
    counter <series> <per_sec>   a counter growing by <per_sec> every second from 0

so the harness changes what the target reports by rewriting the file (atomically, with mv).

usage: exporter.py HOST PORT SPEC_FILE
"""
import http.server
import sys
import threading
import time

HOST, PORT, SPEC_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
counters = {}  # series -> (total, last update time)
lock = threading.Lock()


def render():
    try:
        with open(SPEC_FILE) as spec:
            lines = spec.read().splitlines()
    except FileNotFoundError:
        lines = []
    now = time.monotonic()
    out = []
    with lock:
        for line in lines:
            # The series may hold spaces (in label values): the value is the last word.
            kind, _, rest = line.strip().partition(" ")
            series, _, value = rest.strip().rpartition(" ")
            if not series or not value:
                continue
            if kind == "gauge":
                out.append(f"{series} {value}")
            elif kind == "counter":
                total, last = counters.get(series, (0.0, now))
                total += float(value) * (now - last)
                counters[series] = (total, now)
                out.append(f"{series} {total:.3f}")
    return ("\n".join(out) + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = render()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
