"""The real OMA-DM link of an emulated device: SyncML over HTTP(S) with httpx, the FUMO download over
HTTP with a size cap, and a UDP listener for Package 0 (reference §1, §9, §10).

``OmadmLink`` drives a ``DmClientSession`` message by message, keeps the nonces between sessions, runs
the FUMO job the server left on the device (download, check, flash, reboot) and reports its result in
the next client-initiated session as a Generic Alert 1226.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

import httpx

from device_emulator.omadm import ClientConfig, DmClientSession, OmadmDevice
from device_emulator.omadm.client import ClientState
from device_emulator.omadm.device import Fault
from fota_server.protocol.errors import DecodeError, PeerError
from fota_server.protocol.omadm.digests import MAC_HEADER, server_password
from fota_server.protocol.omadm.notification import Notification, session_id_text, verify_notification
from fota_server.protocol.omadm.syncml import Encoding

__all__ = ["OmadmLink", "SessionFailed"]

log = logging.getLogger("device_emulator.omadm")
_RESYNC_NONCES = (b"", b"\x00\x00\x00\x00")


class SessionFailed(Exception):
    """The DM session could not be completed (HTTP error, refused credentials, bad server message)."""


@dataclass
class OmadmLink:
    device: OmadmDevice
    config: ClientConfig
    server_url: str
    verify: ssl.SSLContext | bool = True
    timeout_s: float = 30.0
    spelling: str = "application/vnd.syncml.dm"
    nonce: bytes = b""
    server_nonce: bytes | None = None
    sessions_run: int = 0
    results: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(verify=self.verify, timeout=self.timeout_s)
        self._busy = asyncio.Lock()
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.triggers_refused = 0
        self.triggers_seen = 0
        self._trigger_changed = asyncio.Event()

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # --- DM sessions -------------------------------------------------------------------------------

    async def session(self, server_initiated: bool = False, session_id: str = "") -> DmClientSession:
        self.sessions_run += 1
        session = DmClientSession(self.config, self.device, session_id or f"{self.sessions_run:X}", self.nonce,
                                  server_initiated, server_nonce=self.server_nonce or b"")
        content_type = f"{self.spelling}+{'wbxml' if self.config.encoding is Encoding.WBXML else 'xml'}"
        for _ in range(self.config.max_messages):
            outgoing = session.to_send()
            if outgoing is None or session.finished:
                break
            headers = {"Content-Type": content_type}
            if outgoing.mac_header:
                headers[MAC_HEADER] = outgoing.mac_header
            try:
                response = await self._client.post(self.server_url, content=outgoing.body, headers=headers)
            except (httpx.HTTPError, OSError) as exc:  # refused, reset, timed out: the next session retries
                raise SessionFailed(f"DM POST failed: {exc}") from None
            if response.status_code != 200:
                raise SessionFailed(f"DM server answered HTTP {response.status_code}: {response.text[:200]}")
            try:
                session.receive(response.content)
            except PeerError as exc:
                raise SessionFailed(f"bad server message: {exc}") from None
            self.nonce = session.nonce
            if session.finished:
                break
        if session.server_nonce is not None:
            self.server_nonce = session.server_nonce
        if session.state is not ClientState.ENDED:
            raise SessionFailed(session.failure or "session did not end")
        return session

    async def update_cycle(self, server_initiated: bool = False, session_id: str = "") -> int | None:
        """One session; if it left a FUMO job, run it and report the result in a second session."""
        async with self._busy:
            await self.session(server_initiated, session_id)
            code = await self.run_job()
            if code is not None:
                await self.session()
            return code

    # --- FUMO job ----------------------------------------------------------------------------------

    async def run_job(self) -> int | None:
        job = self.device.job
        if job is None:
            return None
        refusal = self.device.begin_download()
        image, error = (None, refusal) if refusal else await self.download(job.pkg_url)
        code = self.device.finish_download(image, error)
        if code == 200:
            self.device.reboot()
        self.results.append(code)
        return code

    async def download(self, url: str) -> tuple[bytes | None, int | None]:
        """The package bytes, or the FUMO result code of why they could not be had."""
        limit = self.device.profile.free_memory
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code in (401, 403):
                    return None, Fault.DOWNLOAD_AUTH_FAILURE.value
                if response.status_code == 404:
                    return None, Fault.SERVER_UNAVAILABLE.value
                if response.status_code != 200:
                    return None, Fault.SERVER_ERROR.value
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    return None, Fault.DOWNLOAD_OUT_OF_MEMORY.value
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        return None, Fault.DOWNLOAD_OUT_OF_MEMORY.value
                return bytes(data), None
        except httpx.TimeoutException:
            return None, Fault.DOWNLOAD_TIMEOUT.value
        except httpx.ConnectError:
            return None, Fault.SERVER_UNAVAILABLE.value
        except (httpx.HTTPError, OSError):
            return None, Fault.NETWORK_FAILURE.value

    # --- Package 0 ---------------------------------------------------------------------------------

    def verify_trigger(self, data: bytes) -> Notification | None:
        """Check the digest with our SRVCRED nonce, then the resync nonces (reference §9)."""
        password = server_password(self.config.password)
        nonces = ([self.server_nonce] if self.server_nonce is not None else []) + list(_RESYNC_NONCES)
        for nonce in nonces:
            try:
                return verify_notification(data, password, nonce)
            except DecodeError:
                continue
        return None

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen for Package 0 on UDP; the address goes to the server in ./DevInfo/Ext/TriggerAddr."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _TriggerProtocol(self), local_addr=(host, port))
        self._transport = transport
        bound = transport.get_extra_info("sockname")
        address = (str(bound[0]), int(bound[1]))
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        self.device.tree["./DevInfo/Ext/TriggerAddr"] = f"{shown}:{address[1]}"
        return address

    async def settle(self, triggers: int = 1, timeout_s: float = 30.0) -> None:
        """Wait until ``triggers`` Package 0s have arrived in all, then until the sessions they started end."""
        async def arrived() -> None:
            while self.triggers_seen < triggers:
                self._trigger_changed.clear()
                await self._trigger_changed.wait()

        await asyncio.wait_for(arrived(), timeout_s)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def on_trigger(self, data: bytes) -> None:
        notification = self.verify_trigger(data)
        self.triggers_seen += 1
        self._trigger_changed.set()
        if notification is None:
            self.triggers_refused += 1
            log.warning("%s: Package 0 refused (digest does not verify)", self.device.profile.dev_id)
            return
        if self._busy.locked():
            return
        task = asyncio.get_running_loop().create_task(self._triggered(session_id_text(notification.session_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _triggered(self, session_id: str) -> None:
        try:
            await self.update_cycle(server_initiated=True, session_id=session_id)
        except SessionFailed as exc:
            log.warning("%s: triggered session failed: %s", self.device.profile.dev_id, exc)


class _TriggerProtocol(asyncio.DatagramProtocol):
    def __init__(self, link: OmadmLink) -> None:
        self._link = link

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) <= 1024:
            self._link.on_trigger(data)
