"""The OMA-DM endpoint: SyncML DM 1.2 over HTTP(S) at ``/dm`` (reference §1, §3, §6).

The handler reads the body (capped at our MaxMsgSize), decodes it, routes it to the DM session of
(DevId, SessionID), stores what the session learnt (nonces, DevInfo, DevDetail) and answers in the
client's encoding with the client's Content-Type spelling. The nonces of both directions and the Package 0
address are committed to the store before the reply that carries them is sent, and reloaded at start-up,
so a restarted server asks a device for nothing it already gave. A device's bad input gets a clear status
and one rate-limited WARNING (``peerlog``); nothing it sends can break the handler. While the store cannot be
written (disk full, read-only), an exchange that needs a write is answered 503 with ``Retry-After`` and its
session dropped.

Every decoded message that no session takes is answered in SyncML (``protocol.omadm.refusal``): a client
with no credential gets a 401 with a Chal like a wrong password, and nothing about it is stored; a
continuation of a session we no longer have gets 408; one out of sequence 400. Authentication failures are
counted per device and per address (``omadm_throttle``); a blocked one gets HTTP 429 with ``Retry-After``
and a SyncML 503. Who may authenticate, and enrolment, is ``omadm_access``. Idle sessions end on a timer
(``run_dispatcher``) as well as on the next request, which looks only at the sessions due.

Several processes on one database (a node name set): a session's nonces and Package 0 address are read from
the store when it opens (and before a Package 0 is signed), since another process may have moved them; each
session holds its job by a name of its own, and a reply whose Exec the driver could not commit for it is
withheld (503, the session dropped). A DM session itself lives in the process that opened it: a continuation
that a balancer sends to another process is answered 408 (a session that process does not have), the
device's next session starts afresh there and takes the job over, and the abandoned session ends on its idle
timer. A balancer that keeps a client's connection on one process avoids that. Throttle counts are per process.

Wiring: ``build_omadm(services, ...)`` makes the ``OmadmServer`` that ``services.omadm`` holds; ``routes``
serve ``POST /dm``. Firmware for PkgURL is served by ``fota_http`` at ``/fw/{package_id}`` (Range, ETag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..api.bodies import read_json_object, require_str
from ..store.health import StorageUnavailable
from ..api.management import management
from ..config import Config
from ..protocol.errors import DecodeError, PeerError
from ..protocol.omadm import events as ev
from ..enrolment import Refused
from ..logs import context
from ..peerlog import peer_refused
from ..protocol.omadm.digests import AUTH_MAC, AUTH_MD5, parse_mac_header
from ..protocol.omadm.refusal import REFUSAL_CODES, challenge, refusal
from ..protocol.omadm.session import DmServerSession, ServerSessionConfig
from ..protocol.omadm.syncml import Encoding, Message, decode_message, encoding_of_content_type
from ..protocol.omadm.tree import Limits
from ..records import Device
from ..services import Services
from ..store.protocol_ports import OmadmStore
from .omadm_access import CREDENTIAL_KIND, ClientIdentity, OmadmAccess, device_key
from .omadm_driver import OmadmDriver, OmadmDriverSettings
from .omadm_sessions import SessionTable
from .scheduler import MonotonicTimer, Scheduler
from .omadm_throttle import AuthThrottle, ThrottleSettings
from .omadm_notify import HttpHookNotifier, Package0Notifier, TriggerDispatcher, UdpNotifier, parse_host_port

__all__ = [
    "routes", "build_omadm", "omadm_of", "OmadmServer", "OmadmSettings", "PEER_ERRORS", "CREDENTIAL_KIND",
    "provision_credentials",
]

log = logging.getLogger("fota_server.omadm")
PEER_ERRORS: Counter[str] = Counter()
_BUSY_RETRY_S = 30  # Retry-After when every session slot is taken
_STATUS_FOR_HINT: dict[str | int, int] = {"413": 413, "415": 415, 413: 413, 415: 415, 503: 503}


@dataclass(frozen=True)
class OmadmSettings:
    session: ServerSessionConfig = field(default_factory=ServerSessionConfig)
    driver: OmadmDriverSettings = field(default_factory=OmadmDriverSettings)
    max_sessions: int = 10_000
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    trigger_addr_any_host: bool = False  # else ./DevInfo/Ext/TriggerAddr must name the device's own IP

    @classmethod
    def of_config(cls, config: Config) -> "OmadmSettings":
        """The settings ``fota-server run`` uses: basic auth, idle timeout and FUMO root from the configuration."""
        session = ServerSessionConfig(allow_basic=config.omadm_allow_basic,
                                      idle_timeout_s=float(max(1, config.omadm_session_idle_s)))
        driver = OmadmDriverSettings(fumo_root=config.omadm_fumo_root, shared=bool(config.node))
        lease = timedelta(seconds=session.idle_timeout_s) + driver.trigger_interval
        return cls(session=session, driver=replace(driver, session_lease=lease))


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    encoding: Encoding | None = None
    retry_after_s: int | None = None


class OmadmServer:
    """Sessions by (DevId, SessionID), the nonce book and the driver; ``handle`` does one HTTP exchange."""

    def __init__(self, services: Services, driver: OmadmDriver, settings: OmadmSettings,
                 notifiers: list[Package0Notifier], monotonic: Callable[[], float] = time.monotonic,
                 store: OmadmStore | None = None) -> None:
        self.services, self.driver, self.settings = services, driver, settings
        self._monotonic = monotonic
        self.store = store or services.stores.omadm
        self.sessions = SessionTable()
        self.timer: MonotonicTimer | None = None   # idle sessions' deadlines on the process's scheduler
        self.access = OmadmAccess(services)
        self.throttle = AuthThrottle(settings.throttle)
        self.nonces: dict[str, bytes] = {}         # server -> client NextNonce, per device
        self.client_nonces: dict[str, bytes] = {}  # client -> server nonce (Package 0 digest), per device
        self.trigger_addresses: dict[str, tuple[str, int]] = {}
        for row in self.store.load_nonces():
            self._cache(row.device_id, row.server_nonce, row.client_nonce, parse_host_port(row.trigger_addr))
        self._unsaved: set[str] = set()  # devices whose new nonce did not reach the store in this exchange
        self._handling: DmServerSession | None = None  # the session of the exchange being handled
        self._enrolling: dict[int, ClientIdentity] = {}  # id(session) -> enrolment credential, until admitted
        self._failures: dict[int, int] = {}  # id(session) -> its failed authentications so far
        self._shared = settings.driver.shared
        self._holders: dict[int, str] = {}  # id(session) -> the name it holds jobs by (shared only)
        self._refusal: int | None = None  # the SyncML status the exchange ends with instead of the session's reply
        self._peer_host = ""
        self._now_s = 0.0
        self.dispatcher = TriggerDispatcher(driver, services.db.devices.find_device, self.access.srvcred_of,
                                            self._client_nonce_of, notifiers, settings.session.server_id)
        self._wake = asyncio.Event()
        driver.on_trigger = self._wake.set

    # --- one exchange --------------------------------------------------------------------------

    def handle(self, body: bytes, mac_header: str | None, base_url: str, peer_host: str = "") -> _Reply:
        self._handling = None
        try:
            return self._exchange(body, mac_header, base_url, peer_host)
        except StorageUnavailable as exc:  # logged once by the store's health, not per exchange
            return self._refuse_unstored(exc)
        finally:
            if self.timer is not None:
                self.timer.moved()

    def _exchange(self, body: bytes, mac_header: str | None, base_url: str, peer_host: str) -> _Reply:
        now = self._now_s = self._monotonic()
        self._peer_host = peer_host
        self._unsaved.clear()
        self.expire(now)
        try:
            message, encoding = decode_message(body, Limits(max_bytes=self.settings.session.max_msg_size))
        except DecodeError as exc:  # no SyncHdr to answer to: plain text
            PEER_ERRORS[type(exc).__name__] += 1
            peer_refused(log, peer_host or "?", "omadm undecodable", "OMA-DM message from %s refused: %s",
                         peer_host or "?", exc)
            return _Reply(_STATUS_FOR_HINT.get(exc.hint or 400, 400), str(exc).encode())
        h = message.header
        session = self.sessions.get((h.source, h.session_id))
        if session is None or not session.authenticated:  # an authentication attempt: throttled first
            retry_after = self.throttle.retry_after(device_key(h.source), peer_host, now)
            if retry_after is not None:
                return self._throttled(message, encoding, retry_after)
        return self._run(session, message, encoding, body, mac_header, base_url)

    def _run(self, session: DmServerSession | None, message: Message, encoding: Encoding, body: bytes,
             mac_header: str | None, base_url: str) -> _Reply:
        self._refusal = None
        try:
            if session is None:
                session = self._open(message, encoding, mac_header, base_url)
                if session is None:
                    return self._unknown(message, encoding, mac_header)
            self._handling = session
            session.receive(message, body, self._now_s, mac_header)
        except PeerError as exc:
            return self._peer_error(message, encoding, exc)
        finally:
            if self._handling is not None:
                self._drain(self._handling)
        if self._refusal is not None:
            return self._syncml(message, encoding, self._refusal)
        reply = session.to_send()
        if self._unsaved:
            return self._refuse_unsaved(session)
        return _Reply(200, reply or b"", encoding)

    def _open(self, message: Message, encoding: Encoding, mac_header: str | None,
              base_url: str) -> DmServerSession | None:
        """A new session of a known (or enrolling) device; None for a client no credential is known for."""
        h = message.header
        if not h.source or not h.session_id or len(h.source) > 128 or len(h.session_id) > 32:
            raise PeerError("SyncHdr needs a Source LocURI (128 at most) and a SessionID (32 at most)", hint=400)
        identity = self.access.identify(h.source, h.loc_name, _mac_user(mac_header))
        if identity is None:
            return None
        if h.msg_id != 1:
            raise PeerError(f"MsgID {h.msg_id} continues a session that is not open (expired or unknown)", hint=408)
        if len(self.sessions) >= self.settings.max_sessions:
            self._make_room()
        device_id, enrolling = identity.device_id, identity.enrolling
        holder = f"{self.services.config.node}/{h.session_id}/{secrets.token_hex(6)}" if self._shared else ""
        if self._shared and not enrolling:
            self._reload_nonces(device_id)
        jobs = [] if enrolling else self.driver.jobs_for(device_id, base_url, holder)
        session = DmServerSession(
            self.settings.session, device_id, h.session_id, encoding, identity.credential,
            b"" if enrolling else self.nonces.get(device_id, b""), jobs, self._now_s,
            server_password=identity.srvcred, client_nonce=b"" if enrolling else self.client_nonces.get(device_id, b""),
            fresh_nonce_only=enrolling)
        self.sessions.add((h.source, h.session_id), session)
        if holder:
            self._holders[id(session)] = holder
        if enrolling:
            self._enrolling[id(session)] = identity
        return session

    def _make_room(self) -> None:
        """End the oldest session whose client never authenticated; with none, refuse the new one (503)."""
        oldest = self.sessions.oldest_unproven()
        if oldest is None:
            raise PeerError("too many open DM sessions", hint=503)
        oldest.close("evicted")
        self._refusal = None
        self._drain(oldest)

    # --- refusals: SyncML answers ----------------------------------------------------------------

    def _syncml(self, message: Message, encoding: Encoding, code: int, http_status: int = 200,
                retry_after_s: int | None = None, chal_type: str = AUTH_MD5) -> _Reply:
        chal = challenge(secrets.token_bytes(16), chal_type) if code in (401, 407) else None
        body = refusal(message, encoding, code, self.settings.session.server_uri, chal)
        return _Reply(http_status, body, encoding, retry_after_s)

    def _unknown(self, message: Message, encoding: Encoding, mac_header: str | None) -> _Reply:
        """No credential for this client (and no enrolment): 401 like a wrong password, nothing stored."""
        h = message.header
        proved = h.cred is not None or mac_header is not None
        if proved:
            self._count_failure(h.source)
        peer_refused(log, self._peer_host or h.source[:64], "omadm unknown device",
                     "OMA-DM device %s from %s refused: no OMA-DM credential (and no enrolment)", h.source[:128],
                     self._peer_host or "?", extra=context(device=h.source[:128]))
        return self._syncml(message, encoding, 401 if proved else 407,
                            chal_type=AUTH_MAC if mac_header is not None else AUTH_MD5)

    def _throttled(self, message: Message, encoding: Encoding, retry_after_s: int) -> _Reply:
        """Too many failed authentications from this address or for this device: HTTP 429 with Retry-After and
        a SyncML 503 (no Chal: trying again at once cannot help), the credential not even looked at."""
        peer_refused(log, self._peer_host or "?", "omadm auth throttled",
                     "OMA-DM authentication for %s from %s refused for %d s: too many failures",
                     message.header.source[:128], self._peer_host or "?", retry_after_s)
        return self._syncml(message, encoding, 503, 429, retry_after_s)

    def _peer_error(self, message: Message, encoding: Encoding, exc: PeerError) -> _Reply:
        PEER_ERRORS[type(exc).__name__] += 1
        code = _syncml_code(exc.hint)
        peer_refused(log, self._peer_host or "?", f"omadm {code}", "OMA-DM message of %s from %s refused: %s",
                     message.header.source[:128], self._peer_host or "?", exc)
        if code == 503:
            return self._syncml(message, encoding, code, 503, _BUSY_RETRY_S)
        return self._syncml(message, encoding, code)

    def _refuse_unsaved(self, session: DmServerSession) -> _Reply:
        """A nonce we could not commit is never sent: the session is dropped and the device tries again later."""
        self._unsaved.clear()
        self._forget(session)
        return _Reply(503, b"device state changed meanwhile; try again")

    def _refuse_unstored(self, exc: StorageUnavailable) -> _Reply:
        """What the session learnt could not be stored: nothing of it is sent, the session is dropped."""
        self._unsaved.clear()
        if self._handling is not None:
            self._forget(self._handling)
        return _Reply(503, b"the server cannot store changes now; try again later", retry_after_s=exc.retry_after_s)

    def _forget(self, session: DmServerSession) -> None:
        self.sessions.drop(session)
        self._enrolling.pop(id(session), None)
        self._failures.pop(id(session), None)
        self._holders.pop(id(session), None)

    # --- events ----------------------------------------------------------------------------------

    def _drain(self, session: DmServerSession) -> None:
        while self._refusal is None and (event := session.next_event()) is not None:
            self._on_event(event, session)
        if session.finished or self._refusal is not None:
            self._forget(session)

    def _on_event(self, event: ev.DmEvent, session: DmServerSession) -> None:
        now = self.services.clock.now()
        if isinstance(event, ev.Authenticated):
            self._authenticated(session)
        elif isinstance(event, ev.AuthenticationFailed):
            self._auth_failed(event, session)
        elif isinstance(event, ev.NonceIssued) and id(session) not in self._enrolling:
            self._book(event.device_id, self.nonces, event.nonce, self.store.set_server_nonce, now)
        elif isinstance(event, ev.ClientNonceReceived):
            self._book(event.device_id, self.client_nonces, event.nonce, self.store.set_client_nonce, now)
        elif isinstance(event, ev.DeviceInfoReported):
            self._record_info(event)
        elif isinstance(event, ev.DeviceDetailReported):
            reported = {"firmware_version": event.values.get("FwV"), "software_version": event.values.get("SwV")}
            self.services.db.devices.record_report(event.device_id, now,
                                                   **{k: v[:128] for k, v in reported.items() if v})
        if self._refusal is None and not self.driver.observe(event, now, self._holders.get(id(session), "")):
            self._unsaved.add(event.device_id)  # an Exec this session may no longer send: the reply is withheld

    def _authenticated(self, session: DmServerSession) -> None:
        """Clears the device's failure count; a device that used the enrolment credential is admitted now
        (or the exchange ends in a SyncML 403 and nothing of the session is kept)."""
        self.sessions.proven(session)
        self.throttle.succeeded(device_key(session.device_id), self._peer_host, self._failures.pop(id(session), 0))
        identity = self._enrolling.pop(id(session), None)
        if identity is None:
            return
        admission = self.access.admit(identity, self._peer_host)
        if isinstance(admission, Refused):
            self._refusal = 403

    def _auth_failed(self, event: ev.AuthenticationFailed, session: DmServerSession) -> None:
        if event.status != 401:
            return  # 407: no credential sent yet, the normal first step
        peer_refused(log, self._peer_host or event.device_id[:64], "omadm authentication failed",
                     "OMA-DM authentication of %s from %s failed (status %s)", event.device_id[:128],
                     self._peer_host or "?", event.status, extra=context(device=event.device_id[:128]))
        self._failures[id(session)] = self._failures.get(id(session), 0) + 1
        self._count_failure(session.device_id)

    def _count_failure(self, dev_id: str) -> None:
        if self.throttle.failed(device_key(dev_id), self._peer_host, self._now_s):
            peer_refused(log, self._peer_host or dev_id[:64], "omadm auth blocked",
                         "OMA-DM authentication for %s from %s blocked for %.0f s after %d failures", dev_id[:128],
                         self._peer_host or "?", self.throttle.settings.block_s, self.throttle.settings.max_failures,
                         extra=context(device=dev_id[:128]))

    def _book(self, device_id: str, book: dict[str, bytes], nonce: bytes,
              write: Callable[[str, bytes, bytes, datetime], bool], now: datetime) -> None:
        """Commit a device's new nonce (guarded by the one we hold) before it is sent or used."""
        if write(device_id, nonce, book.get(device_id, b""), now):
            book[device_id] = nonce
            return
        log.warning("OMA-DM nonce of %s changed in the store; this exchange is refused", device_id[:128])
        self._unsaved.add(device_id)
        self._reload_nonces(device_id)

    def _reload_nonces(self, device_id: str) -> None:
        """The device's nonces and Package 0 address as the store has them (another process may have moved them)."""
        row = self.store.nonces_of(device_id)
        if row is not None:
            self._cache(device_id, row.server_nonce, row.client_nonce, parse_host_port(row.trigger_addr))

    def _client_nonce_of(self, device_id: str) -> bytes:
        """The nonce a Package 0 digest uses: shared, the one the device last gave any process."""
        if self._shared:
            self._reload_nonces(device_id)
        return self.client_nonces.get(device_id, b"")

    def _cache(self, device_id: str, server_nonce: bytes, client_nonce: bytes,
               address: tuple[str, int] | None) -> None:
        self.nonces[device_id], self.client_nonces[device_id] = server_nonce, client_nonce
        if address is not None:
            self.trigger_addresses[device_id] = address
        else:
            self.trigger_addresses.pop(device_id, None)

    def _record_info(self, event: ev.DeviceInfoReported) -> None:
        values = event.values
        reported = {"make": values.get("Man", ""), "model": values.get("Mod", "")}
        self.services.db.devices.record_report(event.device_id, self.services.clock.now(),
                                               **{k: v[:128] for k, v in reported.items() if v})
        address = parse_host_port(values.get("Ext/TriggerAddr", ""))
        if address is not None and (self.settings.trigger_addr_any_host or address[0] == self._peer_host):
            self._record_address(event.device_id, address)

    def _record_address(self, device_id: str, address: tuple[str, int]) -> None:
        known = self.trigger_addresses.get(device_id)
        if known == address:
            return
        if self.store.set_trigger_addr(device_id, _address_text(address), _address_text(known),
                                       self.services.clock.now()):
            self.trigger_addresses[device_id] = address
        else:
            log.warning("OMA-DM trigger address of %s changed in the store; kept the stored one", device_id[:128])

    # --- timers and Package 0 ----------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """End the sessions idle past their deadline: the timer task calls this, and so does each request."""
        self._now_s = max(self._now_s, now)
        for session in self.sessions.due(now):
            session.on_timer(now)
            if session.authenticated:
                log.info("OMA-DM session %s of %s ended: idle for %.0f s", session.session_id, session.device_id,
                         self.settings.session.idle_timeout_s)
            self._refusal = None
            self._drain(session)

    def trigger_address(self, device: Device) -> tuple[str, int] | None:
        if self._shared:  # the device may have announced it to another process
            self._reload_nonces(device.device_id)
        return self.trigger_addresses.get(device.device_id)

    async def run_dispatcher(self, poll_s: float | None = None, scheduler: Scheduler | None = None) -> None:
        """Send Package 0s as the driver asks for them (it wakes this task; their retries are timed by the
        driver's deadline in the engine's step); runs until cancelled. Idle sessions end on ``scheduler``, the
        process's timer (``self.timer``; one of its own without it). ``poll_s``: also look for triggers at least
        this often (for rigs without the engine's wake); ``fota-server run`` passes none."""
        own = None
        if scheduler is None:
            scheduler = own = Scheduler(self.services.clock)
        self.timer = MonotonicTimer(scheduler, "OMA-DM session expiry", self.sessions.next_deadline,
                                    self._expire_due, self._monotonic)
        try:
            while True:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can swallow a cancellation
                    async with asyncio.timeout(poll_s):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    await self.dispatcher.dispatch()
                except StorageUnavailable:
                    pass  # logged once by the store's health; the next round tries again
        finally:
            self.timer.close()
            self.timer = None
            if own is not None:
                own.close()

    def _expire_due(self) -> None:
        try:
            self.expire(self._monotonic())
        except StorageUnavailable:
            pass   # logged once by the store's health; the sessions still due are asked again


def _syncml_code(hint: str | int | None) -> int:
    """The SyncML status of a PeerError's hint (the session's are SyncML codes already)."""
    code = int(hint) if isinstance(hint, int) or (isinstance(hint, str) and hint.isascii() and hint.isdigit() and len(hint) <= 3) else 400
    return code if code in REFUSAL_CODES.values() else 400


def _mac_user(mac_header: str | None) -> str:
    if mac_header is None:
        return ""
    try:
        return parse_mac_header(mac_header).username
    except DecodeError:
        return ""


def _address_text(address: tuple[str, int] | None) -> str:
    if address is None:
        return ""
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


def build_omadm(services: Services, settings: OmadmSettings | None = None, driver: OmadmDriver | None = None,
                notifiers: list[Package0Notifier] | None = None, sms_hook: HttpHookNotifier | None = None
                ) -> OmadmServer:
    """Build the OMA-DM part: Package 0 by UDP to the device's announced address (and to an SMS gateway's
    HTTP hook when one is given), unless notifiers are given."""
    settings = settings or OmadmSettings()
    store = services.stores.omadm
    driver = driver or OmadmDriver(services.db.packages, settings.driver, store=store, clock=services.clock.now,
                                   tokens=services.download_tokens)
    holder: list[OmadmServer] = []
    default: list[Package0Notifier] = [UdpNotifier(lambda device: holder[0].trigger_address(device))]
    if sms_hook is not None:
        default.append(sms_hook)
    server = OmadmServer(services, driver, settings, notifiers if notifiers is not None else default, store=store)
    holder.append(server)
    services.omadm = server
    return server


def omadm_of(services: Services) -> OmadmServer:
    """The endpoint ``build_omadm`` made; one with the default settings if none was made yet (an application
    built for tests without ``fota-server run``)."""
    return services.omadm if services.omadm is not None else build_omadm(services)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _reply_type(request_type: str, encoding: Encoding) -> str:
    base = request_type.split(";", 1)[0].strip().lower()
    family = "application/vnd.syncml.dm+" if ".dm+" in base else "application/vnd.syncml+"
    return family + encoding.value


async def dm_endpoint(request: Request) -> Response:
    server = omadm_of(request.app.state.services)
    content_type = request.headers.get("content-type", "")
    if encoding_of_content_type(content_type) is None:
        return PlainTextResponse("Content-Type must be application/vnd.syncml.dm+xml or +wbxml", 415)
    try:
        body = await _read_body(request, server.settings.session.max_msg_size)
    except ClientDisconnect:
        return Response(status_code=400)
    if body is None:
        return PlainTextResponse("message larger than our MaxMsgSize", 413)
    peer = request.client.host if request.client is not None else ""
    reply = server.handle(body, request.headers.get("x-syncml-hmac"), str(request.base_url), peer)
    if server.services.device_trace.dm_ids:   # the console traces some OMA-DM device
        server.services.device_trace.syncml(body, reply.body, reply.status, peer)
    headers = None if reply.retry_after_s is None else {"Retry-After": str(reply.retry_after_s)}
    if reply.encoding is None:
        return PlainTextResponse(reply.body.decode("utf-8", "replace"), reply.status, headers=headers)
    return Response(reply.body, reply.status, headers=headers, media_type=_reply_type(content_type, reply.encoding))


@management
async def provision_credentials(request: Request, services: Services, account: str) -> Response:
    """``PUT .../omadm/v1/{account}/devices/{deviceId}/credentials`` with ``{"username", "secret"?}``.

    Without a secret the server makes a 128-bit one; the secret is shown in this answer only.
    """
    body = await read_json_object(request, 4096)
    username = require_str(body, "username", 128)
    secret = body.get("secret") or secrets.token_urlsafe(16)
    if not isinstance(secret, str):
        secret = ""  # set_omadm_secret refuses it with InvalidRequest
    device_id = request.path_params["deviceId"]
    services.devices.set_omadm_secret(account, device_id, username, secret)
    return JSONResponse({"deviceId": device_id, "username": username, "secret": secret})


routes = [
    Route("/dm", dm_endpoint, methods=["POST"]),
    Route("/api/fota/omadm/v1/{account}/devices/{deviceId}/credentials", provision_credentials, methods=["PUT"]),
]
