"""Where the secret-encryption key comes from, and how it is kept.

The key is a Fernet key (32 random bytes, urlsafe base64). It is looked up in this order:

1. ``SHIPYARD_SECRET_KEY`` in the environment: one key, or several separated by commas with the
   newest first (decryption tries each, encryption uses the first);
2. the key file ``<project>/.shipyard/secret.key`` (one key per line, newest first), created with
   mode 0600 on first use. A key file that group or others may read is refused.

The key never enters the metadata database, logs or subprocess environments
(:func:`scrubbed_environ`).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from shipyard.errors import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "SHIPYARD_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
# Variables a child process running user code must never inherit: the key, and the caller's API token.
SECRET_ENV_VARS = (KEY_ENV, "SHIPYARD_TOKEN")


def scrubbed_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``os.environ`` without the secret key, for subprocesses that run user code."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
    env.update(extra or {})
    return env


def _parse_keys(text: str, origin: str) -> list[bytes]:
    keys = [part.strip().encode() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not keys:
        raise ConfigError(f"{origin} holds no key; generate one with `shipyard secrets rotate-key`",
                          {"field": origin})
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            # the key itself is never echoed
            raise ConfigError(
                f"{origin} holds a value that is not a Fernet key (32 url-safe base64 bytes); generate one "
                "with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
                {"field": origin},
            ) from None
    return keys


@dataclass
class KeyRing:
    """The keys of one project: ``fernet`` decrypts with any of them and encrypts with the first."""

    keys: list[bytes]
    origin: str  # "environment" or the key file path
    path: Path | None = None

    @property
    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])

    @property
    def from_environment(self) -> bool:
        return self.path is None

    def __repr__(self) -> str:
        return f"KeyRing(origin={self.origin!r}, keys={len(self.keys)})"


def key_file_path(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE_NAME


def _check_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"secret key file {path} has mode {oct(mode)} and can be read by group or others; restrict it with: "
            f"chmod 600 {path}",
            {"field": "secret_key_file", "path": str(path), "mode": oct(mode)},
        )


def _write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically; the temporary file is created 0600 before any key is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\n".join(keys) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    log.info("created secret key file %s (mode 0600)", path)


def load_keyring(state_dir: Path, *, create: bool = True) -> KeyRing:
    """The project's keys: from ``SHIPYARD_SECRET_KEY``, else the key file (created when missing)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return KeyRing(_parse_keys(env, KEY_ENV), "environment")
    path = key_file_path(state_dir)
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no secret key: set {KEY_ENV} or create {path} with `shipyard secrets rotate-key`",
                {"field": "secret_key_file", "path": str(path)},
            )
        _create_key_file(path)
    _check_mode(path)
    return KeyRing(_parse_keys(path.read_text(), str(path)), str(path), path)


def add_new_key(ring: KeyRing) -> KeyRing:
    """Put a fresh key in front of the key file (old keys stay so every value still decrypts)."""
    if ring.path is None:
        raise ConfigError(
            f"the key comes from {KEY_ENV}; to rotate, set {KEY_ENV}=NEW_KEY,OLD_KEY and run rotate-key again, "
            f"then drop OLD_KEY",
            {"field": KEY_ENV},
        )
    keys = [Fernet.generate_key(), *ring.keys]
    _write_key_file(ring.path, keys)
    return KeyRing(keys, ring.origin, ring.path)


def keep_only_primary(ring: KeyRing) -> KeyRing:
    """Drop retired keys from the key file once every value is encrypted with the first key."""
    if ring.path is None or len(ring.keys) == 1:
        return ring
    _write_key_file(ring.path, ring.keys[:1])
    return KeyRing(ring.keys[:1], ring.origin, ring.path)
