"""Versioned datasets on file sources: chunked reads, immutable versions, diff, lineage, faults, CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from shipyard.data.datasets import DatasetVersions
from shipyard.data.sources import Masker
from shipyard.errors import AlreadyExists, Conflict, InvalidInput, NotFound, StoreUnavailable
from shipyard.workspace import Workspace
from tests.data.conftest import loans_frame


def _naive_psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Deciles of the reference, right-closed bins, eps in place of empty shares."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    total = 0.0
    bounds = [-np.inf, *edges, np.inf]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        e = np.mean((expected > lo) & (expected <= hi))
        a = np.mean((actual > lo) & (actual <= hi))
        e, a = (e if e > 0 else eps), (a if a > 0 else eps)
        total += (a - e) * np.log(a / e)
    return total


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def _file_dataset(ws: Workspace, landing: Path, path: str, **spec: object) -> None:
    ws.data.add_source("landing", "file", {"root": str(landing)}, actor="alice")
    ws.data.create_dataset("loans", "landing", {"path": path, **spec}, actor="alice")


def test_parquet_refresh_in_chunks_makes_an_immutable_version(workspace: Workspace, landing: Path) -> None:
    frame = loans_frame(1000)
    frame.to_parquet(landing / "loans.parquet", row_group_size=100)
    _file_dataset(workspace, landing, "loans.parquet", profile={"target": "bad"})
    seen: list[tuple[int, int | None]] = []
    result = workspace.data.refresh("loans", actor="alice", chunk_rows=128,
                                    progress=lambda done, total: seen.append((done, total)))
    assert result.created and result.version.version == 1 and result.version.rows == 1000
    assert len(seen) > 5 and seen[-1] == (1000, 1000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    version = result.version
    stored = workspace.artifacts.get_bytes(version.path)
    assert hashlib.sha256(stored).hexdigest() == version.sha256 and len(stored) == version.size
    assert [c["name"] for c in version.schema] == list(frame.columns)
    assert {c["name"]: c["type"] for c in version.schema}["amount"] == "double"
    assert version.profile["overview"]["rows"] == 1000
    assert set(version.profile["iv"]) == set(frame.columns) - {"bad"}
    back = workspace.data.read("loans")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    profile = json.loads(workspace.data.versions.profile_document(version))
    assert profile["overview"]["rows"] == 1000


def test_csv_blocks_whose_types_differ_need_column_types(workspace: Workspace, landing: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.data import file_source

    frame = loans_frame(3000)
    frame.to_csv(landing / "loans.csv", index=False)
    monkeypatch.setattr(file_source, "CSV_BLOCK_BYTES", 4096)  # many blocks, the first without late_fee values
    _file_dataset(workspace, landing, "loans.csv")
    with pytest.raises(InvalidInput) as err:
        workspace.data.refresh("loans", actor="alice")
    assert err.value.details["field"] == "column_types" and "column_types" in err.value.message
    assert workspace.data.list_versions("loans") == [] and workspace.artifacts.list("datasets") == []
    workspace.data.create_dataset("loans", "landing", {"path": "loans.csv", "column_types": {"late_fee": "double"}},
                                  actor="alice", replace=True)
    result = workspace.data.refresh("loans", actor="alice")
    reference = pd.read_csv(landing / "loans.csv")
    pd.testing.assert_frame_equal(workspace.data.read("loans"), reference, check_dtype=False)
    assert result.version.rows == len(reference)


def test_excel_source(workspace: Workspace, landing: Path) -> None:
    frame = loans_frame(200)
    frame.to_excel(landing / "loans.xlsx", index=False, sheet_name="book")
    _file_dataset(workspace, landing, "loans.xlsx", sheet="book")
    workspace.data.refresh("loans", actor="alice", chunk_rows=50)
    pd.testing.assert_frame_equal(workspace.data.read("loans"), pd.read_excel(landing / "loans.xlsx"),
                                  check_dtype=False)


def test_unchanged_content_adds_no_version_and_diff_reports_schema_rows_and_psi(workspace: Workspace,
                                                                                landing: Path) -> None:
    first = loans_frame(2000, seed=1)
    first.to_parquet(landing / "loans.parquet")
    _file_dataset(workspace, landing, "loans.parquet")
    assert workspace.data.refresh("loans", actor="alice").created
    again = workspace.data.refresh("loans", actor="alice")
    assert not again.created and again.version.version == 1
    assert workspace.data.refresh("loans", actor="alice", force=True).version.version == 2

    second = loans_frame(2500, seed=2, shift=0.4).drop(columns=["grade"])
    second["term"] = second["term"].astype(float)
    second["channel"] = "web"
    second.to_parquet(landing / "loans.parquet")
    assert workspace.data.refresh("loans", actor="alice").version.version == 3
    diff = workspace.data.diff("loans")
    assert (diff.a, diff.b, diff.rows_a, diff.rows_b, diff.row_delta) == (2, 3, 2000, 2500, 500)
    assert diff.added == [{"name": "channel", "type": "string"}]
    assert diff.removed == [{"name": "grade", "type": "string"}]
    assert diff.type_changed == [{"name": "term", "from": "int64", "to": "double"}]
    drift = {d["column"]: d for d in diff.drift}
    expected = _naive_psi(first["amount"].to_numpy(), second["amount"].to_numpy())
    assert drift["amount"]["psi"] == pytest.approx(expected, rel=1e-9)
    assert drift["amount"]["level"] == "significant" and drift["loan_id"]["level"] == "moderate"
    assert drift["bad"]["level"] == "stable"
    assert [v.version for v in workspace.data.list_versions("loans")] == [1, 2, 3]


def test_drifted_says_whether_each_column_drifted_and_is_stored_for_the_next_comparison(
        workspace: Workspace, landing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v2 draws the same distributions as v1, v3 shifts ``amount``: ``drifted`` follows an independent
    PSI (and KS agrees); the result of a pair is read back without reading the versions again."""
    from scipy.stats import ks_2samp

    frames = [loans_frame(4000, seed=1), loans_frame(4000, seed=2), loans_frame(4000, seed=3, shift=0.4)]
    _file_dataset(workspace, landing, "loans.parquet")
    for frame in frames:
        frame.to_parquet(landing / "loans.parquet")
        workspace.data.refresh("loans", actor="alice")
    same = {d["column"]: d for d in workspace.data.diff("loans", 1, 2).drift}
    shifted = {d["column"]: d for d in workspace.data.diff("loans", 2, 3).drift}
    for (ref, cur), drift in (((frames[0], frames[1]), same), ((frames[1], frames[2]), shifted)):
        for column in ("amount", "term", "bad"):
            expected = _naive_psi(ref[column].to_numpy(float), cur[column].to_numpy(float))
            assert drift[column]["psi"] == pytest.approx(expected, rel=1e-9)
            assert drift[column]["drifted"] is bool(expected >= 0.25), column
    assert not same["amount"]["drifted"] and shifted["amount"]["drifted"]
    assert ks_2samp(frames[0]["amount"], frames[1]["amount"]).pvalue > 0.01
    assert ks_2samp(frames[1]["amount"], frames[2]["amount"]).pvalue < 1e-6
    assert [c for c, d in shifted.items() if d["drifted"]] == ["amount"]
    assert [c for c, d in same.items() if d["drifted"]] == []

    def no_reading(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a stored comparison read a version again")

    monkeypatch.setattr(DatasetVersions, "read", no_reading)
    assert workspace.data.diff("loans", 2, 3).to_dict()["drift"] == list(shifted.values())
    assert len(workspace.artifacts.list("datasets/loans/drift/")) == 2  # one per compared pair


def _decimal_file(path: Path, values: np.ndarray, precision: int) -> None:
    """A Parquet file whose ``amt`` column is decimal128(precision, 1), as a NUMERIC query result is."""
    from decimal import Decimal

    amt = pa.array([Decimal(f"{v:.1f}") for v in values], type=pa.decimal128(precision, 1))
    pa.parquet.write_table(pa.table({"amt": amt, "n": pa.array(np.arange(len(values)))}), path)


def test_decimal_precision_change_is_not_a_retype_and_drift_bins_decimals_as_numbers(workspace: Workspace,
                                                                                     landing: Path) -> None:
    import pyarrow.parquet  # noqa: F401 - pa.parquet

    rng = np.random.default_rng(7)
    first = np.round(rng.normal(5000, 1500, 3000).clip(100, 9999), 1)
    second = np.round(rng.normal(5600, 1500, 3000).clip(100, 99999), 1)
    second[:5] = 12345.6  # one more digit: the source types the column decimal128(6, 1)
    _decimal_file(landing / "amt.parquet", first, 5)
    _file_dataset(workspace, landing, "amt.parquet")
    workspace.data.refresh("loans", actor="alice")
    _decimal_file(landing / "amt.parquet", second, 6)
    workspace.data.refresh("loans", actor="alice")
    diff = workspace.data.diff("loans")
    assert diff.type_changed == []
    assert diff.precision_changed == [{"name": "amt", "from": "decimal128(5, 1)", "to": "decimal128(6, 1)",
                                       "change": "widened"}]
    drift = {d["column"]: d for d in diff.drift}
    assert drift["amt"]["psi"] == pytest.approx(_naive_psi(first, second), rel=1e-9)
    narrowed = workspace.data.diff("loans", 2, 1).precision_changed
    assert [c["change"] for c in narrowed] == ["narrowed"]


class _Failing:
    """A source that dies after its first chunk, like a database connection dropping mid-read."""

    def test(self) -> None:  # pragma: no cover - not used
        raise AssertionError

    def count_rows(self, what: object) -> int:
        return 10

    def read_batches(self, what: object, chunk_rows: int) -> Iterator[pa.Table]:
        yield pa.table({"x": [1, 2, 3]})
        raise StoreUnavailable("connection to the source was lost")

    def close(self) -> None:
        return None


def test_a_source_failing_mid_read_leaves_no_version_and_no_file(workspace: Workspace, landing: Path) -> None:
    _file_dataset(workspace, landing, "loans.parquet")
    versions = DatasetVersions(workspace.store, workspace.artifacts)
    with pytest.raises(StoreUnavailable, match="lost"):
        versions.write_version("loans", _Failing(), {"path": "x"}, "alice", progress=lambda d, t: None)
    assert workspace.data.list_versions("loans") == []
    assert workspace.artifacts.list("datasets") == []
    assert workspace.data.get_dataset("loans").latest_version == 0


def test_a_source_that_is_down_gives_a_clear_error_and_nothing(workspace: Workspace) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    workspace.secrets.put("pg_pw", "hunter2-Secret", actor="alice")
    workspace.data.add_source("down", "sql", {"url": f"postgresql+psycopg://etl@127.0.0.1:{port}/dwh",
                                              "secrets": {"password": "pg_pw"}}, actor="alice")
    workspace.data.create_dataset("loans", "down", {"table": "loans"}, actor="alice")
    with pytest.raises(StoreUnavailable) as err:
        workspace.data.refresh("loans", actor="alice")
    assert f"127.0.0.1:{port}" in err.value.message and "hunter2-Secret" not in err.value.message
    test = workspace.data.test_source("down")
    assert not test.ok and "hunter2-Secret" not in test.message
    assert workspace.data.list_versions("loans") == [] and workspace.artifacts.list("datasets") == []


def test_masker_hides_plain_and_url_encoded_values() -> None:
    mask = Masker()
    mask.add("p@ss/word")
    assert mask("auth failed for p@ss/word (p%40ss%2Fword)") == "auth failed for *** (***)"


@pytest.mark.parametrize(("kind", "spec", "field"), [
    ("sql", {"url": "postgresql+psycopg://etl:topsecret@db/dwh"}, "url"),
    ("sql", {"url": "not a url"}, "url"),
    ("sql", {"url": "postgresql+psycopg://etl@db/dwh", "secrets": {"password": "missing_secret"}}, "secrets"),
    ("file", {"root": "/tmp", "storage_options": {"secret": "abc"}}, "storage_options.secret"),
    ("file", {"root": "/tmp", "bucket": "x"}, "bucket"),
    ("spark", {"conf": {"spark.hadoop.fs.s3a.secret.key": "abc"}}, "conf.spark.hadoop.fs.s3a.secret.key"),
    ("ftp", {}, "kind"),
])
def test_bad_source_specs_are_refused_and_store_nothing(sqlite_workspace: Workspace, kind: str, spec: dict,
                                                        field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sqlite_workspace.data.add_source("src", kind, spec, actor="alice")
    assert err.value.details["field"] == field
    assert "topsecret" not in err.value.message and "abc" not in err.value.message
    assert sqlite_workspace.data.list_sources() == []


def test_bad_dataset_specs_and_names(sqlite_workspace: Workspace, landing: Path) -> None:
    ws = sqlite_workspace
    ws.data.add_source("landing", "file", {"root": str(landing)}, actor="alice")
    with pytest.raises(InvalidInput, match="exactly one of"):
        ws.data.create_dataset("d", "landing", {"query": "select 1"}, actor="alice")
    with pytest.raises(InvalidInput) as err:
        ws.data.create_dataset("d", "landing", {"path": "a.csv", "sql": "x"}, actor="alice")
    assert err.value.details["field"] == "sql"
    with pytest.raises(InvalidInput, match="name"):
        ws.data.create_dataset("9d", "landing", {"path": "a.csv"}, actor="alice")
    with pytest.raises(NotFound, match="nosuch"):
        ws.data.create_dataset("d", "nosuch", {"path": "a.csv"}, actor="alice")
    assert ws.data.list_datasets() == []
    ws.data.create_dataset("d", "landing", {"path": "a.csv"}, actor="alice")
    with pytest.raises(AlreadyExists):
        ws.data.create_dataset("d", "landing", {"path": "b.csv"}, actor="alice")
    with pytest.raises(Conflict, match="'d'"):
        ws.data.delete_source("landing", actor="alice")
    with pytest.raises(NotFound, match="no file matches"):
        ws.data.refresh("d", actor="alice")
    with pytest.raises(InvalidInput, match=r"\.\."):
        ws.data.preview("landing", {"path": "../etc/passwd"})


def test_lineage_records_readers_by_kind(sqlite_workspace: Workspace, landing: Path) -> None:
    ws = sqlite_workspace
    loans_frame(100).to_parquet(landing / "loans.parquet")
    _file_dataset(ws, landing, "loans.parquet")
    ws.data.refresh("loans", actor="alice")
    ws.data.record_read("loans", 1, "run", "abc123", actor="alice")
    ws.data.record_read("loans", 1, "model_version", "credit/3", actor="alice")
    ws.data.record_read("loans", 1, "feature_view", "loan_stats", actor="alice")
    with pytest.raises(InvalidInput, match="reader_kind"):
        ws.data.record_read("loans", 1, "notebook", "x", actor="alice")
    with pytest.raises(NotFound):
        ws.data.record_read("loans", 7, "run", "x", actor="alice")
    lineage = ws.data.lineage("loans")
    assert lineage["versions"] == [1]
    assert {k: [r["id"] for r in v] for k, v in lineage["readers"].items()} == {
        "run": ["abc123"], "model_version": ["credit/3"], "feature_view": ["loan_stats"]}


def test_cli_sources_and_datasets(tmp_path: Path, landing: Path) -> None:
    from shipyard.cli import main

    loans_frame(500, seed=3).to_csv(landing / "loans.csv", index=False)
    project = str(tmp_path / "proj")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["-p", project, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("data", "sources", "add", "landing", "--kind", "file", "--root", str(landing))
    assert "landing" in run("data", "sources", "list")
    assert run("data", "sources", "test", "landing").startswith("ok:")
    assert "loan_id" in run("data", "sources", "preview", "landing", "--path", "loans.csv", "--limit", "3")
    run("datasets", "create", "loans", "--source", "landing", "--path", "loans.csv", "--target", "bad")
    assert "version 1: 500 rows" in run("datasets", "refresh", "loans")
    assert "unchanged" in run("datasets", "refresh", "loans")
    loans_frame(600, seed=4).to_csv(landing / "loans.csv", index=False)
    assert "version 2: 600 rows" in run("datasets", "refresh", "loans", "--chunk-rows", "50")
    assert "v2" in run("datasets", "list")
    versions = json.loads(run("datasets", "versions", "loans", "--json"))
    assert [v["rows"] for v in versions] == [500, 600]
    assert "rows 500 → 600 (+100)" in run("datasets", "diff", "loans")
    result = runner.invoke(main, ["-p", project, "datasets", "refresh", "nosuch"])
    assert result.exit_code == 1 and "nosuch" in result.output
