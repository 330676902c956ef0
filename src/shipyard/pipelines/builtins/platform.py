"""Built-in platform components: register a model in the registry, materialize features.

They act on the project through ``ctx.workspace``; in a generated standalone script they are replaced
by stand-ins (the model is written to a file; materialization is left to Shipyard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.pipelines.components import builtin

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.pipelines.context import NodeContext


def _script_register(node: str, params: dict[str, Any], resolved: dict[str, Any]) -> str:
    return ("    # registration happens in Shipyard; the standalone script keeps the model as a file\n"
            "    import pickle\n"
            "    OUTPUT.mkdir(parents=True, exist_ok=True)\n"
            f"    path = OUTPUT / {params['name'] + '.pkl'!r}\n"
            "    path.write_bytes(pickle.dumps(model))\n"
            "    print(f'model written to {path}')\n"
            f"    return {{'name': {params['name']!r}, 'path': str(path)}}\n")


@builtin("register_model", inputs={"model": "model", "example": "table", "features": "json", "metrics": "json"},
         outputs={"version": "json"}, optional=("example", "features", "metrics"), script=_script_register)
def register_model(ctx: NodeContext, model: Any, name: str, example: pd.DataFrame | None = None,
                   features: list | None = None, metrics: dict | None = None, description: str = "",
                   await_validation: bool = True) -> dict:
    """Log the model in this node's run and register it as the next version of ``name``, with the
    dataset versions the pipeline read as lineage and the connected metrics on the version."""
    from shipyard.models.log_model import log_model

    ws = ctx.workspace
    names = getattr(model, "feature_names_in_", None)
    columns = list(features) if features else ([str(c) for c in names] if names is not None else None)
    sample = None
    if example is not None:
        sample = (example[columns] if columns else example).head(5)
    reads = ctx.resolved.get("upstream_reads", [])
    lineage = {"dataset_version": ",".join(f"{r['dataset']}@{r['version']}" for r in reads)} if reads else None
    logged = log_model(model, "model", run=ctx.run, registered_model_name=name, input_example=sample,
                       lineage=lineage, await_validation=await_validation)
    version = logged.registered_version
    clean = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)}
    if clean:
        ctx.log_metrics(clean)
    for read in reads:
        ws.data.record_read(read["dataset"], read["version"], "model_version", f"{name}/{version.version}",
                            actor=ws.user)
    if description:
        ctx.log_param("description", description)
    return {"name": version.name, "version": version.version, "status": version.status,
            "run_id": ctx.run_id, "metrics": clean}


def _script_materialize(node: str, params: dict[str, Any], resolved: dict[str, Any]) -> str:
    return "    print('materialization runs in Shipyard: skipped in the standalone script')\n    return {}\n"


@builtin("materialize_features", outputs={"result": "json"}, script=_script_materialize, cacheable=False)
def materialize_features(ctx: NodeContext, views: list | None = None, incremental: bool = True,
                         start: str | None = None, end: str | None = None) -> dict:
    """Copy feature values to the online store: incrementally (since the last run) or for start..end."""
    ws = ctx.workspace
    if incremental:
        results = ws.features.materialize_incremental(end=end, views=views)
    else:
        results = ws.features.materialize(start, end, views=views)
    rows = {str(getattr(r, "view", i)): int(getattr(r, "rows_written", 0)) for i, r in enumerate(results or [])}
    ctx.log_metric("rows_written", float(sum(rows.values())))
    return {"rows_written": rows}
