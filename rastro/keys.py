"""API keys and link codes: random secrets, shown once, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
import string

KEY_PREFIX = "rk_"
_ALPHABET = string.ascii_letters + string.digits
LINK_CODE_LENGTH = 10  # 62^10 ~ 8e17: unguessable enough to hide links from enumeration

Scope = str  # admin | analyst | affiliate | ingest
SCOPES = frozenset({"admin", "analyst", "affiliate", "ingest"})


def new_api_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def hash_api_key(key: str) -> str:
    # Keys are 238 random bits: a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


def new_link_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(LINK_CODE_LENGTH))
