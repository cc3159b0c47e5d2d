"""The CoAP firmware file server ``/fw/<sha256>/<token>`` (aiocoap): Block2 with a stable ETag and Size2 on
every block, stateless and resumable (RFC 7959 §2.4, §4; reference §6 "Pull" and pitfalls 2 and 8). Every
block needs the download token of the Package URI (``download_tokens.py``); without a valid one: 4.01."""

from __future__ import annotations

import hashlib
import logging
import mmap
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import aiocoap
import aiocoap.resource as resource
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from ..download_tokens import DownloadTokens, TokenCheck
from ..peerlog import peer_refused
from ..protocol.errors import PeerError
from ..protocol.lwm2m.blockwise import block2_slice
from .blobs import FileBlobStore
from .lwm2m_downlink import code_of

__all__ = ["FirmwareBlockResource", "FirmwareBlock", "image_etag"]

log = logging.getLogger("fota_server.lwm2m")
_REFUSALS = {
    TokenCheck.INVALID: "no valid download token for this image",
    TokenCheck.EXPIRED: "the download token has expired",
    TokenCheck.WRONG_DEVICE: "the download token was issued to another device than this DTLS session's",
}


class FirmwareBlockResource(resource.Resource, resource.PathCapable):
    """``GET /fw/<sha256>/<token>``: the image in exactly the block asked for, with a stable ETag (the first 8
    bytes of the SHA-256) and Size2 on every block (RFC 7959 §2.4, §4; reference §6 "Pull" and pitfalls 2
    and 8); 4.01 without a valid download token, or with one issued to another device than the DTLS
    session's."""

    MAX_OPEN = 16

    def __init__(self, blobs: FileBlobStore, tokens: DownloadTokens) -> None:
        super().__init__()
        self._blobs = blobs
        self._tokens = tokens
        self._open: OrderedDict[str, tuple[mmap.mmap | bytes, bytes]] = OrderedDict()
        self.blocks_served = 0
        self.bytes_served = 0   # image bytes sent in blocks (metrics)

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
        return self.render_block(request, tuple(request.opt.uri_path))

    def render_block(self, request: aiocoap.Message, rest: tuple[str, ...]) -> aiocoap.Message:
        """The block ``request`` asks for of the image named by ``rest`` (``(<sha256 hex>, <token>)``, the path
        after ``/fw``)."""
        refusal = self.refusal(rest, _session_device(request), _peer(request))
        if refusal is not None:
            return aiocoap.Message(code=code_of(refusal))
        wanted = request.opt.block2
        block = self.block_for(rest[0], *((wanted.block_number, wanted.size_exponent) if wanted is not None
                                          else (0, 6)))
        if isinstance(block, str):
            return aiocoap.Message(code=code_of(block))
        response = aiocoap.Message(code=aiocoap.CONTENT, payload=block.payload, content_format=42)
        response.opt.etag = block.etag
        response.opt.size2 = block.size2
        if wanted is not None or block.more:
            response.opt.block2 = AiocoapBlock.BlockwiseTuple(block.num, int(block.more), block.szx)
        return response

    def refusal(self, rest: Sequence[str], device_id: str | None, peer: str) -> str | None:
        """None if the path after ``/fw`` is ``<sha256>/<token>`` with a token valid for that image (and, on a
        DTLS session, for its device ``device_id``); else the CoAP code to answer with (4.01, 4.04)."""
        if len(rest) > 2:
            return "4.04"
        sha = rest[0].lower() if rest else ""
        outcome = self._tokens.check(rest[1], sha, device_id) if len(rest) == 2 else TokenCheck.INVALID
        if outcome is TokenCheck.OK:
            return None
        peer_refused(log, peer, "download token", "CoAP GET /fw/%s from %s refused (4.01): %s", sha[:64], peer,
                     _REFUSALS[outcome] if len(rest) == 2 else "the Package URI's download token is missing")
        return "4.01"

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
        self.bytes_served += end - start
        return FirmwareBlock(num, szx, more, bytes(data[start:end]), etag, len(data))


@dataclass(frozen=True)
class FirmwareBlock:
    num: int
    szx: int
    more: bool
    payload: bytes
    etag: bytes
    size2: int


def _session_device(request: aiocoap.Message) -> str | None:
    """The device a DTLS session authenticated as (``""`` if its identity belongs to none); None over plain
    CoAP."""
    device = getattr(request.remote, "lwm2m_endpoint", None)
    return device if isinstance(device, str) else None


def _peer(request: aiocoap.Message) -> str:
    try:
        return str(request.remote.hostinfo)
    except (AttributeError, ValueError):
        return "?"


def image_etag(image: bytes) -> bytes:
    """The ETag the firmware resource sends for an image: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(image).digest()[:8]
