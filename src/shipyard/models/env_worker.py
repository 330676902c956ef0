"""The process that serves one model from its own environment: ``python -m shipyard.models.env_worker DIR``.

It runs on the environment's interpreter (see ``shipyard.models.environment``), loads the package in
``DIR`` with Shipyard's model code and answers requests on stdin/stdout, one at a time, as long as
its stdin is open: the serving process that started it holds the other end, so the worker ends
with it, however that one ends.

Messages are frames of a 4-byte big-endian length and a JSON document (``NaN`` allowed, both ends
being Python). The first frame the worker writes is ``{"ok": true, "info": {...}}`` once the model
is loaded (flavor, classes, whether it has the NumPy fast path, versions of its libraries), or
``{"ok": false, "error": {...}}``. Then for each request ``{"op": "predict" | "predict_array" |
"predict_pyfunc", "data": <encoded input>, "labels": bool, "params": {...}}`` it writes
``{"ok": true, "out": <encoded output>}`` or ``{"ok": false, "error": {"class", "code", "message",
"details"}}``: the errors ``LoadedModel`` raises (``SchemaMismatch``, ``ModelError`` naming the
exception, ...) cross as they are.

This module imports only the standard library, NumPy and Shipyard's model code, which is all an
environment is sure to hold.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import struct
import sys
import traceback
from importlib import metadata
from typing import IO, Any

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30


# -- framing (shared with the serving side) ---------------------------------------------------------

def write_frame(out: IO[bytes], doc: dict[str, Any]) -> None:
    body = json.dumps(doc, default=_json_default).encode("utf-8")
    out.write(HEADER.pack(len(body)) + body)
    out.flush()


def read_frame(inp: IO[bytes]) -> dict[str, Any] | None:
    """The next document (a JSON object, as ``write_frame`` writes), or None at end of stream."""
    head = _read_exactly(inp, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME} byte limit")
    body = _read_exactly(inp, size)
    if body is None:
        return None
    return json.loads(body)


def _read_exactly(inp: IO[bytes], size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = inp.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


# -- values ------------------------------------------------------------------------------------------

def encode_value(value: Any) -> dict[str, Any]:
    """An input or output as a JSON document that ``decode_value`` turns back into the same kind."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.kind == "M":
            return {"kind": "ndarray", "dtype": str(value.dtype), "data": value.astype(str).tolist()}
        return {"kind": "ndarray", "dtype": str(value.dtype) if value.dtype.kind != "O" else "object",
                "data": value.tolist()}
    module = type(value).__module__
    if module.startswith("pandas") and type(value).__name__ == "DataFrame":
        dtypes = {str(c): str(t) for c, t in value.dtypes.items()}
        rows = [[_plain(v) for v in row] for row in value.itertuples(index=False, name=None)]
        return {"kind": "frame", "columns": [str(c) for c in value.columns], "dtypes": dtypes, "data": rows}
    if module.startswith("pandas") and type(value).__name__ == "Series":
        return encode_value(value.to_numpy())
    return {"kind": "json", "data": value}


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def decode_value(doc: dict[str, Any]) -> object:
    import numpy as np

    kind = doc.get("kind")
    if kind == "ndarray":
        dtype = doc["dtype"]
        try:
            return np.asarray(doc["data"], dtype=dtype)
        except (TypeError, ValueError):
            return np.asarray(doc["data"], dtype=object)
    if kind == "frame":
        import pandas as pd

        frame = pd.DataFrame(doc["data"], columns=doc["columns"])
        for column, dtype in doc["dtypes"].items():
            try:
                if dtype.startswith("datetime64"):
                    frame[column] = pd.to_datetime(frame[column])
                elif dtype != "object":
                    frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError):
                pass  # the model sees what pandas made of the values; its signature check decides
        return frame
    return doc.get("data")


# -- the worker ------------------------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[name.lower()] = dist.version
    return out


def _error(exc: BaseException) -> dict[str, Any]:
    from shipyard.errors import ShipyardError

    if isinstance(exc, ShipyardError):
        details = json.loads(json.dumps(exc.details, default=str))
        return {"class": type(exc).__name__, "code": exc.code, "message": exc.message, "details": details}
    return {"class": "ModelError", "code": "model_error", "message": f"{type(exc).__name__}: {exc}",
            "details": {"exception": type(exc).__name__}, "traceback": traceback.format_exc()[-4000:]}


def _answer(model: Any, request: dict[str, Any]) -> Any:
    op = request.get("op")
    data = decode_value(request.get("data") or {})
    labels = bool(request.get("labels"))
    if op == "predict_array":
        return model.predict_array(data, labels=labels)
    if op == "predict":
        return model.predict(data, labels=labels)
    if op == "predict_pyfunc":
        return model.predict_pyfunc(data, request.get("params"))
    raise ValueError(f"unknown op {op!r}")


def serve(model_dir: str, inp: IO[bytes], out: IO[bytes]) -> int:
    from shipyard.models.package import load_model

    try:
        model = load_model(model_dir, trusted=True, verify=True)
    except BaseException as exc:  # noqa: BLE001 - the model's load hooks may raise anything
        write_frame(out, {"ok": False, "error": _error(exc)})
        return 1
    classes = [_plain(c) for c in model.classes] if model.classes is not None else None
    write_frame(out, {"ok": True, "info": {
        "flavor": model.flavor, "classes": classes, "has_fast_path": model.has_fast_path,
        "pyfunc_is_predict": model.pyfunc_is_predict, "python": sys.version.split()[0],
        "pid": os.getpid(), "packages": _versions()}})
    while True:
        request = read_frame(inp)
        if request is None:
            return 0
        try:
            reply = {"ok": True, "out": encode_value(_answer(model, request))}
        except Exception as exc:  # noqa: BLE001 - every failure is the caller's answer, never the worker's end
            reply = {"ok": False, "error": _error(exc)}
        write_frame(out, reply)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m shipyard.models.env_worker MODEL_DIR\n")
        return 2
    # the protocol owns the real stdout; anything the model prints goes to stderr (the worker's log)
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb")
    return serve(args[0], inp, protocol_out)


if __name__ == "__main__":
    sys.exit(main())
