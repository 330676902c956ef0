"""Concurrent registrations (several processes) and alias moves (threads and processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

from shipyard.artifacts import sha256_dir

# Each worker registers (or moves an alias) in its own process; validation is switched off there
# because these tests are about the transaction that numbers versions and moves aliases.
WORKER = textwrap.dedent(
    """
    import json, sys
    from shipyard.config import load_settings
    from shipyard.models.registry import ModelRegistry
    from shipyard.workspace import Workspace

    args = json.loads(sys.argv[1])
    ModelRegistry.start_validation = lambda *a, **k: None
    ws = Workspace(load_settings(args["project"], metadata_url=args["url"], artifact_root=args["root"],
                                 user=args["user"]))
    out = []
    for i in range(args["count"]):
        if args["mode"] == "register":
            out.append(ws.registry.register(args["model"], "credit").version)
        else:
            version = args["versions"][i % len(args["versions"])]
            ws.registry.set_alias("credit", "champion", version, force=True)
            out.append(version)
    print(json.dumps(out))
    ws.close()
    """
)


def run_workers(workspace, tmp_path, n: int, **args) -> list[list[int]]:
    settings = workspace.settings
    base = {"project": str(tmp_path / "project"), "url": settings.metadata_url, "root": settings.artifact_root}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, json.dumps({**base, **args, "user": f"w{i}"})],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        for i in range(n)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_registrations_from_several_processes_number_versions_without_gaps(
        workspace, model_dir, tmp_path):
    workspace.registry.create_model("credit", requires_approval=False)
    results = run_workers(workspace, tmp_path, 3, mode="register", model=str(model_dir), count=3)
    got = sorted(v for per_proc in results for v in per_proc)
    assert got == list(range(1, 10))
    for per_proc in results:
        assert per_proc == sorted(per_proc)
    versions = workspace.registry.list_versions("credit")
    assert [v.version for v in versions] == list(range(1, 10))
    expected_sha = sha256_dir(model_dir)[0]
    for mv in versions:
        assert mv.sha256 == expected_sha
        workspace.registry.verify("credit", mv.version)  # every folder complete and intact
    registered = [e for e in workspace.registry.history("credit") if e["kind"] == "model.version_registered"]
    assert sorted(e["details"]["version"] for e in registered) == list(range(1, 10))


def _check_alias_history(registry, moves_expected: int) -> None:
    history = registry.alias_history("credit", "champion")
    assert len(history) == moves_expected
    assert registry.get_alias("credit", "champion").version == history[-1].version
    events = [e for e in reversed(registry.history("credit", limit=1000)) if e["kind"] == "model.alias_set"]
    assert [e["details"]["version"] for e in events] == [m.version for m in history]
    # Each move saw the previous committed move: the chain of (previous -> version) is unbroken.
    for before, after in zip(events, events[1:], strict=False):
        assert after["details"]["previous"] == before["details"]["version"]
    assert events[0]["details"]["previous"] is None


def test_concurrent_alias_moves_from_threads_serialize(workspace, model_dir):
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    for _ in range(3):
        reg.register(model_dir, "credit")
    errors: list[BaseException] = []

    def mover(offset: int) -> None:
        try:
            for i in range(6):
                reg.set_alias("credit", "champion", (offset + i) % 3 + 1, force=True, actor=f"t{offset}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _check_alias_history(reg, 36)


def test_concurrent_alias_moves_from_processes_serialize(workspace, model_dir, tmp_path):
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    for _ in range(2):
        reg.register(model_dir, "credit")
    run_workers(workspace, tmp_path, 3, mode="alias", versions=[1, 2], count=5)
    _check_alias_history(reg, 15)
    assert reg.rollback("credit", "champion").version == reg.alias_history("credit", "champion")[-3].version
