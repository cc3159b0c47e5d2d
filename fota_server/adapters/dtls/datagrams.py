"""DTLS record framing on datagrams (RFC 6347 §4.1), independent of any TLS library.

A memory BIO hands out the records of a flight as one byte string, losing datagram boundaries.
These functions split that string on record headers and pack whole records into datagrams no
larger than the path MTU, and recognise the epoch-0 ClientHello that opens a new handshake.
"""

from __future__ import annotations

__all__ = [
    "RECORD_HEADER_BYTES", "CONTENT_HANDSHAKE", "HANDSHAKE_CLIENT_HELLO",
    "split_records", "pack_datagrams", "is_initial_client_hello", "client_hello_random",
]

RECORD_HEADER_BYTES = 13          # type(1) version(2) epoch(2) sequence_number(6) length(2)
CONTENT_HANDSHAKE = 22            # RFC 5246 §6.2.1 ContentType.handshake
HANDSHAKE_CLIENT_HELLO = 1        # RFC 5246 §7.4 HandshakeType.client_hello
_DTLS_VERSION_MAJOR = 0xFE        # every DTLS version (0xfeff, 0xfefd, and 0xfe00 from old stacks)
_HANDSHAKE_HEADER_BYTES = 12      # msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
_RANDOM_OFFSET = RECORD_HEADER_BYTES + _HANDSHAKE_HEADER_BYTES + 2   # after client_version
_RANDOM_BYTES = 32


def split_records(data: bytes) -> list[bytes]:
    """The whole records in ``data``, in order; a truncated trailing record is dropped."""
    records: list[bytes] = []
    offset = 0
    while offset + RECORD_HEADER_BYTES <= len(data):
        length = int.from_bytes(data[offset + 11:offset + 13], "big")
        end = offset + RECORD_HEADER_BYTES + length
        if end > len(data):
            break
        records.append(data[offset:end])
        offset = end
    return records


def pack_datagrams(records: list[bytes], mtu: int) -> list[bytes]:
    """Records packed in order into as few datagrams as fit in ``mtu`` bytes each.

    A record longer than ``mtu`` travels alone (the library was told the MTU, so that is rare).
    """
    datagrams: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


def is_initial_client_hello(datagram: bytes) -> bool:
    """True if the datagram starts with an epoch-0 handshake record carrying a ClientHello.

    RFC 6347 §4.2.8: such a record on an established association may start a new handshake.
    """
    if len(datagram) < RECORD_HEADER_BYTES + 1:
        return False
    return (
        datagram[0] == CONTENT_HANDSHAKE
        and datagram[1] == _DTLS_VERSION_MAJOR
        and datagram[3:5] == b"\x00\x00"
        and datagram[RECORD_HEADER_BYTES] == HANDSHAKE_CLIENT_HELLO
    )


def client_hello_random(datagram: bytes) -> bytes | None:
    """The 32-byte ``random`` of an epoch-0 ClientHello (RFC 5246 §7.4.1.2), or None.

    A retransmitted ClientHello repeats the random; a new handshake has a new one.
    """
    if not is_initial_client_hello(datagram) or len(datagram) < _RANDOM_OFFSET + _RANDOM_BYTES:
        return None
    if datagram[RECORD_HEADER_BYTES + 6:RECORD_HEADER_BYTES + 9] != b"\x00\x00\x00":   # not the first fragment
        return None
    return datagram[_RANDOM_OFFSET:_RANDOM_OFFSET + _RANDOM_BYTES]
