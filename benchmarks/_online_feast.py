"""Feast's side of bench_online.py; runs inside Feast's own virtualenv as a subprocess.

usage: python _online_feast.py DATA_DIR sqlite|redis REDIS_CONN READS [MATERIALIZE_RUNS]
Prints one JSON line with materialization and online-read figures (in-process and `feast serve`).
"""

import json
import os
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
work = Path(tempfile.mkdtemp(prefix="feast-online-"))
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

runs = int(sys.argv[5]) if len(sys.argv) > 5 else 1
materialize_s = []  # the first run writes a fresh store, later ones overwrite every entity
for _ in range(runs):
    t0 = time.perf_counter()
    store.materialize(start, end)
    materialize_s.append(time.perf_counter() - t0)

features = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]
keys = meta["keys"]


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
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {data[:300]!r}")
        return data


def timed(fn, n):
    fn()
    samples = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {"p50_us": statistics.median(samples) * 1e6, "p99_us": samples[int(0.99 * (len(samples) - 1))] * 1e6}


def one(i=0):
    return store.get_online_features(features=features, entity_rows=[{"user_id": keys[i % len(keys)]}]).to_dict()


def hundred(i=0):
    rows = [{"user_id": keys[(i * 100 + j) % len(keys)]} for j in range(100)]
    return store.get_online_features(features=features, entity_rows=rows).to_dict()


sample = one()
result = {
    "materialize_s": materialize_s,
    "in_process_1": timed(one, reads),
    "in_process_100": timed(hundred, max(reads // 10, 50)),
    "check": {k: sample[k][0] for k in ("a0", "b0")},
}

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
feast_bin = str(Path(sys.executable).parent / "feast")
server = subprocess.Popen([feast_bin, "-c", str(work), "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
try:
    client = Http(port)
    deadline = time.time() + 120
    while time.time() < deadline and not client.get_ok("/health"):
        time.sleep(0.5)

    def http_one(i=0):
        body = {"features": features, "entities": {"user_id": [keys[i % len(keys)]]}}
        return client.post("/get-online-features", body)

    def http_hundred(i=0):
        body = {"features": features, "entities": {"user_id": [keys[(i * 100 + j) % len(keys)] for j in range(100)]}}
        return client.post("/get-online-features", body)

    result["http_1"] = timed(http_one, max(reads // 4, 100))
    result["http_100"] = timed(http_hundred, max(reads // 20, 50))
finally:
    server.terminate()
    server.wait(timeout=30)
print(json.dumps(result))
