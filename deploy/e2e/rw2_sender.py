#!/usr/bin/env python3
"""A remote-write 2.0 sender for the end-to-end test, driven through a file.

Neither Prometheus 2.42 nor vmagent 1.79 sends remote-write 2.0 or UTF-8 metric names, which is
what an OpenTelemetry collector or Prometheus 3 sends. Every second this reads SPEC_FILE, whose
lines are

    counter <per_sec> <name>=<value> [<name>=<value> ...]

(a counter growing by <per_sec> every second from 0; `__name__` may be any UTF-8 text, e.g.
`__name__=net.http.request.count`; values are split on the first `=` and may not contain spaces),
and posts one io.prometheus.write.v2.Request holding the current value of each series, with
counter metadata, to every URL. A URL that refuses or is down is reported on stderr and tried
again on the next round.

usage: rw2_sender.py SPEC_FILE URL [URL ...]
"""
import struct
import sys
import time
import urllib.error
import urllib.request

SPEC_FILE, URLS = sys.argv[1], sys.argv[2:]
CONTENT_TYPE = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
METRIC_TYPE_COUNTER = 1


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire_type, payload):
    return varint(number << 3 | wire_type) + payload


def length_delimited(number, payload):
    return field(number, 2, varint(len(payload)) + payload)


def snappy_literal_block(data):
    """Snappy's block format with literals only: valid, uncompressed, enough for a test."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


def request(series, now_ms):
    """series: [(labels sorted by name, value)] -> the encoded v2 Request."""
    symbols = [""]
    index = {"": 0}

    def ref(text):
        if text not in index:
            index[text] = len(symbols)
            symbols.append(text)
        return index[text]

    encoded = []
    for labels, value in series:
        refs = b"".join(varint(ref(part)) for pair in labels for part in pair)
        sample = field(1, 1, struct.pack("<d", value)) + field(2, 0, varint(now_ms))
        metadata = field(1, 0, varint(METRIC_TYPE_COUNTER))
        encoded.append(length_delimited(1, refs) + length_delimited(2, sample) + length_delimited(5, metadata))
    body = b"".join(length_delimited(4, s.encode()) for s in symbols)
    body += b"".join(length_delimited(5, ts) for ts in encoded)
    return body


def read_spec(totals, last, now):
    try:
        with open(SPEC_FILE) as spec:
            lines = spec.read().splitlines()
    except FileNotFoundError:
        lines = []
    series = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[0] != "counter":
            continue
        labels = tuple(sorted(tuple(p.split("=", 1)) for p in parts[2:] if "=" in p))
        totals[labels] = totals.get(labels, 0.0) + float(parts[1]) * (now - last.get(labels, now))
        last[labels] = now
        series.append((labels, totals[labels]))
    return series


def main():
    totals, last = {}, {}
    while True:
        now = time.monotonic()
        series = read_spec(totals, last, now)
        if series:
            body = snappy_literal_block(request(series, int(time.time() * 1000)))
            for url in URLS:
                post = urllib.request.Request(url, data=body, method="POST", headers={
                    "Content-Type": CONTENT_TYPE,
                    "Content-Encoding": "snappy",
                    "X-Prometheus-Remote-Write-Version": "2.0.0",
                })
                try:
                    with urllib.request.urlopen(post, timeout=5) as response:
                        response.read()
                except (urllib.error.URLError, OSError) as e:
                    print(f"rw2_sender: {url}: {e}", file=sys.stderr, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
