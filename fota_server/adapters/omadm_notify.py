"""Package 0 delivery (OMA-TS-DM_Notification-V1_2_1; reference §9): pluggable notifiers and the
dispatcher that turns the driver's trigger requests into signed notifications.

* ``UdpNotifier`` sends the bytes as one datagram, for the emulator and labs. The address is what the
  device announced in ``./DevInfo/Ext/TriggerAddr`` (``host:port``) or a fixed map.
* ``HttpHookNotifier`` POSTs JSON to an SMS gateway: the device's MSISDN, the notification in base64,
  and the same bytes wrapped as a WAP Push WSP PDU (content type 0x44, X-Wap-Application-Id 0x07)
  for gateways that send binary SMS as given.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

import httpx

from ..protocol.omadm.notification import CONTENT_TYPE, Notification, UiMode, build_notification
from ..records import Device
from .omadm_driver import OmadmDriver, TriggerRequest

__all__ = [
    "Package0Notifier", "UdpNotifier", "HttpHookNotifier", "TriggerDispatcher", "wap_push_pdu", "NotifyError",
    "parse_host_port",
]

log = logging.getLogger("fota_server.omadm")
WAP_APPLICATION_SYNCML_DM = 0x07
CONTENT_TYPE_CODE = 0x44


class NotifyError(Exception):
    """The notification could not be handed to its channel."""


class Package0Notifier(Protocol):
    async def notify(self, device: Device, notification: bytes) -> None: ...


def parse_host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536 or len(host) > 255:
        return None
    return host, int(port)


class _OneShot(asyncio.DatagramProtocol):
    pass


@dataclass
class UdpNotifier:
    address_of: Callable[[Device], tuple[str, int] | None]

    async def notify(self, device: Device, notification: bytes) -> None:
        address = self.address_of(device)
        if address is None:
            raise NotifyError(f"no UDP trigger address known for device {device.device_id}")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_OneShot, remote_addr=address)
        try:
            transport.sendto(notification)
        finally:
            transport.close()


def wap_push_pdu(notification: bytes, transaction_id: int = 0) -> bytes:
    """A connectionless WSP Push PDU (WAP-230 §8.2.4.1) carrying the notification."""
    headers = bytes([CONTENT_TYPE_CODE | 0x80, 0xAF, WAP_APPLICATION_SYNCML_DM | 0x80])
    return bytes([transaction_id & 0xFF, 0x06, len(headers)]) + headers + notification


@dataclass
class HttpHookNotifier:
    url: str
    client: httpx.AsyncClient
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the gateway's Authorization

    async def notify(self, device: Device, notification: bytes) -> None:
        body = {
            "deviceId": device.device_id, "msisdn": device.mdn, "contentType": CONTENT_TYPE,
            "wapApplicationId": "x-wap-application:syncml.dm", "port": 2948,
            "payload": base64.b64encode(notification).decode(),
            "wapPushPdu": base64.b64encode(wap_push_pdu(notification)).decode(),
        }
        try:
            response = await self.client.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise NotifyError(f"SMS gateway hook failed: {exc}") from None
        if response.status_code >= 300:
            raise NotifyError(f"SMS gateway hook answered {response.status_code}")


@dataclass
class TriggerDispatcher:
    """Signs each trigger request (digest with the device's SRVCRED and its last nonce) and sends it."""

    driver: OmadmDriver
    find_device: Callable[[str], Device | None]
    srvcred_of: Callable[[str], str | None]  # the device's server password (SRVCRED), None: no credential
    client_nonce_of: Callable[[str], bytes]
    notifiers: list[Package0Notifier]
    server_id: str = "fota-server"
    ui_mode: UiMode = UiMode.BACKGROUND

    def build(self, request: TriggerRequest) -> bytes | None:
        srvcred = self.srvcred_of(request.device_id)
        if srvcred is None:
            return None
        notification = Notification(self.server_id, request.session_id, self.ui_mode)
        return build_notification(notification, srvcred, self.client_nonce_of(request.device_id))

    async def dispatch(self) -> list[str]:
        """Send every pending trigger through the first notifier that takes it; returns the devices reached."""
        sent: list[str] = []
        for request in self.driver.take_triggers():
            device = self.find_device(request.device_id)
            message = self.build(request)
            if device is None or message is None:
                log.warning("no OMA-DM credential for %s: Package 0 not sent", request.device_id)
                continue
            for notifier in self.notifiers:
                try:
                    await notifier.notify(device, message)
                except (NotifyError, OSError) as exc:
                    log.warning("Package 0 for %s via %s: %s", device.device_id, type(notifier).__name__, exc)
                    continue
                sent.append(device.device_id)
                break
        return sent
