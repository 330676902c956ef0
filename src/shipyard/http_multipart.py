"""Streamed multipart/form-data uploads: file parts go to disk chunk by chunk, limits checked as bytes arrive.

Nothing holds a whole file in memory; a body that passes the byte or file-count limit is refused
with 413/400 the moment it does, before the rest is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from shipyard.errors import InvalidInput, PayloadTooLarge

#: the OpenAPI request body of a route that takes files this way (field ``file``, one or more)
FILES_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "one part per file; its filename is the path to store it at"}},
}}}}}


@dataclass
class UploadedFile:
    filename: str
    path: Path
    size: int


@dataclass
class _State:
    folder: Path
    limit: int
    max_files: int
    total: int = 0
    files: list[UploadedFile] = field(default_factory=list)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    out: IO[bytes] | None = None
    current: UploadedFile | None = None


async def receive_files(request: Request, folder: Path, *, limit: int, max_files: int = 1000,
                        limit_name: str = "max_upload_bytes") -> list[UploadedFile]:
    """Write each file part of the request's multipart body to ``folder``; the parts in order."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("send the files as multipart/form-data (one 'file' part per file, its filename the "
                           "path to store it at)", {"field": "content-type"})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload is {declared} bytes; the limit is {limit} ({limit_name})",
                              {"field": "body", "limit": limit})
    state = _State(folder, limit, max_files)

    def on_part_begin() -> None:
        state.headers = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).lower()] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        _disposition, params = parse_options_header(state.headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        if params.get(b"name") != b"file" or not filename:
            raise InvalidInput("every part must be a file named 'file' with a filename (the path to store it at)",
                               {"field": "file"})
        if len(state.files) >= state.max_files:
            raise InvalidInput(f"more than {state.max_files} files in one request; send them in batches",
                               {"field": "file", "limit": state.max_files})
        target = state.folder / f"part-{len(state.files)}"
        state.current = UploadedFile(filename.decode("utf-8", "replace"), target, 0)
        state.out = target.open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        size = end - start
        state.total += size
        if state.total > state.limit:
            raise PayloadTooLarge(f"the upload is larger than the limit of {state.limit} bytes ({limit_name})",
                                  {"field": "body", "limit": state.limit})
        if state.out is not None and state.current is not None:
            state.out.write(data[start:end])
            state.current.size += size

    def on_part_end() -> None:
        if state.out is not None and state.current is not None:
            state.out.close()
            state.files.append(state.current)
        state.out, state.current = None, None

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (InvalidInput, PayloadTooLarge):
        raise
    except Exception as exc:  # the parser's own errors: a malformed body
        raise InvalidInput(f"the multipart body is malformed ({exc}); send multipart/form-data",
                           {"field": "body"}) from None
    finally:
        if state.out is not None:
            state.out.close()
    if not state.files:
        raise InvalidInput("the request holds no file; send one 'file' part per file", {"field": "file"})
    return state.files
