"""The DTLS 1.2 record layer of an established session, for the AEAD cipher suites (RFC 6347 §4.1).

OpenSSL runs the handshake; once it is done, a session needs only its two record keys, two
implicit IVs, the next sequence number to write and the anti-replay window, which this module
keeps in a few hundred bytes instead of a library connection's tens of KiB.

Record format (RFC 6347 §4.1, RFC 5246 §6.2.3.3): a 13-byte header (type, version, epoch,
sequence number, length), then an 8-byte explicit nonce, the ciphertext and the tag. The nonce is
the 4-byte implicit IV followed by the explicit part (RFC 5288 §3, RFC 6655 §3); we write our own
epoch and sequence number there, as OpenSSL does. The additional data is epoch and sequence
number, type, version and plaintext length.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

__all__ = [
    "AeadSuite", "SUITES", "RecordLayer", "RecordRejected", "record_header",
    "CONTENT_CHANGE_CIPHER_SPEC", "CONTENT_ALERT", "CONTENT_HANDSHAKE", "CONTENT_APPLICATION_DATA",
    "change_cipher_spec_record", "WINDOW_BITS", "MAX_SEQUENCE",
]

CONTENT_CHANGE_CIPHER_SPEC = 20      # RFC 5246 §6.2.1 ContentType
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
_VERSION = b"\xfe\xfd"              # DTLS 1.2 (RFC 6347 §4.1)
_HEADER_BYTES = 13
_EXPLICIT_NONCE_BYTES = 8
_MAX_PLAINTEXT = 1 << 14              # RFC 6347 §4.1, TLSPlaintext.length
_MAX_CIPHERTEXT = _MAX_PLAINTEXT + 2048
WINDOW_BITS = 64                      # RFC 6347 §4.1.2.6: at least 32; 64 is the recommended size
_WINDOW_MASK = (1 << WINDOW_BITS) - 1
MAX_SEQUENCE = (1 << 48) - 1


@dataclass(frozen=True)
class AeadSuite:
    """An AES-128 AEAD cipher suite with a SHA-256 PRF: key 16 bytes, implicit IV 4 bytes."""

    name: str
    gcm: bool
    tag_bytes: int

    def aead(self, key: bytes) -> AESCCM | AESGCM:
        return AESGCM(key) if self.gcm else AESCCM(key, tag_length=self.tag_bytes)


SUITES: dict[str, AeadSuite] = {suite.name: suite for suite in (
    AeadSuite("PSK-AES128-CCM8", gcm=False, tag_bytes=8),             # RFC 6655 §4
    AeadSuite("PSK-AES128-CCM", gcm=False, tag_bytes=16),             # RFC 6655 §4
    AeadSuite("PSK-AES128-GCM-SHA256", gcm=True, tag_bytes=16),       # RFC 5487 §3
)}


class RecordRejected(Exception):
    """A record that must be dropped (RFC 6347 §4.1.2.7: invalid records are silently discarded)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def record_header(record: bytes) -> tuple[int, int, int]:
    """A record's content type, epoch and sequence number (the caller checked it has a header)."""
    return record[0], int.from_bytes(record[3:5], "big"), int.from_bytes(record[5:11], "big")


def change_cipher_spec_record(sequence: int) -> bytes:
    """An epoch-0 ChangeCipherSpec record (RFC 5246 §7.1) with the given sequence number."""
    return (bytes([CONTENT_CHANGE_CIPHER_SPEC]) + _VERSION + b"\x00\x00" + sequence.to_bytes(6, "big")
            + b"\x00\x01\x01")


class RecordLayer:
    """One direction pair of an established session: seal what we send, open what the peer sent."""

    __slots__ = ("suite", "epoch", "_read_key", "_read_iv", "_write_key", "_write_iv", "_next_seq",
                 "_top", "_seen")

    def __init__(self, suite: AeadSuite, read_key: bytes, read_iv: bytes, write_key: bytes, write_iv: bytes,
                 epoch: int = 1, next_write_seq: int = 0, highest_read_seq: int = -1) -> None:
        """``highest_read_seq``: every peer record of this epoch up to it counts as already received."""
        self.suite = suite
        self.epoch = epoch
        self._read_key, self._read_iv = read_key, read_iv
        self._write_key, self._write_iv = write_key, write_iv
        self._next_seq = next_write_seq
        self._top = highest_read_seq
        self._seen = _WINDOW_MASK if highest_read_seq >= 0 else 0

    @property
    def next_write_seq(self) -> int:
        return self._next_seq

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """One record carrying ``plaintext`` at the next sequence number."""
        if len(plaintext) > _MAX_PLAINTEXT:
            raise ValueError(f"a record carries at most {_MAX_PLAINTEXT} bytes, not {len(plaintext)}")
        if self._next_seq > MAX_SEQUENCE:
            raise ValueError("sequence numbers of this epoch are used up")
        explicit = self.epoch.to_bytes(2, "big") + self._next_seq.to_bytes(6, "big")
        self._next_seq += 1
        head = bytes([content_type]) + _VERSION + explicit
        additional = explicit + head[:3] + len(plaintext).to_bytes(2, "big")
        body = explicit + self.suite.aead(self._write_key).encrypt(self._write_iv + explicit, plaintext, additional)
        return head + len(body).to_bytes(2, "big") + body

    def open(self, record: bytes) -> tuple[int, bytes]:
        """The content type and plaintext of one record of the peer; ``RecordRejected`` if it must be dropped.

        RFC 6347 §4.1.2.6: a duplicate or a record left of the window is rejected before it is
        decrypted; the window moves only for a record whose tag verifies.
        """
        content_type, epoch, sequence = record_header(record)
        if epoch != self.epoch:
            raise RecordRejected("wrong epoch")
        if not self._is_new(sequence):
            raise RecordRejected("replayed")
        plaintext = self.unseal(record, self._read_key, self._read_iv)
        self._mark(sequence)
        return content_type, plaintext

    def unseal_own(self, record: bytes) -> bytes:
        """The plaintext of a record written with our own key (for instance by the library before us)."""
        return self.unseal(record, self._write_key, self._write_iv)

    def unseal(self, record: bytes, key: bytes, iv: bytes) -> bytes:
        """Verify and decrypt ``record`` with ``key``/``iv`` (no replay check)."""
        overhead = _EXPLICIT_NONCE_BYTES + self.suite.tag_bytes
        length = int.from_bytes(record[11:13], "big")
        if (len(record) != _HEADER_BYTES + length or record[1:3] != _VERSION or length < overhead
                or length > _MAX_CIPHERTEXT):
            raise RecordRejected("malformed")
        explicit = record[_HEADER_BYTES:_HEADER_BYTES + _EXPLICIT_NONCE_BYTES]
        additional = record[3:11] + record[:3] + (length - overhead).to_bytes(2, "big")
        try:
            return self.suite.aead(key).decrypt(iv + explicit, record[_HEADER_BYTES + _EXPLICIT_NONCE_BYTES:],
                                                additional)
        except InvalidTag:
            raise RecordRejected("bad tag") from None

    def _is_new(self, sequence: int) -> bool:
        if sequence > self._top:
            return True
        behind = self._top - sequence
        return behind < WINDOW_BITS and not (self._seen >> behind) & 1

    def _mark(self, sequence: int) -> None:
        if sequence > self._top:
            ahead = sequence - self._top
            self._seen = ((self._seen << ahead) & _WINDOW_MASK) | 1 if ahead < WINDOW_BITS else 1
            self._top = sequence
        else:
            self._seen |= 1 << (self._top - sequence)
