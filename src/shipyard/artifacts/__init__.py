"""Artifact store: local folders or S3 through fsspec; atomic writes; sha256 on every file."""

from shipyard.artifacts.store import ArtifactInfo, ArtifactStore, safe_relpath, sha256_dir, sha256_file

__all__ = ["ArtifactInfo", "ArtifactStore", "safe_relpath", "sha256_dir", "sha256_file"]
