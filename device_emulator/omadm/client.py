"""The client side of a SyncML DM session, as an OMA-DM device runs it (OMA-TS-DM_Protocol-V1_2_1 §8;
reference §3, §6, §12).

``DmClientSession`` builds Package 1 (Alert 1201 or 1200, Replace DevInfo, pending Generic Alerts 1226),
answers 401/407 challenges with an MD5 (or basic, or MAC-header) credential, answers Get, Replace and
Exec against an ``OmadmDevice``, asks for the rest of a split server package with Alert 1222 and
splits its own messages to fit the server's MaxMsgSize. A server message with no commands ends it.
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

from fota_server.protocol.errors import DecodeError, PeerError
from fota_server.protocol.omadm.digests import (
    AUTH_BASIC, AUTH_MAC, AUTH_MD5, basic_credential, credentials_match, decode_nonce, encode_nonce, mac_header,
    md5_credential, server_password,
)
from fota_server.protocol.omadm.syncml import (
    Chal, Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)
from fota_server.protocol.omadm.tree import Limits

from .device import OmadmDevice

__all__ = ["ClientConfig", "ClientMessage", "DmClientSession", "ClientState"]


class ClientState(enum.Enum):
    WAITING = "waiting"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class ClientConfig:
    username: str
    password: str
    server_uri: str = "/dm"
    auth: str = AUTH_MD5
    encoding: Encoding = Encoding.XML
    max_msg_size: int = 16_384
    max_challenges: int = 3
    max_messages: int = 64
    server_id: str = "fota-server"
    require_server_auth: bool = True


@dataclass(frozen=True)
class ClientMessage:
    body: bytes
    mac_header: str | None = None


class DmClientSession:
    """One DM session. ``nonce`` is the server's last NextNonce (empty on first contact); ``server_nonce`` the
    last one we gave the server, which its Cred must use (SRVCRED; the same nonce signs Package 0)."""

    def __init__(self, config: ClientConfig, device: OmadmDevice, session_id: str, nonce: bytes,
                 server_initiated: bool = False,
                 nonce_source: Callable[[], bytes] = lambda: secrets.token_bytes(16),
                 server_nonce: bytes = b"") -> None:
        self.config, self.device, self.session_id = config, device, session_id
        self.nonce = nonce
        self.server_nonce: bytes | None = None  # the nonce we issued the server (SRVCRED AAuthData)
        self.state = ClientState.WAITING
        self.failure = ""
        self.delivered: list[str] = []
        self._nonce_source = nonce_source
        self._msg_id = 0
        self._server_max = config.max_msg_size
        self._challenges = 0
        self._expected_server_nonce = server_nonce
        self._server_trusted = False
        self._server_challenges = 0
        self._pkg1 = self._package1("1200" if server_initiated else "1201")
        self._out: deque[Command] = deque(self._pkg1)
        self._send_cred = True
        self._alert_ids: dict[tuple[int, int], str] = {}
        self._pending: ClientMessage | None = self._compose([])
        self._resend_needed = False

    # --- surface -------------------------------------------------------------------------------

    def to_send(self) -> ClientMessage | None:
        pending, self._pending = self._pending, None
        return pending

    def receive(self, body: bytes) -> None:
        """Take the server's response; raises PeerError (state FAILED) if it is not an acceptable message."""
        try:
            message, _ = decode_message(body, Limits(max_bytes=self.config.max_msg_size * 4))
        except DecodeError:
            self._fail("undecodable server message")
            raise
        if message.header.session_id != self.session_id:
            self._fail("server answered with another SessionID")
            raise PeerError("SessionID mismatch", hint=400)
        if message.header.meta is not None and message.header.meta.max_msg_size:
            self._server_max = max(512, message.header.meta.max_msg_size)
        replies = self._react(message)
        if self.state is not ClientState.WAITING:
            return
        commands = [c for c in message.commands if c.name != "Status"]
        if not commands and not self._out and not self._resend_needed:
            self.state = ClientState.ENDED
            return
        self._pending = self._compose(replies, ask_more=not message.final and not _has_1222(commands))

    @property
    def finished(self) -> bool:
        return self.state is not ClientState.WAITING

    # --- reacting ------------------------------------------------------------------------------

    def _react(self, message: Message) -> list[Command]:
        self._resend_needed = False
        server_status = self._check_server(message)
        replies: list[Command] = []
        for command in message.commands:
            if command.name == "Status":
                self._on_status(command)
            elif server_status in (401, 407):
                replies.append(_status(message, command, server_status))  # not executed
            else:
                replies.extend(self._execute(message, command))
        if self.state is ClientState.WAITING:
            replies.insert(0, self._header_status(message, server_status))
        return replies

    def _check_server(self, message: Message) -> int:
        """Our status for the server's SyncHdr: its Cred must be MD5 over our latest nonce (reference §6)."""
        if not self.config.require_server_auth:
            return 200
        cred = message.header.cred
        expected = md5_credential(self.config.server_id, server_password(self.config.password),
                                  self._expected_server_nonce)
        if cred is not None and cred.meta.type == AUTH_MD5 and credentials_match(expected, cred.data):
            first, self._server_trusted = not self._server_trusted, True
            return 212 if first else 200
        self._server_challenges += 1
        if self._server_challenges > self.config.max_challenges:
            self._fail("the server did not authenticate")
        return 407 if cred is None else 401

    def _on_status(self, status: Command) -> None:
        if status.cmd == "SyncHdr" and status.cmd_ref == 0:
            self._on_header_status(status)
        elif (status.msg_ref or 0, status.cmd_ref or 0) in self._alert_ids and status.data in ("200", "202"):
            correlator = self._alert_ids[(status.msg_ref or 0, status.cmd_ref or 0)]
            self.device.alert_delivered(correlator)
            self.delivered.append(correlator)

    def _on_header_status(self, status: Command) -> None:
        if status.chal is not None and status.chal.meta.next_nonce:
            try:
                self.nonce = decode_nonce(status.chal.meta.next_nonce)
            except DecodeError:
                self._fail("server sent a NextNonce that is not base64")
                return
        if status.data in ("200", "212"):
            self._send_cred = False
        elif status.data not in ("401", "407"):  # 403, 408, 503...: the server ends the session
            self._fail(f"session refused ({status.data})")
        else:
            self._challenges += 1
            if status.chal is None or self._challenges > self.config.max_challenges:
                self._fail(f"authentication refused ({status.data})")
                return
            self._out = deque(self._pkg1)
            self._resend_needed = self._send_cred = True

    def _execute(self, message: Message, command: Command) -> list[Command]:
        if command.name == "Get":
            return self._on_get(message, command)
        if command.name == "Alert":
            if command.data == "1223":
                self.state = ClientState.ENDED
                return []
            return [] if command.data == "1222" else [_status(message, command, 200)]
        if command.name in ("Sequence", "Atomic"):
            nested = [r for child in command.children for r in self._execute(message, child)]
            return [_status(message, command, 200), *nested]
        if command.name == "Replace":
            codes = [self.device.replace(item.target, item.data) for item in command.items]
            return [_status(message, command, max(codes, default=200))]
        if command.name == "Exec":
            target = command.items[0].target if command.items else ""
            return [_status(message, command, self.device.accept_exec(target, command.correlator))]
        return [_status(message, command, 406)]

    def _on_get(self, message: Message, command: Command) -> list[Command]:
        found = [(item.target, *self.device.get(item.target)) for item in command.items]
        code = 200 if all(f[1] == 200 for f in found) else 404
        items = tuple(Item(source=path, meta=Meta(format=fmt, type="text/plain"), data=data)
                      for path, status, data, fmt in found if status == 200)
        results = [Command("Results", 0, msg_ref=message.header.msg_id, cmd_ref=command.cmd_id, items=items)]
        return [_status(message, command, code), *(results if items else [])]

    def _header_status(self, message: Message, code: int) -> Command:
        chal = None
        if self.server_nonce is None or code in (401, 407):
            self.server_nonce = self._expected_server_nonce = self._nonce_source()
            chal = Chal(Meta(format="b64", type=AUTH_MD5, next_nonce=encode_nonce(self.server_nonce)))
        h = message.header
        return Command("Status", 0, msg_ref=h.msg_id, cmd_ref=0, cmd="SyncHdr", target_refs=(h.target,),
                       source_refs=(h.source,), chal=chal, data=str(code))

    # --- composing -----------------------------------------------------------------------------

    def _package1(self, alert_code: str) -> list[Command]:
        devinfo = tuple(Item(source=path, meta=Meta(format="chr", type="text/plain"), data=value)
                        for path, value in self.device.devinfo().items())
        commands = [Command("Alert", 0, data=alert_code), Command("Replace", 0, items=devinfo)]
        for alert in self.device.pending_alerts:
            commands.append(Command("Alert", 0, data="1226", correlator=alert.correlator, items=(Item(
                source=alert.source, meta=Meta(format="int", type=alert.alert_type,
                                               mark="informational" if alert.result_code == 200 else "critical"),
                data=str(alert.result_code)),)))
        return commands

    def _compose(self, replies: list[Command], ask_more: bool = False) -> ClientMessage:
        self._msg_id += 1
        if self._msg_id > self.config.max_messages:
            self._fail("session too long")
            return ClientMessage(b"")
        fixed = [*replies, *([Command("Alert", 0, data="1222")] if ask_more else [])]
        chosen: list[Command] = []
        body = self._encode(fixed, chosen, not self._out)
        while self._out:
            trial = self._encode(fixed, [*chosen, self._out[0]], len(self._out) == 1)
            if len(trial) > self._server_max and (chosen or fixed):
                break
            chosen.append(self._out.popleft())
            body = trial
        for number, command in enumerate(chosen, start=len(fixed) + 1):
            if command.data == "1226":
                self._alert_ids[(self._msg_id, number)] = command.correlator
        mac = None
        if self.config.auth == AUTH_MAC:
            mac = mac_header(self.config.username, self.config.password, self.nonce, body)
        return ClientMessage(body, mac)

    def _encode(self, fixed: list[Command], chosen: list[Command], final: bool) -> bytes:
        commands = tuple(replace(c, cmd_id=n) for n, c in enumerate([*fixed, *chosen], start=1))
        header = SyncHdr(session_id=self.session_id, msg_id=self._msg_id, target=self.config.server_uri,
                         source=self.device.profile.dev_id, loc_name=self.config.username, cred=self._cred(),
                         meta=Meta(max_msg_size=self.config.max_msg_size))
        return encode_message(Message(header, commands, final), self.config.encoding)

    def _cred(self) -> Cred | None:
        if self.config.auth == AUTH_MAC or not self._send_cred:
            return None
        if self.config.auth == AUTH_BASIC:
            basic = basic_credential(self.config.username, self.config.password)
            return Cred(Meta(format="b64", type=AUTH_BASIC), basic)
        return Cred(Meta(format="b64", type=AUTH_MD5), md5_credential(self.config.username, self.config.password,
                                                                      self.nonce))

    def _fail(self, why: str) -> None:
        self.state, self.failure = ClientState.FAILED, why


def _has_1222(commands: list[Command]) -> bool:
    return any(c.name == "Alert" and c.data == "1222" for c in commands)


def _status(message: Message, command: Command, code: int) -> Command:
    return Command("Status", 0, msg_ref=message.header.msg_id, cmd_ref=command.cmd_id, cmd=command.name,
                   data=str(code))
