"""Built-in data components: load a dataset version or a file, split, profile.

Each function imports what it uses inside its body: code generation copies these functions into a
standalone script as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.pipelines.components import builtin

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.pipelines.context import NodeContext


# -- load_dataset --------------------------------------------------------------------------------
def _resolve_dataset(params: dict[str, Any], services: Any) -> dict[str, Any]:
    version = services.data.version(params["dataset"], params.get("version"))
    return {"dataset": version.dataset, "version": version.version, "path": version.path,
            "sha256": version.sha256, "rows": version.rows, "local_path": services.local_artifact(version.path)}


def _script_dataset(node: str, params: dict[str, Any], resolved: dict[str, Any]) -> str:
    where = resolved.get("local_path") or resolved["path"]
    return (f'    """{resolved["dataset"]} version {resolved["version"]} ({resolved["rows"]} rows, sha256 '
            f'{resolved["sha256"][:12]})."""\n'
            f"    return pd.read_parquet(DATA.get({node!r}, {where!r}))\n")


@builtin("load_dataset", outputs={"data": "table"}, resolver=_resolve_dataset, script=_script_dataset)
def load_dataset(ctx: NodeContext, dataset: str, version: int | None = None) -> pd.DataFrame:
    """Read a version of a versioned dataset (the latest one when version is empty)."""
    import io

    import pandas as pd

    facts = ctx.resolved
    frame = pd.read_parquet(io.BytesIO(ctx.read_artifact(facts["path"], facts["sha256"])))
    ctx.record_read(facts["dataset"], facts["version"])
    ctx.log_params({"dataset": facts["dataset"], "dataset_version": facts["version"]})
    return frame


# -- load_file -----------------------------------------------------------------------------------
def _resolve_file(params: dict[str, Any], services: Any) -> dict[str, Any]:
    from shipyard.artifacts import sha256_file

    path = Path(str(params["path"]))
    if not path.is_absolute():
        path = Path(services.base_dir) / path
    if not path.is_file():
        raise InvalidInput(f"file {str(path)!r} does not exist", {"field": "path"})
    digest, size = sha256_file(path)
    return {"path": str(path.resolve()), "sha256": digest, "size": size}


def _script_file(node: str, params: dict[str, Any], resolved: dict[str, Any]) -> str:
    return (f"    path = DATA.get({node!r}, {resolved['path']!r})\n"
            f"    return load_file_at(path, {params.get('format')!r})\n")


@builtin("load_file", outputs={"data": "table"}, resolver=_resolve_file, script=_script_file)
def load_file(ctx: NodeContext, path: str, format: str | None = None) -> pd.DataFrame:  # noqa: A002
    """Read a CSV, Parquet or Excel file (a path relative to the pipeline file's folder)."""
    import pandas as pd

    where = ctx.resolved["path"]
    kind = format or where.rsplit(".", 1)[-1].lower()
    if kind in ("parquet", "pq"):
        return pd.read_parquet(where)
    if kind in ("xlsx", "excel"):
        return pd.read_excel(where)
    return pd.read_csv(where)


# -- split ---------------------------------------------------------------------------------------
@builtin("split", inputs={"data": "table"}, outputs={"train": "table", "test": "table"},
         choices={"method": ("stratified", "random", "oot")})
def split(ctx: NodeContext, data: pd.DataFrame, target: str, method: str = "stratified", test_size: float = 0.3,
          seed: int = 0, time_column: str | None = None, cutoff: Any = None) -> dict[str, pd.DataFrame]:
    """Split rows into train and test: at random, stratified on the target, or out of time.

    ``oot`` puts rows whose ``time_column`` is at or before ``cutoff`` in train and later rows in test;
    without a cutoff, the time at the (1 - test_size) quantile is used.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if target not in data.columns:
        raise ValueError(f"target column {target!r} is not in the data; columns: {list(data.columns)[:20]}")
    if method == "oot":
        if not time_column or time_column not in data.columns:
            raise ValueError("method 'oot' needs time_column, a column of the data")
        times = data[time_column]
        limit = times.quantile(1 - test_size) if cutoff is None else pd.Series([cutoff]).astype(times.dtype).iloc[0]
        train, test = data[times <= limit], data[times > limit]
    else:
        stratify = data[target] if method == "stratified" else None
        train, test = train_test_split(data, test_size=test_size, random_state=seed, stratify=stratify)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    ctx.log_metrics({"train_rows": len(train), "test_rows": len(test)})
    return {"train": train, "test": test}


# -- profile -------------------------------------------------------------------------------------
@builtin("profile", inputs={"data": "table"}, outputs={"summary": "json"})
def profile(ctx: NodeContext, data: pd.DataFrame, target: str | None = None, bad_value: Any = None) -> dict:
    """Data-quality profile (report.html and report.json) and the IV of each column against the target."""
    from shipyard.data.profile import profile as data_profile

    prof = data_profile(data, target=target, bad=bad_value)
    ctx.write_text("profile.html", prof.to_html())
    ctx.write_text("profile.json", prof.to_json())
    overview = prof.overview()
    ctx.log_metrics({"rows": overview["rows"], "flagged_columns": overview["flagged_columns"],
                     "missing_cell_rate": overview["missing_cell_rate"]})
    summary = {"overview": overview,
               "flags": {c.name: list(c.flags) for c in prof.columns.values() if c.flags}}
    if target:
        summary["iv"] = {r.column: float(r.iv) for r in prof.iv_table().itertuples()}
    return summary
