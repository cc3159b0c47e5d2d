"""Firmware signing with an ECDSA P-256 key the server generates on first start.

Signatures are ECDSA over SHA-256 of the whole image, DER-encoded, base64 in the API and manifests.
A device verifies with the public key that ``fota-server keys public`` prints.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

__all__ = ["Signer", "load_or_create_signer", "verify_signature"]


class Signer:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key

    def sign_digest(self, sha256_digest: bytes) -> str:
        der = self._key.sign(sha256_digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return base64.b64encode(der).decode()

    def public_key_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def load_or_create_signer(path: Path) -> Signer:
    """Load the PEM private key at ``path``, creating it (mode 0600) if absent."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return Signer(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return Signer(key)


def verify_signature(public_key_pem: str, sha256_digest: bytes, signature_b64: str) -> bool:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(base64.b64decode(signature_b64), sha256_digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return True
    except (InvalidSignature, ValueError):
        return False
