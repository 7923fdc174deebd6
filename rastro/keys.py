"""API keys and link codes (random secrets, shown once, stored only as hashes) and console
passwords (stored only as scrypt hashes)."""

from __future__ import annotations

import hashlib
import hmac
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


# scrypt cost: n=2^14, r=8 (16 MiB, ~50 ms here): OWASP's minimum for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
    except ValueError:
        return False  # no password set yet (an invited user), or not a hash
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest.hex(), expected)
