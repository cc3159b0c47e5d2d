"""The CoAP firmware file server ``/fw/<sha256>`` (aiocoap): Block2 with a stable ETag and Size2 on every
block, stateless and resumable (RFC 7959 §2.4, §4; reference §6 "Pull" and pitfalls 2 and 8)."""

from __future__ import annotations

import hashlib
import mmap
from collections import OrderedDict
from dataclasses import dataclass

import aiocoap
import aiocoap.resource as resource
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from ..protocol.errors import PeerError
from ..protocol.lwm2m.blockwise import block2_slice
from .blobs import FileBlobStore
from .lwm2m_downlink import code_of

__all__ = ["FirmwareBlockResource", "FirmwareBlock", "image_etag"]


class FirmwareBlockResource(resource.Resource, resource.PathCapable):
    """``GET /fw/<sha256>``: the image in exactly the block asked for, with a stable ETag (the first 8 bytes of
    the SHA-256) and Size2 on every block (RFC 7959 §2.4, §4; reference §6 "Pull" and pitfalls 2 and 8)."""

    MAX_OPEN = 16

    def __init__(self, blobs: FileBlobStore) -> None:
        super().__init__()
        self._blobs = blobs
        self._open: OrderedDict[str, tuple[mmap.mmap | bytes, bytes]] = OrderedDict()
        self.blocks_served = 0

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    def _image(self, sha: str) -> tuple[mmap.mmap | bytes, bytes] | None:
        if sha in self._open:
            self._open.move_to_end(sha)
            return self._open[sha]
        try:
            path = self._blobs.path_of(sha)
        except ValueError:
            return None
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            data: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
        entry = (data, bytes.fromhex(sha)[:8])
        self._open[sha] = entry
        while len(self._open) > self.MAX_OPEN:
            old, _ = self._open.popitem(last=False)
            del old
        return entry

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        return self.render_block(request, path[0] if len(path) == 1 else "")

    def render_block(self, request: aiocoap.Message, sha: str) -> aiocoap.Message:
        """The block ``request`` asks for of the image named by ``sha`` (a SHA-256 in hex)."""
        wanted = request.opt.block2
        block = self.block_for(sha, *((wanted.block_number, wanted.size_exponent) if wanted is not None else (0, 6)))
        if isinstance(block, str):
            return aiocoap.Message(code=code_of(block))
        response = aiocoap.Message(code=aiocoap.CONTENT, payload=block.payload, content_format=42)
        response.opt.etag = block.etag
        response.opt.size2 = block.size2
        if wanted is not None or block.more:
            response.opt.block2 = AiocoapBlock.BlockwiseTuple(block.num, int(block.more), block.szx)
        return response

    def block_for(self, sha: str, num: int, szx: int) -> "FirmwareBlock | str":
        """One block of an image, or the CoAP code to answer with (4.04 unknown image, 4.02 past the end)."""
        image = self._image(sha.lower()) if sha else None
        if image is None:
            return "4.04"
        data, etag = image
        szx = min(szx, 6)
        try:
            start, end, more = block2_slice(len(data), num, szx)
        except PeerError:
            return "4.02"
        self.blocks_served += 1
        return FirmwareBlock(num, szx, more, bytes(data[start:end]), etag, len(data))


@dataclass(frozen=True)
class FirmwareBlock:
    num: int
    szx: int
    more: bool
    payload: bytes
    etag: bytes
    size2: int


def image_etag(image: bytes) -> bytes:
    """The ETag the firmware resource sends for an image: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(image).digest()[:8]
