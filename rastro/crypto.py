"""Encryption of secrets at rest (affiliates' payout details, webhook signing secrets):
AES-256-GCM, each ciphertext bound to where it is stored by its associated data, so a
ciphertext copied to another row or tenant does not decrypt.

Keys come from `RASTRO_ENCRYPTION_KEYS` ("id:base64key,..."): the first encrypts, every
one decrypts, and each ciphertext is stored next to the id of its key, so keys rotate by
putting a new one first (docs/access.md). Without that setting one key ("derived-1") is
derived from the secret key, which is enough for development and tests only; it stays
available for decryption once keys are configured, so data written before can still be
read and re-encrypted under them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rastro.settings import Settings

_NONCE_BYTES = 12
DERIVED_KEY_ID = "derived-1"


class DecryptionError(Exception):
    """A ciphertext that does not decrypt: an unknown key, or tampered or moved data."""


class Vault:
    def __init__(self, settings: Settings) -> None:
        self._keys: dict[str, bytes] = {}
        configured = settings.encryption_keys
        if configured is not None and configured.get_secret_value().strip():
            for entry in configured.get_secret_value().split(","):
                key_id, _, encoded = entry.strip().partition(":")
                try:
                    key = base64.b64decode(encoded, validate=True)
                except ValueError:
                    key = b""
                if not key_id or len(key) != 32 or key_id in self._keys:
                    raise ValueError(
                        "RASTRO_ENCRYPTION_KEYS entries are id:base64 of 32 random bytes, "
                        "each id once"
                    )
                self._keys[key_id] = key
            self.current_key_id = next(iter(self._keys))
        else:
            self.current_key_id = DERIVED_KEY_ID
        secret = settings.secret_key.get_secret_value().encode()
        self._keys.setdefault(
            DERIVED_KEY_ID, hmac.new(secret, b"encryption:1", hashlib.sha256).digest()
        )

    def encrypt(self, plaintext: str, associated: str) -> tuple[str, str]:
        """(key id, base64 ciphertext) of `plaintext`, bound to `associated` (e.g.
        "affiliates:<tenant>:<id>:payout_details")."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self.current_key_id]).encrypt(
            nonce, plaintext.encode(), associated.encode()
        )
        return self.current_key_id, base64.b64encode(nonce + sealed).decode()

    def decrypt(self, key_id: str, ciphertext: str, associated: str) -> str:
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError(f"no encryption key {key_id!r} is configured")
        try:
            raw = base64.b64decode(ciphertext)
            opened = AESGCM(key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated.encode()
            )
        except Exception as error:  # InvalidTag, bad base64, short data: all the same to us
            raise DecryptionError("the ciphertext does not decrypt for this row") from error
        return opened.decode()
