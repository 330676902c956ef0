"""Secrets: named values (database passwords, access keys) encrypted at rest with Fernet."""

from shipyard.secrets.keys import KEY_ENV, KeyRing, load_keyring, scrubbed_environ
from shipyard.secrets.store import RotationReport, SecretInfo, SecretStore, SecretValue, check_secret_name

__all__ = [
    "KEY_ENV",
    "KeyRing",
    "RotationReport",
    "SecretInfo",
    "SecretStore",
    "SecretValue",
    "check_secret_name",
    "load_keyring",
    "scrubbed_environ",
]
