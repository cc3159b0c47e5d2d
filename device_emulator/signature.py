"""The firmware signature check an emulated device makes: ECDSA P-256 over the SHA-256 of the whole image,
DER, base64 (standard or URL-safe, padding optional), against the key ``fota-server keys public`` prints."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

__all__ = ["signature_valid", "decode_signature"]


def decode_signature(text: str) -> bytes:
    """Signature bytes from standard or URL-safe base64, with or without padding; ValueError if neither."""
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"signature is not base64: {exc}") from None


def signature_valid(public_key_pem: bytes, sha256_digest: bytes, signature: str) -> bool:
    try:
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(decode_signature(signature), sha256_digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return True
    except (InvalidSignature, ValueError):
        return False
