"""One contract suite for every artifact backend: local folders and S3 (moto server)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.artifacts import ArtifactStore, sha256_dir
from shipyard.errors import IntegrityError, InvalidInput, NotFound
from tests.conftest import ARTIFACT_BACKENDS


@pytest.fixture(params=ARTIFACT_BACKENDS)
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "s3":
        root, options = request.getfixturevalue("s3_bucket")
        yield ArtifactStore(root, options)
    else:
        yield ArtifactStore(str(tmp_path / "root"))


def test_put_get_roundtrip_records_sha_and_size(artifacts: ArtifactStore) -> None:
    data = os.urandom(3000)
    info = artifacts.put_bytes("runs/r1/a.bin", data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == 3000
    assert artifacts.get_bytes("runs/r1/a.bin", expected_sha256=info.sha256) == data
    assert artifacts.exists("runs/r1/a.bin")
    assert not artifacts.exists("runs/r1/missing.bin")


def test_overwrite_replaces_whole_content(artifacts: ArtifactStore) -> None:
    artifacts.put_bytes("x/y.txt", b"first version, long" * 100)
    artifacts.put_bytes("x/y.txt", b"second")
    assert artifacts.get_bytes("x/y.txt") == b"second"


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "/abs/path", "s3://other/bucket", "a\\b", "", "a/\x00"])
def test_paths_cannot_escape_the_root(artifacts: ArtifactStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        artifacts.put_bytes(bad, b"x")
    with pytest.raises(InvalidInput):
        artifacts.get_bytes(bad)


def test_missing_artifact_is_not_found(artifacts: ArtifactStore) -> None:
    with pytest.raises(NotFound, match="nope/file"):
        artifacts.get_bytes("nope/file")


def test_sha_mismatch_is_integrity_error(artifacts: ArtifactStore) -> None:
    artifacts.put_bytes("m/model.bin", b"abc")
    with pytest.raises(IntegrityError, match="sha256"):
        artifacts.get_bytes("m/model.bin", expected_sha256="0" * 64)


def test_put_dir_list_download_and_verify(artifacts: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    (src / "sub" / "weights.bin").write_bytes(os.urandom(5000))
    whole, files = artifacts.put_dir("models/m/1", src)
    assert whole.sha256 == sha256_dir(src)[0]
    assert whole.size == 5000 + len("flavors: {}\n")
    assert [f.path for f in files] == ["models/m/1/MLmodel", "models/m/1/sub/weights.bin"]
    assert artifacts.list("models/m/1") == ["models/m/1/MLmodel", "models/m/1/sub/weights.bin"]
    artifacts.verify_dir("models/m/1", whole.sha256)
    out = artifacts.download("models/m/1", tmp_path / "out")
    assert sha256_dir(out)[0] == whole.sha256
    # tamper and detect
    artifacts.put_bytes("models/m/1/sub/weights.bin", b"tampered")
    with pytest.raises(IntegrityError):
        artifacts.verify_dir("models/m/1", whole.sha256)


def test_delete(artifacts: ArtifactStore) -> None:
    artifacts.put_bytes("d/1.txt", b"1")
    artifacts.put_bytes("d/2.txt", b"2")
    artifacts.delete("d")
    assert artifacts.list("d") == []


def test_local_write_leaves_no_partial_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    store.put_bytes("a.txt", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.put_bytes("a.txt", b"new content")
    monkeypatch.undo()
    assert store.get_bytes("a.txt") == b"old"
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["a.txt"]


@pytest.mark.s3
def test_s3_compatible_endpoint_from_aws_endpoint_url(s3_bucket: tuple[str, dict], monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """No endpoint_url in artifact_options: boto3's AWS_ENDPOINT_URL variable points at the store
    (MinIO, Ceph, moto), as docs/deployment.md says."""
    import boto3
    import s3fs

    root, options = s3_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    s3fs.S3FileSystem.clear_instance_cache()  # an instance made for another endpoint must not be reused
    store = ArtifactStore(root)
    src = tmp_path / "model.txt"
    src.write_bytes(b"weights")
    store.put_file("models/m/1/model.txt", src)
    bucket, prefix = root.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="us-east-1")
    body = client.get_object(Bucket=bucket, Key=f"{prefix}/models/m/1/model.txt")["Body"].read()
    assert body == b"weights"
    assert store.get_bytes("models/m/1/model.txt") == b"weights"
