"""``shipyard runs`` and ``shipyard experiments`` print aligned tables with the stored numbers."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shipyard.cli import main
from shipyard.workspace import connect


def _seed(project: Path) -> list[str]:
    ws = connect(project, user="alice")
    ids = []
    for name, auc, model in (("alpha", 0.71, "lgbm"), ("beta", 0.83, "xgb"), ("gamma", 0.64, "lgbm")):
        with ws.tracking.start_run(experiment="credit", name=name) as run:
            run.log_params({"model": model})
            run.log_metrics({"auc": auc, "ks": auc / 2})
        ids.append(run.id)
    ws.tracking.start_run(experiment="other", name="delta").end()
    (project / "r.txt").write_text("x")
    ws.tracking.log_artifact(ids[0], project / "r.txt")
    ws.close()
    return ids


def test_runs_list_show_compare(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    ids = _seed(project)
    runner = CliRunner()

    out = runner.invoke(main, ["--project", str(project), "runs", "list", "-e", "credit",
                               "--filter", "metrics.auc > 0.7", "--order-by", "metrics.auc DESC"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["run_id", "name", "status", "started", "auc", "ks"]
    assert lines[2].split()[:3] == [ids[1], "beta", "FINISHED"] and lines[2].split()[-2:] == ["0.83", "0.415"]
    assert lines[3].split()[:2] == [ids[0], "alpha"] and lines[3].split()[-2:] == ["0.71", "0.355"]
    assert lines[-1] == "2 run(s)"
    # aligned: every row's auc column ends at the same place as the header's
    assert len({len(line) for line in lines[:4]}) == 1

    out = runner.invoke(main, ["--project", str(project), "runs", "list"])
    assert out.output.splitlines()[-1] == "4 run(s)"

    out = runner.invoke(main, ["--project", str(project), "runs", "show", ids[0]])
    assert out.exit_code == 0, out.output
    assert "name           alpha" in out.output
    assert any(line.split() == ["auc", "0.71"] for line in out.output.splitlines())
    assert any(line.split() == ["model", "lgbm"] for line in out.output.splitlines())
    assert any(line.split()[:2] == ["r.txt", "1"] for line in out.output.splitlines())

    out = runner.invoke(main, ["--project", str(project), "runs", "compare", ids[0], ids[1], ids[2]])
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line.split()[1:] for line in out.output.splitlines()[2:]}
    assert rows["metrics.auc"] == ["0.71", "0.83", "0.64"]
    assert rows["params.model"] == ["lgbm", "xgb", "lgbm"]
    assert rows["name"] == ["alpha", "beta", "gamma"]

    out = runner.invoke(main, ["--project", str(project), "experiments", "list"])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()[2:]]
    assert [(r[1], r[-1]) for r in rows] == [("credit", "3"), ("other", "1")]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    _seed(project)
    runner = CliRunner()
    out = runner.invoke(main, ["--project", str(project), "runs", "show", "nope"])
    assert out.exit_code == 1
    assert "error [not_found]: run 'nope' does not exist" in out.output
    out = runner.invoke(main, ["--project", str(project), "runs", "list", "--filter", "metrics.auc > 'x'"])
    assert out.exit_code == 1 and "compares to numbers" in out.output


def test_runs_show_takes_a_unique_id_prefix(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    ids = _seed(project)
    ws = connect(project, user="alice")
    while len({i[0] for i in ids}) == len(ids):  # make two ids share a first character (16 hex digits)
        with ws.tracking.start_run(experiment="credit", name=f"extra{len(ids)}") as run:
            pass
        ids.append(run.id)
    ws.close()
    runner = CliRunner()
    target = ids[0]
    unique = next(target[:n] for n in range(1, len(target)) if sum(i.startswith(target[:n]) for i in ids) == 1)
    out = runner.invoke(main, ["--project", str(project), "runs", "show", unique])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split() == ["run_id", target] and "alpha" in out.output

    shared = next(i[0] for i in ids if sum(j.startswith(i[0]) for j in ids) > 1)
    candidates = sorted(i for i in ids if i.startswith(shared))
    out = runner.invoke(main, ["--project", str(project), "runs", "show", shared])
    assert out.exit_code != 0
    assert f"run id prefix '{shared}' is ambiguous" in out.output
    assert all(c in out.output for c in candidates) and "give more characters" in out.output

    out = runner.invoke(main, ["--project", str(project), "runs", "show", "zz-no-such-run"])
    assert out.exit_code != 0 and "run 'zz-no-such-run' does not exist" in out.output
    out = runner.invoke(main, ["--project", str(project), "runs", "compare", ids[0][:8], ids[1]])
    assert out.exit_code == 0, out.output
