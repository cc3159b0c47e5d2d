"""Content-addressed blob storage on the filesystem: ``<root>/sha256/<ab>/<hex>``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileBlobStore", "BlobTooLarge"]

_CHUNK = 1 << 16


class BlobTooLarge(ValueError):
    pass


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256_hex: str) -> Path:
        if len(sha256_hex) != 64 or any(c not in "0123456789abcdef" for c in sha256_hex):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / "sha256" / sha256_hex[:2] / sha256_hex

    def put(self, source: BinaryIO, max_bytes: int) -> tuple[str, int, bytes]:
        """Copy ``source`` in; returns (hex digest, size, raw digest). Refuses more than ``max_bytes``."""
        staging = self.root / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge(f"larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            final = self.path_of(digest.hexdigest())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size, digest.digest()

    def open(self, sha256_hex: str) -> BinaryIO:
        return open(self.path_of(sha256_hex), "rb")

    def exists(self, sha256_hex: str) -> bool:
        return self.path_of(sha256_hex).exists()
