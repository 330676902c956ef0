"""Feast's side of bench_online.py; runs inside Feast's own virtualenv as a subprocess.

usage: python _online_feast.py DATA_DIR sqlite|redis REDIS_CONN READS MATERIALIZE_RUNS ANSWERS_JSON
Prints one JSON line with materialization and online-read figures (in-process and `feast serve`) and
writes every answer of the timed requests (re-run after the timing) to ANSWERS_JSON, for the caller
to check. Its temporary folder is removed at the end; it deletes nothing else.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

data, backend, redis_conn, reads = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
runs, answers_file = int(sys.argv[5]), Path(sys.argv[6])
FEATURES = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]
NAMES = [f.split(":")[1] for f in FEATURES]


class Http:
    """Keep-alive JSON POSTs over the standard library (the same client on both sides)."""

    def __init__(self, port):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get_ok(self, path):
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            self.conn.close()
            return False

    def post(self, path, body):
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:300]!r}")
        return body


def timed(fn, n):
    fn(0)
    samples = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {"p50_us": statistics.median(samples) * 1e6, "p99_us": samples[int(0.99 * (len(samples) - 1))] * 1e6}


def one_keys(keys, i):
    return [keys[i % len(keys)]]


def hundred_keys(keys, i):
    return [keys[(i * 100 + j) % len(keys)] for j in range(100)]


def http_columns(body):
    """feast serve's answer (per feature: values, statuses, event times) as columns of values."""
    doc = json.loads(body)
    return {name: result["values"] for name, result in zip(doc["metadata"]["feature_names"], doc["results"], strict=True)}


def main(work):
    online = (f"online_store:\n  type: sqlite\n  path: {work / 'online.db'}\n" if backend == "sqlite"
              else f"online_store:\n  type: redis\n  connection_string: \"{redis_conn}\"\n")
    (work / "feature_store.yaml").write_text(
        f"project: bench_online\nregistry: {work / 'registry.db'}\nprovider: local\n{online}"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(work))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view_a = FeatureView(name="view_a", entities=[user], ttl=timedelta(days=2),
                         schema=[Field(name=f"a{i}", dtype=Float64) for i in range(5)],
                         source=FileSource(path=str(data / "view_a.parquet"), timestamp_field="ts"))
    view_b = FeatureView(name="view_b", entities=[user], ttl=timedelta(days=30),
                         schema=[Field(name=f"b{i}", dtype=Int64) for i in range(5)],
                         source=FileSource(path=str(data / "view_b.parquet"), timestamp_field="ts"))
    store.apply([user, view_a, view_b])
    meta = json.loads((data / "meta.json").read_text())
    start, end = pd.Timestamp(meta["start"]).to_pydatetime(), pd.Timestamp(meta["end"]).to_pydatetime()

    materialize_s = []  # the first run writes a fresh store, later ones overwrite every entity
    for _ in range(runs):
        t0 = time.perf_counter()
        store.materialize(start, end)
        materialize_s.append(time.perf_counter() - t0)

    keys, unknown = meta["keys"], meta["unknown"]

    def ask(entity_keys):
        return store.get_online_features(features=FEATURES, entity_rows=[{"user_id": k} for k in entity_keys]).to_dict()

    n_one, n_hundred = reads, max(reads // 10, 50)
    result = {"materialize_s": materialize_s,
              "in_process_1": timed(lambda i: ask(one_keys(keys, i)), n_one),
              "in_process_100": timed(lambda i: ask(hundred_keys(keys, i)), n_hundred)}
    answers = {
        "in-process 1": [(one_keys(keys, i), ask(one_keys(keys, i))) for i in range(n_one)],
        "in-process 100": [(hundred_keys(keys, i), ask(hundred_keys(keys, i))) for i in range(n_hundred)]
        + [(unknown, ask(unknown))] + [([k], ask([k])) for k in unknown],
    }

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feast_bin = str(Path(sys.executable).parent / "feast")
    server = subprocess.Popen([feast_bin, "-c", str(work), "serve", "-h", "127.0.0.1", "-p", str(port),
                               "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ})
    try:
        client = Http(port)
        deadline = time.time() + 120
        while not client.get_ok("/health"):
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("feast serve did not start")
            time.sleep(0.5)

        def http(entity_keys):
            return client.post("/get-online-features", {"features": FEATURES, "entities": {"user_id": entity_keys}})

        n_http_1, n_http_100 = max(reads // 4, 100), max(reads // 20, 50)
        result["http_1"] = timed(lambda i: http(one_keys(keys, i)), n_http_1)
        result["http_100"] = timed(lambda i: http(hundred_keys(keys, i)), n_http_100)
        checked, sizes = [], {}
        for label, n, pick in (("1", n_http_1, one_keys), ("100", n_http_100, hundred_keys)):
            for i in range(n):
                body = http(pick(keys, i))
                sizes.setdefault(label, len(body))
                checked.append((pick(keys, i), http_columns(body)))
        checked.append((unknown, http_columns(http(unknown))))
        answers["HTTP"] = checked
        result["http_bytes"] = sizes
    finally:
        server.terminate()
        server.wait(timeout=30)
    answers_file.write_text(json.dumps({label: [(k, {n: c[n] for n in NAMES}) for k, c in rows]
                                        for label, rows in answers.items()}))
    print(json.dumps(result))


work = Path(tempfile.mkdtemp(prefix="feast-online-"))
try:
    main(work)
finally:
    shutil.rmtree(work, ignore_errors=True)
