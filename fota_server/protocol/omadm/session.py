"""The server side of a SyncML DM session (OMA-TS-DM_Protocol-V1_2_1 §8; reference §3-6, §10).

One ``DmServerSession`` per (device, SessionID). The adapter decodes a client message, hands it to
``receive`` with the raw body and ``now`` (monotonic seconds), then sends ``to_send()`` as the HTTP
response and drains ``next_event()``. The session authenticates (407/401 challenges, then 212 with a
fresh NextNonce), reads the inventory, runs FUMO jobs (Replace PkgURL, Exec with a Correlator),
takes Generic Alert 1226 results, splits its package to fit the client's MaxMsgSize and ends when it
has nothing more to send.

Authentication (Security §5; reference §6): basic is refused unless ``allow_basic``; every 401 and 407
carries a Chal with a nonce made for it; our own Cred (SRVCRED) goes only into messages after the client
authenticated, so a wrong password never earns it; with ``fresh_nonce_only`` (enrolment, where one secret
serves a whole account) only a credential over a nonce this session issued is accepted. Our header's Target
echoes the client's Source. A message that breaks the sequence raises PeerError with a SyncML status as its
hint (400, 408 for the continuation of a session this machine never saw, 413); ``refusal`` builds the answer.
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from ..errors import DecodeError, PeerError
from . import events as ev
from .digests import AUTH_MAC, AUTH_MD5, decode_nonce, encode_nonce, md5_credential
from .fumo import ALERT_TYPE_PREFIX, ALERT_TYPES, FumoTree, PriorExec, exec_needed, result_reason
from .server_auth import DeviceCredential, check_client
from .syncml import Chal, Command, Cred, Encoding, Item, Message, Meta, SyncHdr, encode_message

__all__ = ["DmServerSession", "ServerSessionConfig", "FumoJob", "SessionState", "DeviceCredential"]

ALERT_SERVER_INITIATED, ALERT_CLIENT_INITIATED = "1200", "1201"
ALERT_NEXT_MESSAGE, ALERT_ABORT, ALERT_GENERIC = "1222", "1223", "1226"
FW_VERSION = "./DevDetail/FwV"


class SessionState(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    ACTIVE = "active"
    ENDED = "ended"
    ERROR = "error"


@dataclass(frozen=True)
class ServerSessionConfig:
    server_uri: str = "/dm"
    max_msg_size: int = 16_384
    max_obj_size: int = 65_536
    idle_timeout_s: float = 300.0
    max_messages: int = 64
    max_challenges: int = 2
    allow_basic: bool = False
    inventory: tuple[str, ...] = ("./DevDetail/FwV", "./DevDetail/SwV", "./DevDetail/HwV")
    server_id: str = "fota-server"


@dataclass(frozen=True)
class FumoJob:
    """One FUMO DownloadAndUpdate to run in this session; the Correlator ties its later 1226 to it.

    The session reads ``./DevDetail/FwV`` and the job's ``State`` node first and sends the Replace and Exec
    only if ``fumo.exec_needed`` allows it (``pkg_version`` is the target version; ``prior`` what is known of
    an earlier Exec of this job); ``FumoJobChecked`` tells the outcome of the check."""

    correlator: str
    pkg_url: str
    pkg_name: str = ""
    pkg_version: str = ""
    root: str = "./FUMO"
    prior: PriorExec = PriorExec.NONE


@dataclass(frozen=True)
class _Sent:
    command: Command
    correlator: str = ""
    check: bool = False  # a Get read before the jobs' Exec


class DmServerSession:
    def __init__(
        self, config: ServerSessionConfig, device_id: str, session_id: str, encoding: Encoding,
        credential: DeviceCredential | None, nonce: bytes, jobs: Sequence[FumoJob] = (), now: float = 0.0,
        nonce_source: Callable[[], bytes] = lambda: secrets.token_bytes(16), resp_uri: str = "",
        server_password: str | None = None, client_nonce: bytes = b"", fresh_nonce_only: bool = False,
    ) -> None:
        """``nonce`` is the last NextNonce we gave this client; ``client_nonce`` the last one it gave us, which our
        Cred (``server_password``, the SRVCRED secret) must use (reference §6, §12: newest nonce, empty at first)."""
        self.config, self.device_id, self.session_id, self.encoding = config, device_id, session_id, encoding
        self.state = SessionState.AWAITING_AUTH
        self._credential, self._nonce, self._nonce_source = credential, nonce, nonce_source
        self._jobs, self._resp_uri = list(jobs), resp_uri
        self._queue: deque[tuple[Command, str]] = deque()
        self._sent: dict[tuple[int, int], _Sent] = {}
        self._events: deque[ev.DmEvent] = deque()
        self._reply: bytes | None = None
        self._last: tuple[int, bytes, bytes | None] = (0, b"", None)
        self._out_msg_id = 0
        self._messages = 0
        self._challenges = 0
        self._scheme = ""
        self._peer_max = config.max_msg_size
        self._peer_proto = ("1.2", "DM/1.2")
        self._deadline = now + config.idle_timeout_s
        self._started = False
        self._aborted = False
        self._server_password, self._client_nonce = server_password, client_nonce
        self._requeue: list[tuple[Command, str]] = []
        self._refusals = 0
        self._checks = 0                   # check Gets queued or sent whose Status has not come back
        self._read: dict[str, str] = {}    # FwV and the State nodes the device reported, by path
        self._authenticated = False        # the client proved its credential in this session
        self._fresh_only, self._issued = fresh_nonce_only, False
        self._cred_sent = False            # our last message carried our Cred
        self._peer_uri = device_id         # the client's Source LocURI, our Target

    # --- the machine's surface ---------------------------------------------------------------

    def receive(self, message: Message, body: bytes, now: float, mac_header: str | None = None) -> None:
        """Take one client message. Raises PeerError (session to ERROR) when the client breaks the protocol."""
        msg_id = message.header.msg_id
        if msg_id == self._last[0] and body == self._last[1] and self._last[2] is not None:
            self._reply = self._last[2]
            return
        self._check_acceptable(message, msg_id)
        self._peer_uri = message.header.source or self._peer_uri
        self._messages += 1
        self._deadline = now + self.config.idle_timeout_s
        meta = message.header.meta
        if meta is not None and meta.max_msg_size:
            self._peer_max = max(512, min(meta.max_msg_size, self.config.max_msg_size))
        self._peer_proto = (message.header.ver_dtd or "1.2", message.header.ver_proto or "DM/1.2")
        if self.state is SessionState.AWAITING_AUTH or self._scheme == AUTH_MAC:
            header_status = self._authenticate(message, body, mac_header)
        else:
            header_status = self._header_status(message, 200)
        if header_status.data not in ("200", "212"):
            refusal = [header_status, *self._refuse_all(message, int(header_status.data))]
            self._reply = self._compose(refusal, True, keep_open=True, trusted=False)
        else:
            self._reply = self._answer(message, header_status)
        self._last = (msg_id, body, self._reply)

    def to_send(self) -> bytes | None:
        reply, self._reply = self._reply, None
        return reply

    def next_event(self) -> ev.DmEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self._deadline if self.state in (SessionState.AWAITING_AUTH, SessionState.ACTIVE) else None

    def on_timer(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._end("expired")

    def close(self, reason: str) -> None:
        """End the session from outside (the adapter needs its place); ``SessionEnded`` tells why."""
        self._end(reason)

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def finished(self) -> bool:
        return self.state in (SessionState.ENDED, SessionState.ERROR)

    # --- receiving ---------------------------------------------------------------------------

    def _check_acceptable(self, message: Message, msg_id: int) -> None:
        if self.finished:
            raise PeerError("the DM session is over", hint=400)
        if message.header.session_id != self.session_id:
            self._fail()
            raise PeerError("SessionID changed within the session", hint=400)
        if self._last[0] == 0 and msg_id != 1:
            self._fail()
            raise PeerError(f"MsgID {msg_id} continues a session that is not open (expired or unknown)", hint=408)
        if msg_id != self._last[0] + 1:
            self._fail()
            raise PeerError(f"MsgID {msg_id} out of sequence (expected {self._last[0] + 1})", hint=400)
        if self._messages >= self.config.max_messages:
            self._fail()
            raise PeerError(f"session longer than {self.config.max_messages} messages", hint=413)

    def _authenticate(self, message: Message, body: bytes, mac_header: str | None) -> Command:
        h = message.header
        scheme = AUTH_MAC if mac_header else AUTH_MD5
        if self._fresh_only and not self._issued:  # no credential can be over a nonce of ours yet
            return self._header_status(message, 401 if h.cred or mac_header else 407, self._challenge(scheme))
        check = check_client(h.cred, mac_header, body, h.loc_name, self._credential, self._nonce,
                             self.config.allow_basic)
        if check.accepted:
            first = self.state is SessionState.AWAITING_AUTH
            self._scheme, self.state, self._authenticated = check.scheme, SessionState.ACTIVE, True
            if first:
                self._events.append(ev.Authenticated(self.device_id, check.scheme))
            return self._header_status(message, 212 if first else 200, self._challenge(check.scheme))
        self._challenges += 1
        final = self._challenges > self.config.max_challenges
        self._events.append(ev.AuthenticationFailed(self.device_id, check.status, final))
        chal = self._challenge(scheme)
        if final:
            self._end("auth_failed", SessionState.ERROR)
            return self._header_status(message, 401, chal)
        return self._header_status(message, check.status, chal)

    def _challenge(self, scheme: str) -> Chal:
        self._nonce, self._issued = self._nonce_source(), True
        self._events.append(ev.NonceIssued(self.device_id, self._nonce))
        return Chal(Meta(format="b64", type=AUTH_MAC if scheme == AUTH_MAC else AUTH_MD5,
                         next_nonce=encode_nonce(self._nonce)))

    def _answer(self, message: Message, header_status: Command) -> bytes | None:
        statuses = [header_status]
        for command in message.commands:
            status = self._handle(message, command)
            if status is not None and not command.no_resp:
                statuses.append(status)
        self._release_jobs()
        if self.finished:
            return self._compose(statuses, True, keep_open=True)
        self._queue.extendleft(reversed(self._requeue))
        self._requeue.clear()
        if self._aborted:
            return self._compose(statuses, True)
        if not message.final:
            return self._compose([*statuses, Command("Alert", 0, data=ALERT_NEXT_MESSAGE)], False, keep_open=True)
        return self._compose(statuses, True)

    def _handle(self, message: Message, command: Command) -> Command | None:
        handler = _HANDLERS.get(command.name)
        if handler is None:
            return self._status(message, command, 406)
        return handler(self, message, command)

    def _on_status(self, message: Message, command: Command) -> None:
        if command.cmd_ref == 0 and command.cmd == "SyncHdr":
            self._take_client_nonce(command)
            return None
        sent = self._sent.get((command.msg_ref or 0, command.cmd_ref or 0))
        if sent is None or not _small_number(command.data):
            return None
        code = int(command.data)
        if code in (401, 407):  # the client did not accept our Cred: send the command again
            self._requeue.append((sent.command, _CHECK if sent.check else sent.correlator))
            return None
        if sent.check:
            self._checks -= 1
            return None
        if not sent.correlator:
            return None
        if sent.command.name == "Exec" and code in (200, 202):
            self._events.append(ev.FumoExecAccepted(self.device_id, sent.correlator))
        elif code >= 300:
            self._events.append(ev.FumoExecRefused(self.device_id, sent.correlator, sent.command.name, code))
        return None

    def _take_client_nonce(self, status: Command) -> None:
        if status.data in ("401", "407") and self._cred_sent:  # it refused our Cred, not just asked for one
            self._refusals += 1
            if self._refusals > self.config.max_challenges:
                self._queue.clear()
                self._end("server_auth_failed", SessionState.ERROR)
        chal = status.chal
        if chal is None or not chal.meta.next_nonce or self.state is not SessionState.ACTIVE:
            return
        try:
            text = chal.meta.next_nonce
            nonce = decode_nonce(text) if chal.meta.format in ("", "b64") else text.encode()
        except DecodeError:
            return
        self._client_nonce = nonce
        self._events.append(ev.ClientNonceReceived(self.device_id, nonce))

    def _on_results(self, message: Message, command: Command) -> Command:
        self._read.update({i.source: i.data for i in command.items
                           if i.source == FW_VERSION or i.source.endswith("/State")})
        detail = {i.source.rsplit("/", 1)[-1]: i.data for i in command.items if i.source.startswith("./DevDetail/")}
        if detail:
            self._events.append(ev.DeviceDetailReported(self.device_id, detail))
        sent = self._sent.get((command.msg_ref or 0, command.cmd_ref or 0))
        for item in command.items if sent is None or not sent.check else ():  # a check says FumoJobChecked
            if item.source.endswith("/State") and _small_number(item.data.strip()):
                self._events.append(ev.FumoStateRead(self.device_id, int(item.data)))
        return self._status(message, command, 200)

    def _on_replace(self, message: Message, command: Command) -> Command:
        info = {i.source[len("./DevInfo/"):]: i.data for i in command.items if i.source.startswith("./DevInfo/")}
        if info:
            self._events.append(ev.DeviceInfoReported(self.device_id, info))
        return self._status(message, command, 200)

    def _on_alert(self, message: Message, command: Command) -> Command:
        code = command.data
        if code in (ALERT_SERVER_INITIATED, ALERT_CLIENT_INITIATED) and not self._started:
            self._started = True
            self._events.append(ev.SessionStarted(self.device_id, self.session_id, code == ALERT_SERVER_INITIATED))
            self._queue_session_commands()
        elif code == ALERT_ABORT:
            self._queue.clear()
            self._aborted = True
        elif code == ALERT_GENERIC:
            return self._status(message, command, self._on_generic_alert(command))
        return self._status(message, command, 200)

    def _on_generic_alert(self, command: Command) -> int:
        status = 200
        for item in command.items:
            alert_type = item.meta.type if item.meta else ""
            if not alert_type.startswith(ALERT_TYPE_PREFIX):
                status = 415
                continue
            if alert_type in (ALERT_TYPES["DeviceRequest"], ALERT_TYPES["UserRequest"]):
                self._events.append(ev.FumoRequested(self.device_id, alert_type))
                continue
            if not _small_number(item.data.strip()):
                status = 412
                continue
            code = int(item.data.strip())
            self._events.append(ev.FumoResultReported(self.device_id, command.correlator, code, result_reason(code),
                                                      alert_type, item.source))
            root = item.source.rsplit("/", 1)[0] if "/" in item.source else "./FUMO"
            self._queue.append((_get(FumoTree(root).state, "./DevDetail/FwV"), ""))
        return status

    def _queue_session_commands(self) -> None:
        """The inventory, then (with jobs) a check: FwV and each job's State are read before any Exec."""
        if self.config.inventory:
            self._queue.append((_get(*self.config.inventory), ""))
        if not self._jobs:
            return
        paths = [] if FW_VERSION in self.config.inventory else [FW_VERSION]
        paths += dict.fromkeys(FumoTree(job.root).state for job in self._jobs)
        for path in paths:  # one Get each: a device may answer a Get with a missing node with no Results
            self._checks += 1
            self._queue.append((_get(path), _CHECK))

    def _release_jobs(self) -> None:
        """Once every check was answered: send the Exec of the jobs that need one (``fumo.exec_needed``)."""
        if self._checks or not self._jobs or not self._started:
            return
        jobs, self._jobs = self._jobs, []
        version = self._read.get(FW_VERSION)
        for job in jobs:
            raw = self._read.get(FumoTree(job.root).state, "").strip()
            state = int(raw) if _small_number(raw) else None
            runs = exec_needed(job.prior, job.pkg_version, version, state)
            self._events.append(ev.FumoJobChecked(self.device_id, job.correlator, version, state, runs))
            if runs:
                self._queue_job(job)

    def _queue_job(self, job: FumoJob) -> None:
        tree = FumoTree(job.root)
        items = [Item(target=tree.pkg_name, data=job.pkg_name), Item(target=tree.pkg_version, data=job.pkg_version)]
        items = [i for i in items if i.data] + [Item(target=tree.pkg_url, data=job.pkg_url, meta=_CHR)]
        self._queue.append((Command("Replace", 0, items=tuple(items)), job.correlator))
        self._queue.append((Command("Exec", 0, correlator=job.correlator,
                                    items=(Item(target=tree.download_and_update),)), job.correlator))

    # --- sending -----------------------------------------------------------------------------

    def _compose(self, statuses: list[Command], final: bool, keep_open: bool = False, trusted: bool = True) -> bytes:
        """``trusted``: the message being answered passed authentication (only then may it carry our Cred)."""
        self._out_msg_id += 1
        self._cred_sent = trusted and self._authenticated and self._server_password is not None
        chosen: list[tuple[Command, str]] = []
        body = self._encode(statuses, chosen, final and not self._queue)
        if self.state is SessionState.ACTIVE and not keep_open:
            while self._queue:
                trial = self._encode(statuses, [*chosen, self._queue[0]], final and len(self._queue) == 1)
                if len(trial) > self._peer_max and chosen:
                    break
                chosen.append(self._queue.popleft())
                body = trial
        for number, (command, correlator) in enumerate(chosen, start=len(statuses) + 1):
            check = correlator == _CHECK
            self._sent[(self._out_msg_id, number)] = _Sent(replace(command, cmd_id=number),
                                                           "" if check else correlator, check)
            if command.name == "Exec" and correlator:
                self._events.append(ev.FumoExecSent(self.device_id, correlator))
        if not chosen and not keep_open and self.state is SessionState.ACTIVE:
            self._end("aborted" if self._aborted else "completed")
        return body

    def _encode(self, statuses: list[Command], chosen: list[tuple[Command, str]], final: bool) -> bytes:
        commands = [replace(c, cmd_id=n) for n, c in enumerate([*statuses, *(c for c, _ in chosen)], start=1)]
        ver_dtd, ver_proto = self._peer_proto
        header = SyncHdr(session_id=self.session_id, msg_id=self._out_msg_id, target=self._peer_uri,
                         source=self.config.server_uri, ver_dtd=ver_dtd, ver_proto=ver_proto, resp_uri=self._resp_uri,
                         meta=Meta(max_msg_size=self.config.max_msg_size, max_obj_size=self.config.max_obj_size),
                         loc_name=self.config.server_id if self._cred_sent else "", cred=self._server_cred())
        return encode_message(Message(header, tuple(commands), final), self.encoding)

    def _server_cred(self) -> Cred | None:
        """Our Cred, only to a client that authenticated: it is what the real device trusts us by."""
        if self._server_password is None or not self._cred_sent:
            return None
        digest = md5_credential(self.config.server_id, self._server_password, self._client_nonce)
        return Cred(Meta(format="b64", type=AUTH_MD5), digest)

    def _header_status(self, message: Message, code: int, chal: Chal | None = None) -> Command:
        h = message.header
        return Command("Status", 0, msg_ref=h.msg_id, cmd_ref=0, cmd="SyncHdr", target_refs=(h.target,),
                       source_refs=(h.source,), chal=chal, data=str(code))

    def _status(self, message: Message, command: Command, code: int) -> Command:
        return Command("Status", 0, msg_ref=message.header.msg_id, cmd_ref=command.cmd_id, cmd=command.name,
                       data=str(code))

    def _refuse_all(self, message: Message, code: int) -> list[Command]:
        return [self._status(message, c, code) for c in message.commands if c.name not in ("Status",)]

    def _end(self, reason: str, state: SessionState = SessionState.ENDED) -> None:
        if not self.finished:
            self.state = state
            self._events.append(ev.SessionEnded(self.device_id, self.session_id, reason))

    def _fail(self) -> None:
        self._end("error", SessionState.ERROR)


_CHR = Meta(format="chr", type="text/plain")
_CHECK = "\x00check"  # the queue's mark of a check Get (correlators are printable text)


def _get(*paths: str) -> Command:
    return Command("Get", 0, items=tuple(Item(target=path) for path in paths))


_HANDLERS: dict[str, Callable[[DmServerSession, Message, Command], Command | None]] = {
    "Status": DmServerSession._on_status,
    "Results": DmServerSession._on_results,
    "Replace": DmServerSession._on_replace,
    "Alert": DmServerSession._on_alert,
}


def _small_number(text: str) -> bool:
    """A status or state code a device sent: 1-4 ASCII digits (``str.isdigit`` also takes "²", which
    ``int`` refuses)."""
    return 0 < len(text) <= 4 and text.isascii() and text.isdigit()
