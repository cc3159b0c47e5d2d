"""Block-wise transfer planning (RFC 7959), without IO: the Block1 sender for a firmware push, the Block1
receiver a device uses, and the Block2 slice a file server answers with.

Block option value = NUM << 4 | M << 3 | SZX; block size = 2 ** (SZX + 4); SZX 7 (BERT) is not used on UDP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import DecodeError, PeerError, UsageError

__all__ = ["BlockOption", "block2_slice", "Block1Sender", "BlockToSend", "PushStep", "Block1Receiver",
           "ReceiverVerdict", "szx_for_size"]


@dataclass(frozen=True)
class BlockOption:
    num: int
    more: bool
    szx: int

    def __post_init__(self) -> None:
        if not 0 <= self.szx <= 6 or not 0 <= self.num < 1 << 20:
            raise ValueError("block option out of range")

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num * self.size

    def to_int(self) -> int:
        return self.num << 4 | (8 if self.more else 0) | self.szx

    @classmethod
    def from_int(cls, value: int) -> "BlockOption":
        """Decode an option value; raises DecodeError (4.02 Bad Option) on SZX 7 or out-of-range numbers."""
        if not 0 <= value < 1 << 24:
            raise DecodeError("block option value out of range", hint="4.02")
        if value & 7 == 7:
            raise DecodeError("BERT (SZX 7) is not allowed over UDP", hint="4.02")
        return cls(value >> 4, bool(value & 8), value & 7)


def szx_for_size(size: int) -> int:
    if size not in (16, 32, 64, 128, 256, 512, 1024):
        raise ValueError("block size must be a power of two from 16 to 1024")
    return size.bit_length() - 5


def block2_slice(total: int, num: int, szx: int) -> tuple[int, int, bool]:
    """(start, end, more) for the block a client asked for; DecodeError 4.02 if it starts past the end."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= total and not (total == 0 and num == 0):
        raise DecodeError("requested block starts past the end of the resource", hint="4.02")
    end = min(start + size, total)
    return start, end, end < total


@dataclass(frozen=True)
class BlockToSend:
    block: BlockOption
    start: int
    end: int
    size1: int | None  # total length, on the first block only


class PushStep(enum.Enum):
    SEND = "send"          # send next_block()
    DONE = "done"          # the device accepted the whole package
    TOO_LARGE = "too_large"  # the device accepts less than the package size
    FAILED = "failed"      # the device answered with an error


class Block1Sender:
    """Plans a Block1 PUT of ``total`` bytes and reacts to each response (RFC 7959 §2.3, §2.9.3).

    A 2.31 with a smaller SZX lowers the size from the next block on; 4.13 restarts at offset 0 with the
    size the device asks for (Block1 SZX or Size1); 4.08 restarts the transfer (bounded).
    """

    MAX_RESTARTS = 3

    def __init__(self, total: int, szx: int = 6) -> None:
        if total < 0 or not 0 <= szx <= 6:
            raise UsageError("bad push parameters")
        self.total = total
        self.szx = szx
        self.offset = 0
        self.restarts = 0
        self.last_code = ""
        self.device_limit: int | None = None
        self._pending: BlockToSend | None = None

    def next_block(self) -> BlockToSend:
        size = 1 << (self.szx + 4)
        if self.offset % size:
            raise UsageError("offset is not on a block boundary")
        end = min(self.offset + size, self.total)
        block = BlockOption(self.offset // size, end < self.total, self.szx)
        self._pending = BlockToSend(block, self.offset, end, self.total if self.offset == 0 else None)
        return self._pending

    def on_response(self, code: str, block1: BlockOption | None = None, size1: int | None = None) -> PushStep:
        sent = self._pending
        if sent is None:
            raise UsageError("a response without a block in flight")
        self._pending = None
        self.last_code = code
        if code == "2.31" and sent.block.more:
            if block1 is not None and block1.num != sent.block.num:
                raise PeerError("2.31 acknowledges a different block", hint="4.00")
            if block1 is not None and block1.szx < self.szx:
                self.szx = block1.szx
            self.offset = sent.end
            return PushStep.SEND
        if code.startswith("2.") and not sent.block.more:
            self.offset = sent.end
            return PushStep.DONE
        if code == "4.13":
            return self._too_large(block1, size1)
        if code == "4.08" and self.restarts < self.MAX_RESTARTS:
            self.restarts += 1
            self.offset = 0
            return PushStep.SEND
        return PushStep.FAILED

    def _too_large(self, block1: BlockOption | None, size1: int | None) -> PushStep:
        if size1 is not None and size1 < self.total:
            self.device_limit = size1
            return PushStep.TOO_LARGE
        smaller = block1.szx if block1 is not None and block1.szx < self.szx else None
        if smaller is None and size1 is not None and size1 < (1 << (self.szx + 4)):
            smaller = max(0, size1.bit_length() - 5)
        if smaller is None or self.restarts >= self.MAX_RESTARTS:
            return PushStep.TOO_LARGE
        self.restarts += 1
        self.szx = smaller
        self.offset = 0
        return PushStep.SEND


class ReceiverVerdict(enum.Enum):
    CONTINUE = "2.31"
    COMPLETE = "2.04"
    INCOMPLETE = "4.08"
    TOO_LARGE = "4.13"


class Block1Receiver:
    """A device receiving a Block1 PUT in order; a repeated block with the same bytes is acknowledged
    again without being stored twice (zephyr#71351). ``limit`` is the most it can store."""

    def __init__(self, limit: int, max_szx: int = 6) -> None:
        self.limit = limit
        self.max_szx = max_szx
        self.data = bytearray()
        self.announced: int | None = None
        self._last: tuple[int, int, bytes] | None = None  # (num, szx, payload) of the last stored block

    def receive(self, block: BlockOption | None, payload: bytes, size1: int | None) -> ReceiverVerdict:
        if block is None:
            self.reset()
            if len(payload) > self.limit:
                return ReceiverVerdict.TOO_LARGE
            self.data = bytearray(payload)
            return ReceiverVerdict.COMPLETE
        if self._last is not None and (block.num, block.szx) == self._last[:2]:
            if payload != self._last[2]:
                return ReceiverVerdict.INCOMPLETE
            return ReceiverVerdict.CONTINUE if block.more else ReceiverVerdict.COMPLETE
        if block.num == 0:
            self.reset()
            self.announced = size1
            if size1 is not None and size1 > self.limit:
                return ReceiverVerdict.TOO_LARGE
        if block.offset != len(self.data) or (block.more and len(payload) != block.size):
            return ReceiverVerdict.INCOMPLETE
        if len(self.data) + len(payload) > self.limit:
            return ReceiverVerdict.TOO_LARGE
        self.data += payload
        self._last = (block.num, block.szx, payload)
        return ReceiverVerdict.CONTINUE if block.more else ReceiverVerdict.COMPLETE

    def repeats_last(self, block: BlockOption, payload: bytes) -> bool:
        """True for a byte-identical retransmission of the block stored last (answer it again, store nothing)."""
        return self._last is not None and self._last == (block.num, block.szx, payload)

    def release(self) -> bytes:
        """Hand over the assembled bytes; a repeat of the final block is still recognised afterwards."""
        data = bytes(self.data)
        self.data = bytearray()
        return data

    def ack_option(self, block: BlockOption) -> BlockOption:
        """The Block1 option of the answer: the block echoed, with our preferred size if smaller."""
        return BlockOption(block.num, block.more, min(block.szx, self.max_szx))

    def reset(self) -> None:
        self.data = bytearray()
        self._last = None
        self.announced = None
