"""The OMA-DM endpoint: SyncML DM 1.2 over HTTP(S) at ``/dm`` (reference §1, §3, §6).

The handler reads the body (capped at our MaxMsgSize), decodes it, routes it to the DM session of
(DevId, SessionID), stores what the session learnt (nonces, DevInfo, DevDetail) and answers in the
client's encoding with the client's Content-Type spelling. The nonces of both directions and the Package 0
address are committed to the store before the reply that carries them is sent, and reloaded at start-up,
so a restarted server asks a device for nothing it already gave. A device's bad input gets a clear status
and one WARNING; nothing it sends can break the handler. While the store cannot be written (disk full,
read-only), an exchange that needs a write is answered 503 with ``Retry-After`` and its session dropped.

Wiring: ``build_omadm(services, ...)`` puts an ``OmadmServer`` in ``services.extra["omadm"]``; ``routes``
serve ``POST /dm``. Firmware for PkgURL is served by ``fota_http`` at ``/fw/{package_id}`` (Range, ETag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
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
from ..protocol.omadm.digests import server_password
from ..protocol.omadm.session import DeviceCredential, DmServerSession, ServerSessionConfig
from ..protocol.omadm.syncml import Encoding, Message, decode_message, encoding_of_content_type
from ..protocol.omadm.tree import Limits
from ..records import Credential, Device
from ..services import Services
from ..store.omadm_sqlite import SqliteOmadmStore
from .omadm_driver import OmadmDriver, OmadmDriverSettings
from .omadm_notify import HttpHookNotifier, Package0Notifier, TriggerDispatcher, UdpNotifier, parse_host_port

__all__ = [
    "routes", "build_omadm", "omadm_of", "OmadmServer", "OmadmSettings", "PEER_ERRORS", "CREDENTIAL_KIND",
    "provision_credentials",
]

log = logging.getLogger("fota_server.omadm")
PEER_ERRORS: Counter[str] = Counter()
CREDENTIAL_KIND = "omadm"
_ID_PREFIXES = ("IMEI:", "MEID:", "ESN:", "IMSI:")
_STATUS_FOR_HINT: dict[str | int, int] = {"413": 413, "415": 415, 413: 413, 415: 415, 503: 503}


@dataclass(frozen=True)
class OmadmSettings:
    session: ServerSessionConfig = field(default_factory=ServerSessionConfig)
    driver: OmadmDriverSettings = field(default_factory=OmadmDriverSettings)
    max_sessions: int = 10_000
    trigger_addr_any_host: bool = False  # else ./DevInfo/Ext/TriggerAddr must name the device's own IP

    @classmethod
    def of_config(cls, config: Config) -> "OmadmSettings":
        """The settings ``fota-server run`` uses: basic auth, idle timeout and FUMO root from the configuration."""
        session = ServerSessionConfig(allow_basic=config.omadm_allow_basic,
                                      idle_timeout_s=float(max(1, config.omadm_session_idle_s)))
        return cls(session=session, driver=OmadmDriverSettings(fumo_root=config.omadm_fumo_root))


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
                 store: SqliteOmadmStore | None = None) -> None:
        self.services, self.driver, self.settings = services, driver, settings
        self._monotonic = monotonic
        self.store = store or SqliteOmadmStore(services.db)
        self.sessions: dict[tuple[str, str], DmServerSession] = {}
        self.nonces: dict[str, bytes] = {}         # server -> client NextNonce, per device
        self.client_nonces: dict[str, bytes] = {}  # client -> server nonce (Package 0 digest), per device
        self.trigger_addresses: dict[str, tuple[str, int]] = {}
        for row in self.store.load_nonces():
            self._cache(row.device_id, row.server_nonce, row.client_nonce, parse_host_port(row.trigger_addr))
        self._unsaved: set[str] = set()  # devices whose new nonce did not reach the store in this exchange
        self._handling: DmServerSession | None = None  # the session of the exchange being handled
        self._peer_host = ""
        self.dispatcher = TriggerDispatcher(driver, services.db.devices.find_device, self._secret,
                                            lambda d: self.client_nonces.get(d, b""), notifiers,
                                            settings.session.server_id)
        self._wake = asyncio.Event()
        driver.on_trigger = self._wake.set

    # --- one exchange --------------------------------------------------------------------------

    def handle(self, body: bytes, mac_header: str | None, base_url: str, peer_host: str = "") -> _Reply:
        self._handling = None
        try:
            return self._exchange(body, mac_header, base_url, peer_host)
        except StorageUnavailable as exc:  # logged once by the store's health, not per exchange
            return self._refuse_unstored(exc)

    def _exchange(self, body: bytes, mac_header: str | None, base_url: str, peer_host: str) -> _Reply:
        now = self._monotonic()
        self._peer_host = peer_host
        self._unsaved.clear()
        self.expire(now)
        limits = Limits(max_bytes=self.settings.session.max_msg_size)
        try:
            message, encoding = decode_message(body, limits)
            session = self._handling = self._session_for(message, encoding, base_url, now)
            session.receive(message, body, now, mac_header)
        except PeerError as exc:
            PEER_ERRORS[type(exc).__name__] += 1
            log.warning("OMA-DM peer error: %s", exc)
            return _Reply(_STATUS_FOR_HINT.get(exc.hint or 400, 400), str(exc).encode())
        finally:
            self._drain_all()
        reply = session.to_send()
        if self._unsaved:
            return self._refuse_unsaved(session)
        return _Reply(200, reply or b"", encoding)

    def _refuse_unsaved(self, session: DmServerSession) -> _Reply:
        """A nonce we could not commit is never sent: the session is dropped and the device tries again later."""
        self._unsaved.clear()
        self._drop(session)
        return _Reply(503, b"device state changed meanwhile; try again")

    def _refuse_unstored(self, exc: StorageUnavailable) -> _Reply:
        """What the session learnt could not be stored: nothing of it is sent, the session is dropped."""
        self._unsaved.clear()
        if self._handling is not None:
            self._drop(self._handling)
        return _Reply(503, b"the server cannot store changes now; try again later", retry_after_s=exc.retry_after_s)

    def _drop(self, session: DmServerSession) -> None:
        for key, open_session in list(self.sessions.items()):
            if open_session is session:
                del self.sessions[key]

    def _session_for(self, message: Message, encoding: Encoding, base_url: str, now: float) -> DmServerSession:
        h = message.header
        key = (h.source, h.session_id)
        session = self.sessions.get(key)
        if session is not None:
            return session
        if not h.source or not h.session_id or len(h.source) > 128 or len(h.session_id) > 32:
            raise DecodeError("SyncHdr needs a Source LocURI and a SessionID", hint=400)
        if len(self.sessions) >= self.settings.max_sessions:
            raise PeerError("too many open DM sessions", hint=503)
        credential = self._credential(h.source, h.loc_name)
        device_id = credential.device_id if credential else h.source
        jobs = self.driver.jobs_for(device_id, base_url) if credential else []
        secret = None if credential is None else DeviceCredential(credential.identity, credential.secret)
        session = DmServerSession(
            self.settings.session, device_id, h.session_id, encoding, secret, self.nonces.get(device_id, b""), jobs,
            now, server_password=None if credential is None else server_password(credential.secret),
            client_nonce=self.client_nonces.get(device_id, b""))
        self.sessions[key] = session
        return session

    def _credential(self, dev_id: str, loc_name: str) -> Credential | None:
        store = self.services.db.credentials
        if loc_name:
            credential = store.find_by_identity(CREDENTIAL_KIND, loc_name)
            return credential if credential is not None and _same_device(credential.device_id, dev_id) else None
        for candidate in _candidate_ids(dev_id):
            credential = store.get_credential(candidate, CREDENTIAL_KIND)
            if credential is not None:
                return credential
        return None

    def _secret(self, device_id: str) -> str | None:
        credential = self.services.db.credentials.get_credential(device_id, CREDENTIAL_KIND)
        return None if credential is None else credential.secret

    # --- events ----------------------------------------------------------------------------------

    def _drain_all(self) -> None:
        for key, session in list(self.sessions.items()):
            while (event := session.next_event()) is not None:
                self._on_event(event)
            if session.finished:
                del self.sessions[key]

    def _on_event(self, event: ev.DmEvent) -> None:
        now = self.services.clock.now()
        if isinstance(event, ev.NonceIssued):
            self._book(event.device_id, self.nonces, event.nonce, self.store.set_server_nonce, now)
        elif isinstance(event, ev.ClientNonceReceived):
            self._book(event.device_id, self.client_nonces, event.nonce, self.store.set_client_nonce, now)
        elif isinstance(event, ev.DeviceInfoReported):
            self._record_info(event)
        elif isinstance(event, ev.DeviceDetailReported):
            reported = {"firmware_version": event.values.get("FwV"), "software_version": event.values.get("SwV")}
            self.services.db.devices.record_report(event.device_id, now,
                                                   **{k: v[:128] for k, v in reported.items() if v})
        elif isinstance(event, ev.AuthenticationFailed):
            log.warning("OMA-DM authentication failed for %s (status %s)", event.device_id[:128], event.status)
        self.driver.observe(event, now)

    def _book(self, device_id: str, book: dict[str, bytes], nonce: bytes,
              write: Callable[[str, bytes, bytes, datetime], bool], now: datetime) -> None:
        """Commit a device's new nonce (guarded by the one we hold) before it is sent or used."""
        if write(device_id, nonce, book.get(device_id, b""), now):
            book[device_id] = nonce
            return
        log.warning("OMA-DM nonce of %s changed in the store; this exchange is refused", device_id[:128])
        self._unsaved.add(device_id)
        for row in self.store.load_nonces():
            if row.device_id == device_id:
                self._cache(device_id, row.server_nonce, row.client_nonce, parse_host_port(row.trigger_addr))

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
        """End the sessions idle past their deadline (the runner may call this too)."""
        for session in self.sessions.values():
            session.on_timer(now)
        self._drain_all()

    def trigger_address(self, device: Device) -> tuple[str, int] | None:
        return self.trigger_addresses.get(device.device_id)

    async def run_dispatcher(self, poll_s: float = 1.0) -> None:
        """Send Package 0s as the driver asks for them; runs until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can swallow a cancellation
                async with asyncio.timeout(poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.dispatcher.dispatch()
            except StorageUnavailable:
                pass  # logged once by the store's health; the next round tries again


def _address_text(address: tuple[str, int] | None) -> str:
    if address is None:
        return ""
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


def _candidate_ids(dev_id: str) -> list[str]:
    ids = [dev_id]
    for prefix in _ID_PREFIXES:
        if dev_id.upper().startswith(prefix):
            ids.append(dev_id[len(prefix):])
    return ids


def _same_device(device_id: str, dev_id: str) -> bool:
    return device_id in _candidate_ids(dev_id)


def build_omadm(services: Services, settings: OmadmSettings | None = None, driver: OmadmDriver | None = None,
                notifiers: list[Package0Notifier] | None = None, sms_hook: HttpHookNotifier | None = None
                ) -> OmadmServer:
    """Build the OMA-DM part: Package 0 by UDP to the device's announced address (and to an SMS gateway's
    HTTP hook when one is given), unless notifiers are given."""
    settings = settings or OmadmSettings()
    store = SqliteOmadmStore(services.db)
    driver = driver or OmadmDriver(services.db.packages, settings.driver, store=store, clock=services.clock.now)
    holder: list[OmadmServer] = []
    default: list[Package0Notifier] = [UdpNotifier(lambda device: holder[0].trigger_address(device))]
    if sms_hook is not None:
        default.append(sms_hook)
    server = OmadmServer(services, driver, settings, notifiers if notifiers is not None else default, store=store)
    holder.append(server)
    services.extra["omadm"] = server
    return server


def omadm_of(services: Services) -> OmadmServer:
    server = services.extra.get("omadm")
    return server if isinstance(server, OmadmServer) else build_omadm(services)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
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
    if reply.encoding is None:
        headers = None if reply.retry_after_s is None else {"Retry-After": str(reply.retry_after_s)}
        return PlainTextResponse(reply.body.decode("utf-8", "replace"), reply.status, headers=headers)
    return Response(reply.body, reply.status, media_type=_reply_type(content_type, reply.encoding))


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
