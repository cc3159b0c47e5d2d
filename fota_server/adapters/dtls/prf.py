"""The TLS 1.2 pseudo-random function and key block (RFC 5246 §5, §6.3), for the AEAD suites we run.

Once OpenSSL has finished a handshake, the session's master secret and the two hello randoms are
all it takes to derive the record keys; ``key_block`` returns them split by direction.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["prf_sha256", "KeyBlock", "key_block", "MASTER_SECRET_BYTES"]

MASTER_SECRET_BYTES = 48        # RFC 5246 §8.1


def prf_sha256(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_SHA256(secret, label + seed), first ``length`` bytes (RFC 5246 §5)."""
    labelled = label + seed
    out = bytearray()
    a = labelled
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + labelled, hashlib.sha256).digest()
    return bytes(out[:length])


@dataclass(frozen=True)
class KeyBlock:
    """The AEAD suites' key block (no MAC keys), RFC 5246 §6.3: keys then implicit IVs (RFC 5288 §3)."""

    client_write_key: bytes
    server_write_key: bytes
    client_write_iv: bytes
    server_write_iv: bytes


def key_block(master_secret: bytes, client_random: bytes, server_random: bytes, key_bytes: int = 16,
              iv_bytes: int = 4) -> KeyBlock:
    """key_block = PRF(master_secret, "key expansion", server_random + client_random)."""
    block = prf_sha256(master_secret, b"key expansion", server_random + client_random, 2 * (key_bytes + iv_bytes))
    keys, ivs = block[:2 * key_bytes], block[2 * key_bytes:]
    return KeyBlock(keys[:key_bytes], keys[key_bytes:], ivs[:iv_bytes], ivs[iv_bytes:])
