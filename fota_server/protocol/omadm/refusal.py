"""SyncML answers to messages no DM session takes (OMA-TS-DM_Protocol-V1_2_1 §8.3; reference §2, §4, §6).

A decoded client message that is refused (unknown device, throttled, a continuation of a session that
expired, out of sequence) is answered in SyncML, never in plain text: a SyncHdr Status with the code, the
same code for each of its commands, Final and no commands, so a DM client ends the session. Our header
echoes the client's SessionID and MsgID, its Source as our Target (``IMEI:…``), and a 401 or 407 always
carries a Chal with a fresh nonce.
"""

from __future__ import annotations

from .digests import AUTH_MD5, encode_nonce
from .syncml import Chal, Command, Encoding, Message, Meta, SyncHdr, encode_message

__all__ = ["refusal", "challenge", "REFUSAL_CODES"]

# The SyncHdr status codes of refusals, by why (RepPro 1.2 §10; reference §4).
REFUSAL_CODES = {
    "bad_request": 400,      # out of sequence, SessionID changed within the session
    "unauthorised": 401,     # unknown device, wrong credential (with a Chal)
    "forbidden": 403,        # the device authenticated but may not be admitted (enrolment account full)
    "expired": 408,          # a continuation of a session we no longer have (idle timeout, restart)
    "too_long": 413,         # more messages than a session may have
    "unavailable": 503,      # throttled, or too many open sessions: try again later
}


def challenge(nonce: bytes, auth_type: str = AUTH_MD5) -> Chal:
    return Chal(Meta(format="b64", type=auth_type, next_nonce=encode_nonce(nonce)))


def refusal(message: Message, encoding: Encoding, code: int, server_uri: str, chal: Chal | None = None) -> bytes:
    """The whole answer to ``message``: every command refused with ``code``; a 401/407 needs ``chal``."""
    if code in (401, 407) and chal is None:
        raise ValueError("a 401 or 407 refusal must carry a challenge")
    h = message.header
    statuses = [Command("Status", 1, msg_ref=h.msg_id, cmd_ref=0, cmd="SyncHdr",
                        target_refs=(h.target,) if h.target else (), source_refs=(h.source,) if h.source else (),
                        chal=chal, data=str(code))]
    for command in message.commands:
        if command.name != "Status":
            statuses.append(Command("Status", len(statuses) + 1, msg_ref=h.msg_id, cmd_ref=command.cmd_id,
                                    cmd=command.name, data=str(code)))
    header = SyncHdr(session_id=h.session_id, msg_id=h.msg_id, target=h.source, source=server_uri,
                     ver_dtd=h.ver_dtd or "1.2", ver_proto=h.ver_proto or "DM/1.2")
    return encode_message(Message(header, tuple(statuses), True), encoding)
