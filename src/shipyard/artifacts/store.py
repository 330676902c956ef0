"""One artifact store over fsspec.

Paths given to the store are relative, POSIX-style and may not climb out of the root. A write is
never visible half-done: local files are written to a temporary name in the same folder and
renamed; S3 objects appear only when their upload completes. A directory is hashed as the sha256
of its sorted ``relpath<TAB>file-sha256`` lines, so a model package has one fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError, IntegrityError, InvalidInput, NotFound, require

CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    uri: str
    sha256: str
    size: int


def safe_relpath(path: str) -> str:
    """Normalise an artifact path, refusing anything that could leave the root."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidInput("artifact path is empty; give a relative path such as 'model/MLmodel'", {"field": "path"})
    if "\x00" in path or "\\" in path:
        raise InvalidInput(f"artifact path {path!r} contains a NUL or backslash; use '/' separators", {"field": "path"})
    if path.startswith("/") or "://" in path:
        raise InvalidInput(f"artifact path {path!r} must be relative to the artifact root", {"field": "path"})
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or not parts:
        raise InvalidInput(f"artifact path {path!r} may not contain '..'", {"field": "path"})
    return "/".join(parts)


def sha256_file(path: str | Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_dir(folder: str | Path) -> tuple[str, int]:
    """Fingerprint of a folder: sha256 over sorted (relative path, file sha256) lines."""
    root = Path(folder)
    lines = []
    total = 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest, size = sha256_file(file)
        total += size
        lines.append(f"{file.relative_to(root).as_posix()}\t{digest}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest(), total


class ArtifactStore:
    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        if not root:
            raise ConfigError("artifact_root is empty; set a folder or s3://bucket/prefix", {"field": "artifact_root"})
        self.root = root.rstrip("/")
        self.options = dict(options or {})
        self.is_local = "://" not in root or root.startswith("file://")
        if self.is_local:
            local = root[len("file://") :] if root.startswith("file://") else root
            self._local_root = Path(local).resolve()
            self._local_root.mkdir(parents=True, exist_ok=True)
            self._fs: Any = None
        else:
            protocol = root.split("://", 1)[0]
            if protocol == "s3":
                require("s3fs", "s3")
            import fsspec

            try:
                self._fs = fsspec.filesystem(protocol, **self.options)
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"artifact_root {root!r}: {exc}", {"field": "artifact_root"}) from None
            self._remote_root = root.split("://", 1)[1].rstrip("/")

    # -- addressing ------------------------------------------------------------------------------
    def uri(self, path: str) -> str:
        rel = safe_relpath(path)
        if self.is_local:
            return str(self._local_root / rel)
        return f"{self.root}/{rel}"

    def local_path(self, path: str) -> Path:
        """Filesystem path of an artifact in a local store (for zero-copy reads)."""
        if not self.is_local:
            raise InvalidInput("local_path is only available for a local artifact store; use download()")
        return self._local_root / safe_relpath(path)

    def _remote(self, path: str) -> str:
        return f"{self._remote_root}/{safe_relpath(path)}"

    # -- writes --------------------------------------------------------------------------------
    def put_bytes(self, path: str, data: bytes) -> ArtifactInfo:
        rel = safe_relpath(path)
        digest = hashlib.sha256(data).hexdigest()
        if self.is_local:
            target = self._local_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self._fs.pipe_file(self._remote(rel), data)
        return ArtifactInfo(rel, self.uri(rel), digest, len(data))

    def put_file(self, path: str, local_file: str | Path) -> ArtifactInfo:
        rel = safe_relpath(path)
        source = Path(local_file)
        if not source.is_file():
            raise NotFound(f"local file {source} does not exist", {"field": "local_file"})
        digest, size = sha256_file(source)
        if self.is_local:
            target = self._local_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self._fs.put_file(str(source), self._remote(rel))
        return ArtifactInfo(rel, self.uri(rel), digest, size)

    def put_dir(self, prefix: str, local_dir: str | Path) -> tuple[ArtifactInfo, list[ArtifactInfo]]:
        """Upload a folder; returns (info of the folder as a whole, info of each file)."""
        base = safe_relpath(prefix)
        folder = Path(local_dir)
        if not folder.is_dir():
            raise NotFound(f"local folder {folder} does not exist", {"field": "local_dir"})
        files = []
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            files.append(self.put_file(f"{base}/{file.relative_to(folder).as_posix()}", file))
        lines = "".join(f"{f.path[len(base) + 1:]}\t{f.sha256}\n" for f in files)
        whole = ArtifactInfo(base, self.uri(base), hashlib.sha256(lines.encode()).hexdigest(), sum(f.size for f in files))
        return whole, files

    # -- reads ---------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        rel = safe_relpath(path)
        if self.is_local:
            return (self._local_root / rel).exists()
        return bool(self._fs.exists(self._remote(rel)))

    def get_bytes(self, path: str, expected_sha256: str | None = None) -> bytes:
        rel = safe_relpath(path)
        try:
            if self.is_local:
                data = (self._local_root / rel).read_bytes()
            else:
                data = self._fs.cat_file(self._remote(rel))
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"artifact {rel!r} does not exist under {self.root}", {"path": rel}) from None
        if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
            raise IntegrityError(
                f"artifact {rel!r} does not match its recorded sha256; it was changed or corrupted after it "
                "was stored; restore it from backup or register it again",
                {"path": rel, "expected_sha256": expected_sha256},
            )
        return data

    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of all files under ``prefix`` (recursive), sorted."""
        rel = safe_relpath(prefix) if prefix else ""
        if self.is_local:
            base = self._local_root / rel if rel else self._local_root
            if not base.exists():
                return []
            if base.is_file():
                return [rel]
            return sorted(
                p.relative_to(self._local_root).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-")
            )
        base = f"{self._remote_root}/{rel}" if rel else self._remote_root
        try:
            found = self._fs.find(base)
        except FileNotFoundError:
            return []
        return sorted(p[len(self._remote_root) + 1 :] for p in found)

    def download(self, path: str, local_dir: str | Path) -> Path:
        """Copy a file or a folder out of the store; returns the local path."""
        rel = safe_relpath(path)
        target_root = Path(local_dir)
        names = self.list(rel)
        if not names:
            raise NotFound(f"artifact {rel!r} does not exist under {self.root}", {"path": rel})
        if names == [rel]:
            target = target_root / posixpath.basename(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get_bytes(rel))
            return target
        for name in names:
            target = target_root / name[len(rel) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.is_local:
                target.write_bytes((self._local_root / name).read_bytes())
            else:
                self._fs.get_file(f"{self._remote_root}/{name}", str(target))
        return target_root

    def verify_dir(self, prefix: str, expected_sha256: str) -> None:
        """Raise IntegrityError unless the stored folder hashes to ``expected_sha256``."""
        base = safe_relpath(prefix)
        lines = []
        for name in self.list(base):
            digest = hashlib.sha256(self.get_bytes(name)).hexdigest()
            lines.append(f"{name[len(base) + 1:]}\t{digest}\n")
        actual = hashlib.sha256("".join(lines).encode()).hexdigest()
        if actual != expected_sha256:
            raise IntegrityError(
                f"artifact folder {base!r} does not match its recorded sha256 (files changed, added or "
                "removed after registration); restore it or register the model again",
                {"path": base, "expected_sha256": expected_sha256, "actual_sha256": actual},
            )

    def delete(self, path: str) -> None:
        rel = safe_relpath(path)
        if self.is_local:
            target = self._local_root / rel
            if target.is_dir():
                import shutil

                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        elif self._fs.exists(self._remote(rel)):
            self._fs.rm(self._remote(rel), recursive=True)
