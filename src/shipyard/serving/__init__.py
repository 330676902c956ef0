"""Serving: scenes (versioned decision flows), traffic policies, hot swap, release checks.

    import shipyard as sy
    from shipyard.serving import ServingEngine, apply_scene, flow

    ws = sy.connect()
    apply_scene(ws, {
        "name": "credit_apply",
        "inputs": {"applicant_id": "string", "amount": "double"},
        "flow": [flow.features("applicant", {"applicant_id": "applicant_id"}),
                 flow.model("credit_gbm", "champion", output="score"),
                 flow.rules([{"when": "score > 0.8", "then": "reject"}], default="approve")],
    })
    engine = ServingEngine(ws)
    engine.predict_scene("credit_apply", [{"applicant_id": "a1", "amount": 5000.0}], single=True)
"""

from shipyard.serving import flow
from shipyard.serving.engine import ServedModel, ServedScene, ServingEngine
from shipyard.serving.expr import Expression, compile_expression
from shipyard.serving.flow import CompiledFlow, compile_flow
from shipyard.serving.prediction_log import PredictionLog, read_prediction_log
from shipyard.serving.scene import (
    CompiledScene,
    SceneVersion,
    apply_scene,
    compile_scene,
    get_scene,
    list_scenes,
    list_versions,
    load_scene_file,
)
from shipyard.serving.sources import ModelCatalog, RegistryModels, StaticFeatures, StoreFeatures
from shipyard.serving.traffic import TrafficPolicy, bucket

__all__ = [
    "CompiledFlow",
    "CompiledScene",
    "Expression",
    "ModelCatalog",
    "PredictionLog",
    "RegistryModels",
    "SceneVersion",
    "ServedModel",
    "ServedScene",
    "ServingEngine",
    "StaticFeatures",
    "StoreFeatures",
    "TrafficPolicy",
    "apply_scene",
    "bucket",
    "compile_expression",
    "compile_flow",
    "compile_scene",
    "flow",
    "get_scene",
    "list_scenes",
    "list_versions",
    "load_scene_file",
    "read_prediction_log",
]
