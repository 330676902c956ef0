"""The UI's static files, read from the package: content type, gzip body and ETag, kept in memory.

Every URL carries the build id (a hash of all files), so browsers may keep an asset for a year:
a new release changes the id in the shell page, which is never cached.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
    ".md": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".txt", ".md", "")
_MIN_GZIP = 512


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    content_type: str


class Assets:
    """Files under ``root``; ``get`` refuses anything outside it (no '..', no hidden files)."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root.resolve()
        self._cache: dict[str, Asset] = {}
        self._lock = threading.Lock()
        self.build = self._build_id()

    def files(self) -> list[str]:
        """Paths of every servable file, relative to the root, sorted."""
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if p.is_file() and self._servable(p.relative_to(self.root).as_posix()))

    def _build_id(self) -> str:
        digest = hashlib.sha256()
        for rel in self.files():
            digest.update(rel.encode())
            digest.update(hashlib.sha256((self.root / rel).read_bytes()).digest())
        return digest.hexdigest()[:12]

    @staticmethod
    def _servable(rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        return bool(parts) and not any(p.startswith(".") or p in ("", "..") for p in parts) \
            and PurePosixPath(rel).suffix in CONTENT_TYPES

    def get(self, rel: str) -> Asset | None:
        found = self._cache.get(rel)
        if found is not None:
            return found
        if not self._servable(rel):
            return None
        path = (self.root / rel).resolve()
        if self.root not in path.parents or not path.is_file():
            return None
        body = path.read_bytes()
        suffix = path.suffix
        gzipped = gzip.compress(body, 9, mtime=0) if suffix in _COMPRESSIBLE and len(body) >= _MIN_GZIP else None
        asset = Asset(body, gzipped, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', CONTENT_TYPES[suffix])
        with self._lock:
            self._cache[rel] = asset
        return asset

    def sizes(self, prefix: str = "") -> tuple[int, int]:
        """(raw, gzip-compressed) bytes of the servable files under ``prefix``."""
        raw = packed = 0
        for rel in self.files():
            if rel.startswith(prefix):
                asset = self.get(rel)
                if asset is not None:
                    raw += len(asset.body)
                    packed += len(asset.gzipped) if asset.gzipped is not None else len(asset.body)
        return raw, packed
