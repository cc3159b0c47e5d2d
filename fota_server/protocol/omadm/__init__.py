"""OMA-DM 1.2: the SyncML codec (XML and WBXML), authentication digests, Package 0, FUMO and the DM session."""

from __future__ import annotations

from .fumo import FumoState, FumoTree, result_reason
from .notification import Notification, build_notification, parse_notification, verify_notification
from .session import DeviceCredential, DmServerSession, FumoJob, ServerSessionConfig, SessionState
from .syncml import Command, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message

__all__ = [
    "FumoState", "FumoTree", "result_reason", "Notification", "build_notification", "parse_notification",
    "verify_notification", "DeviceCredential", "DmServerSession", "FumoJob", "ServerSessionConfig", "SessionState",
    "Command", "Encoding", "Item", "Message", "Meta", "SyncHdr", "decode_message", "encode_message",
]
