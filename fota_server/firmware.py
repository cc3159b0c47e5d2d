"""The firmware repository: images (and software and configuration packages) stored content-addressed,
hashed with SHA-256 and signed with the server's ECDSA P-256 key."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import BinaryIO

from .adapters.blobs import BlobTooLarge, FileBlobStore
from .clock import Clock
from .errors import InvalidRequest
from .records import PACKAGE_KINDS, PROTOCOLS, Package
from .signing import Signer
from .store.ports import PackageStore

__all__ = ["FirmwareRepository"]

MAX_NAME_LEN = 128


class FirmwareRepository:
    def __init__(self, packages: PackageStore, blobs: FileBlobStore, signer: Signer, clock: Clock,
                 max_bytes: int) -> None:
        self._packages = packages
        self._blobs = blobs
        self._signer = signer
        self._clock = clock
        self._max_bytes = max_bytes

    def add(
        self, source: BinaryIO, *, name: str, make: str, model: str, version_from: str, version_to: str,
        protocol: str, kind: str = "firmware", account_name: str | None = None, file_name: str = "",
        release_note: str = "",
    ) -> Package:
        protocol = protocol.upper()
        if protocol not in PROTOCOLS:
            raise InvalidRequest(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if kind not in PACKAGE_KINDS:
            raise InvalidRequest(f"kind {kind!r} is not one of {', '.join(PACKAGE_KINDS)}")
        for label, value in (("name", name), ("make", make), ("model", model),
                             ("from", version_from), ("to", version_to)):
            if len(value) > MAX_NAME_LEN:
                raise InvalidRequest(f"{label} is longer than {MAX_NAME_LEN} characters")
        if not name:
            raise InvalidRequest("a package needs a name")
        try:
            sha_hex, size, digest = self._blobs.put(source, self._max_bytes)
        except BlobTooLarge as exc:
            raise InvalidRequest(f"package {name!r} is {exc}", "PackageTooLarge") from None
        if size == 0:
            raise InvalidRequest("the package file is empty")
        package = Package(
            package_id=uuid.uuid4().hex, kind=kind, name=name, account_name=account_name, make=make,
            model=model, version_from=version_from, version_to=version_to, protocol=protocol, size=size,
            sha256=sha_hex, signature=self._signer.sign_digest(digest), created_at=self._clock.now(),
            release_note=release_note, file_name=file_name,
        )
        if not self._packages.add_package(package):
            raise InvalidRequest(f"a {kind} package named {name!r} already exists", "PackageExists")
        return package

    def add_file(self, path: Path, **fields: str) -> Package:
        with open(path, "rb") as fh:
            return self.add(fh, file_name=fields.pop("file_name", path.name), **fields)

    def open(self, package: Package) -> BinaryIO:
        return self._blobs.open(package.sha256)

    def public_key_pem(self) -> str:
        return self._signer.public_key_pem()
