"""OpenAPI request schemas for the prediction routes (they read raw bodies, so FastAPI cannot infer them)."""

from __future__ import annotations

from typing import Any

_VALUE: dict[str, Any] = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]}
_RECORD: dict[str, Any] = {"type": "object", "additionalProperties": _VALUE,
                           "description": "One record: field name -> value"}
_ROW: dict[str, Any] = {"type": "array", "items": _VALUE}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}},
}


def _json_body(schema: dict[str, Any], csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string", "description": "CSV with a header row"}}
    return {"requestBody": {"required": True, "content": content}}


SCENE_PREDICT = _json_body({
    "oneOf": [
        _RECORD,
        {"type": "array", "items": _RECORD, "description": "A batch of records"},
        {"type": "object", "properties": {
            "records": {"type": "array", "items": _RECORD},
            "request_id": {"type": "string", "minLength": 1, "maxLength": 128,
                           "description": "The request's id (else X-Request-Id, else a new one); a retry with "
                                          "the same id is logged once"}},
         "required": ["records"], "additionalProperties": False},
    ],
})

_MLFLOW = {
    "oneOf": [
        {"type": "object", "required": ["dataframe_split"], "additionalProperties": False, "properties": {
            "dataframe_split": {"type": "object", "required": ["data"], "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "index": {"type": "array"},
                "data": {"type": "array", "items": _ROW}}},
            "params": {"type": "object"}}},
        {"type": "object", "required": ["dataframe_records"], "additionalProperties": False, "properties": {
            "dataframe_records": {"type": "array", "items": _RECORD}, "params": {"type": "object"}}},
        {"type": "object", "required": ["instances"], "additionalProperties": False, "properties": {
            "instances": {"oneOf": [{"type": "array"}, {"type": "object"}]}, "params": {"type": "object"}}},
        {"type": "object", "required": ["inputs"], "additionalProperties": False, "properties": {
            "inputs": {"oneOf": [{"type": "array"}, {"type": "object"}]}, "params": {"type": "object"}}},
    ],
}

MODEL_PREDICT = _json_body({"oneOf": [_RECORD, {"type": "array", "items": _RECORD}, *_MLFLOW["oneOf"]]}, csv=True)
INVOCATIONS = _json_body(_MLFLOW, csv=True)
SCENE_APPLY = _json_body({"type": "object", "required": ["name", "inputs", "flow"], "properties": {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,200}$"}, "description": {"type": "string"},
    "inputs": {"type": "object"},
    "outputs": {"type": "array", "items": {"type": "string"}}, "flow": {}, "traffic": {"type": "object"},
    "fallback": {"type": "object"}, "limits": {"type": "object"}, "log": {"type": "object"}}})

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Predictions", "content": {"application/json": {"schema": {"type": "object"}}}},
    400: {"description": "Invalid input (names the field)", "content": {"application/json": {"schema": _ERROR}}},
    404: {"description": "Unknown scene or model", "content": {"application/json": {"schema": _ERROR}}},
    413: {"description": "Body too large", "content": {"application/json": {"schema": _ERROR}}},
    429: {"description": "Rate limited (Retry-After)", "content": {"application/json": {"schema": _ERROR}}},
    500: {"description": "A step failed (names the step)", "content": {"application/json": {"schema": _ERROR}}},
    503: {"description": "Overloaded (Retry-After)", "content": {"application/json": {"schema": _ERROR}}},
}
