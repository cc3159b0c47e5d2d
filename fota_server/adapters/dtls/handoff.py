"""Taking an established session's record layer over from OpenSSL (RFC 5246 §6.3, RFC 6347 §4.1).

OpenSSL keeps tens of KiB per connection (record buffers, cipher contexts, the handshake's
retransmission queue). Once the handshake is over, an AEAD session needs only what
``RecordLayer`` holds, so the connection is freed. ``hand_off`` exports the master secret and the
hello randoms, derives the key block, and proves the keys right before anything relies on them:
the peer's Finished must open with the read key and our own Finished with the write key. Any
doubt (another suite, an abbreviated handshake, a failed check) leaves the session with OpenSSL.

Our last flight (ChangeCipherSpec, Finished) may be lost; the peer then repeats its own last
flight (RFC 6347 §4.2.4). ``LastFlight`` keeps the Finished message so that it can be sent again
with fresh sequence numbers until the peer's first application record shows it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL

from .prf import MASTER_SECRET_BYTES, key_block
from .record import (
    CONTENT_CHANGE_CIPHER_SPEC, CONTENT_HANDSHAKE, SUITES, RecordLayer, RecordRejected, change_cipher_spec_record,
    record_header,
)

__all__ = ["LastFlight", "hand_off", "HANDSHAKE_FINISHED"]

HANDSHAKE_FINISHED = 20        # RFC 5246 §7.4 HandshakeType.finished


@dataclass(slots=True)
class LastFlight:
    """Our Finished handshake message and the next epoch-0 sequence number for its ChangeCipherSpec."""

    finished: bytes
    next_plain_seq: int

    def records(self, layer: RecordLayer) -> list[bytes]:
        """The flight again: ChangeCipherSpec and Finished, each under a new sequence number."""
        ccs = change_cipher_spec_record(self.next_plain_seq)
        self.next_plain_seq += 1
        return [ccs, layer.seal(CONTENT_HANDSHAKE, self.finished)]


def _session_reused(connection: SSL.Connection) -> bool:
    """An abbreviated handshake (the peer, not we, sent the last flight): left to the library."""
    from OpenSSL._util import lib
    return bool(lib.SSL_session_reused(connection._ssl))


def hand_off(connection: SSL.Connection, sent: list[bytes], peer_finished: bytes | None,
             server: bool = True) -> tuple[RecordLayer, LastFlight] | None:
    """The record layer and last flight of a connection whose full handshake just finished, or None.

    ``sent`` holds the records of our last flight (as the library wrote them); ``peer_finished`` the
    peer's epoch-1 record (its Finished) with the highest sequence number seen.
    """
    suite = SUITES.get(connection.get_cipher_name() or "")
    if suite is None or peer_finished is None or _session_reused(connection):
        return None
    master = connection.master_key()
    client_random, server_random = connection.client_random(), connection.server_random()
    if not master or len(master) != MASTER_SECRET_BYTES or not client_random or not server_random:
        return None
    keys = key_block(master, client_random, server_random)
    if server:
        read_key, read_iv, write_key, write_iv = (keys.client_write_key, keys.client_write_iv,
                                                  keys.server_write_key, keys.server_write_iv)
    else:
        read_key, read_iv, write_key, write_iv = (keys.server_write_key, keys.server_write_iv,
                                                  keys.client_write_key, keys.client_write_iv)
    ours = [(record_header(record), record) for record in sent]
    finished = [record for (kind, epoch, _), record in ours if epoch == 1 and kind == CONTENT_HANDSHAKE]
    ccs = [seq for (kind, epoch, seq), _ in ours if epoch == 0 and kind == CONTENT_CHANGE_CIPHER_SPEC]
    if len(finished) != 1 or not ccs:
        return None
    _, _, peer_seq = record_header(peer_finished)
    layer = RecordLayer(suite, read_key, read_iv, write_key, write_iv, epoch=1,
                        next_write_seq=max(seq for (_, epoch, seq), _ in ours if epoch == 1) + 1,
                        highest_read_seq=peer_seq)
    try:
        theirs = layer.unseal(peer_finished, read_key, read_iv)
        own = layer.unseal_own(finished[0])
    except RecordRejected:
        return None
    if theirs[:1] != bytes([HANDSHAKE_FINISHED]) or own[:1] != bytes([HANDSHAKE_FINISHED]):
        return None
    return layer, LastFlight(own, max(ccs) + 1)
