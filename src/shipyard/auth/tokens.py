"""Token and password primitives: random secrets shown once, stored as hashes.

A token reads ``shy_<id>_<secret>``: the id finds the row, the secret is compared by its sha256 in
constant time. Tokens are 256-bit random, so a fast hash is enough for them; passwords are chosen
by people, so they get argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PREFIX = "shy"
_ID_BYTES = 6
_SECRET_BYTES = 32
_hasher = PasswordHasher()
# Compared against when a user does not exist, so that a miss costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def new_token() -> tuple[str, str, str]:
    """(token id, full token to show once, sha256 of its secret part to store)."""
    token_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return token_id, f"{PREFIX}_{token_id}_{secret}", secret_digest(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 2 * _ID_BYTES or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_matches(secret: str, stored: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), stored)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches; always does the argon2 work, even for unknown users."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
