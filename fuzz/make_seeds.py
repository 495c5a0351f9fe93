#!/usr/bin/env python3
"""make_seeds.py builds the seed corpus of every fuzz target from real inputs: the upstream PromQL
conformance scripts (expressions and their `load` series), the shipped ConfigMap (scrape config and
adapter rules), the adapter fixtures, and the string literals the crates' own unit tests parse.

Usage: make_seeds.py REPO_DIR SHARED_DIR_OR_EMPTY CORPUS_DIR
Nothing is written to the repository: the corpus goes to CORPUS_DIR/<target>/<sha1>.
"""
import glob
import hashlib
import os
import re
import struct
import sys

import yaml

repo, shared, out = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {}


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > 64 * 1024:
        return
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        counts[target] = counts.get(target, 0) + 1


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


RUST_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def rust_strings(path):
    """The string literals of a Rust file (raw and escaped), decoded."""
    text = read(path)
    for m in re.finditer(r'r(#+)"(.*?)"\1', text, re.S):
        yield m.group(2)
    for m in re.finditer(r'(?<![r#\w])"((?:[^"\\]|\\.)*)"', text, re.S):
        s = re.sub(r"\\\n\s*", "", m.group(1))
        s = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda e: chr(int(e.group(1), 16)), s)
        yield re.sub(r"\\(.)", lambda e: RUST_ESCAPES.get(e.group(1), e.group(1)), s)


# --- PromQL expressions and series from the conformance scripts -------------------------------
EVAL = re.compile(r"^\s*eval(?:_fail|_warn|_info|_ordered)?\s+(?:instant\s+at\s+\S+|range\s+from\s+\S+\s+to\s+\S+\s+step\s+\S+)\s+(.+)$")
SERIES = re.compile(r'^\s+([a-zA-Z_:][\w:]*)?(\{[^}]*\})?\s+(\S.*)$')
exprs, series = [], []
if shared:
    for path in sorted(glob.glob(os.path.join(shared, "promql-conformance", "**", "*.test"), recursive=True)):
        in_load = False
        for line in read(path).splitlines():
            m = EVAL.match(line)
            if m:
                exprs.append(m.group(1).strip())
            if re.match(r"^\s*load", line):
                in_load = True
                continue
            if not line.strip():
                in_load = False
                continue
            if in_load:
                m = SERIES.match(line)
                if m and (m.group(1) or m.group(2)):
                    series.append(((m.group(1) or ""), (m.group(2) or ""), m.group(3)))
for e in exprs:
    put("promql_parse", e)
for path in glob.glob(os.path.join(repo, "query", "src", "*.rs")):
    for s in rust_strings(path):
        if 0 < len(s) < 400 and "\n" not in s:
            put("promql_parse", s)

# --- series selectors and parameters ------------------------------------------------------------
LABEL = re.compile(r'([\w.]+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
for name, labels, _ in series:
    put("series_selector", name + labels)
for e in exprs:
    for m in re.finditer(r'[a-zA-Z_:][\w:]*\{[^}]*\}|\{[^}]*\}', e):
        put("series_selector", m.group(0))
for p in ["5m", "1h30m", "15s", "0.5", "1764892800", "1764892800.123", "2026-12-05T00:00:00Z", "-1"]:
    put("series_selector", p)

# --- exposition pages ---------------------------------------------------------------------------
def label_pairs(labels):
    return [(m.group(1), m.group(3)) for m in LABEL.finditer(labels)]


def first_value(values):
    v = values.split()[0]
    v = re.sub(r"[+-]\d+x\d+$|x\d+$", "", v)
    return v if re.match(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|Inf|NaN|inf|nan)$", v) else "1"


by_name = {}
for name, labels, values in series:
    if name:
        by_name.setdefault(name, []).append((labels, first_value(values)))
names = sorted(by_name)
for i in range(0, len(names), 4):
    page, om = [], []
    for name in names[i:i + 4]:
        kind = "counter" if name.endswith("_total") else "histogram" if name.endswith("_bucket") else "gauge"
        family = name[: -len("_total")] if kind == "counter" else name[: -len("_bucket")] if kind == "histogram" else name
        page += [f"# HELP {name} {name} from the conformance suite.", f"# TYPE {name} {kind if kind != 'histogram' else 'untyped'}"]
        om += [f"# TYPE {family} {kind}", f"# HELP {family} {family}."]
        for labels, value in by_name[name][:8]:
            page.append(f"{name}{labels} {value}")
            om.append(f"{name}{labels} {value} 1764892800.000")
    put("exposition_text", "\n".join(page) + "\n")
    put("exposition_openmetrics", "\n".join(om) + "\n# EOF\n")
for path in glob.glob(os.path.join(repo, "ingest", "src", "**", "*.rs"), recursive=True):
    for s in rust_strings(path):
        if "\n" in s and ("# TYPE" in s or "# HELP" in s or re.search(r"^\w+(\{.*\})? \S+", s, re.M)):
            put("exposition_openmetrics" if "# EOF" in s else "exposition_text", s)
exporter = os.path.join(repo, "deploy", "e2e", "exporter.py")
if os.path.exists(exporter):
    for m in re.finditer(r"^(# (?:HELP|TYPE) .*|\w+\{.*\} .*)$", read(exporter), re.M):
        put("exposition_text", m.group(1) + "\n")


# --- remote-write 1.0 and 2.0 bodies (protobuf, uncompressed: the targets compress) ------------
def varint(n):
    n &= (1 << 64) - 1
    b = bytearray()
    while True:
        if n < 0x80:
            b.append(n)
            return bytes(b)
        b.append((n & 0x7F) | 0x80)
        n >>= 7


def field(num, wire, payload):
    if wire == 0:
        return varint(num << 3) + varint(payload)
    if wire == 1:
        return varint(num << 3 | 1) + payload
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def sample(value, ts):
    return field(1, 1, struct.pack("<d", value)) + field(2, 0, ts)


def as_float(v):
    try:
        return float(v)
    except ValueError:
        return 1.0


NOW = 1_764_892_800_000
groups = [series[i:i + 6] for i in range(0, min(len(series), 600), 6)]
for group in groups:
    v1, symbols, v2 = b"", [""], b""
    for name, labels, values in group:
        pairs = sorted(([("__name__", name)] if name else []) + label_pairs(labels))
        samples = b"".join(field(2, 2, sample(as_float(first_value(values)), NOW - k * 15_000)) for k in range(3))
        v1 += field(1, 2, b"".join(field(1, 2, field(1, 2, n.encode()) + field(2, 2, v.encode())) for n, v in pairs) + samples)
        refs = b""
        for n, v in pairs:
            for s in (n, v):
                if s not in symbols:
                    symbols.append(s)
                refs += varint(symbols.index(s))
        v2 += field(5, 2, field(1, 2, refs) + samples)
    put("remote_write_v1", v1)
    put("remote_write_v2", b"".join(field(4, 2, s.encode()) for s in symbols) + v2)

# --- scrape config, adapter rules, Kubernetes label selectors ----------------------------------
configmap = yaml.safe_load(read(os.path.join(repo, "deploy", "configmap.yaml")))
put("scrape_config", configmap["data"]["config.yaml"])
put("adapter_rules", configmap["data"]["adapter.yaml"])
for path in glob.glob(os.path.join(repo, "apiserver", "tests", "fixtures", "*.yaml")):
    put("adapter_rules", read(path))
for path in glob.glob(os.path.join(repo, "ingest", "src", "scrape*.rs")) + glob.glob(os.path.join(repo, "apiserver", "src", "**", "*.rs"), recursive=True):
    for s in rust_strings(path):
        if "job_name" in s or "scrape_configs" in s or "scrape_interval" in s:
            put("scrape_config", s)
        if "seriesQuery" in s or "metricsQuery" in s or "externalRules" in s:
            put("adapter_rules", s)
for path in glob.glob(os.path.join(repo, "apiserver", "src", "adapter", "**", "*.rs"), recursive=True):
    for m in re.finditer(r'LabelSelector::parse\("((?:[^"\\]|\\.)*)"\)', read(path)):
        put("adapter_label_selector", m.group(1))
for path in glob.glob(os.path.join(repo, "deploy", "examples", "*.yaml")):
    for doc in yaml.safe_load_all(read(path)):
        text = repr(doc)
        for m in re.finditer(r"'matchLabels': \{([^}]*)\}", text):
            pairs = re.findall(r"'([^']*)': '([^']*)'", m.group(1))
            put("adapter_label_selector", ",".join(f"{k}={v}" for k, v in pairs))
for s in ["", "app", "!app", "app in (a,b)", "tier notin (x)", "n>3", "k==v"]:
    put("adapter_label_selector", s or " ")

for target in sorted(counts):
    print(f"{target}: {counts[target]} seeds")
