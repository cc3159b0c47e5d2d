"""The device side of Object 5 (Firmware Update v1.1): State and Update Result, push (Block1 writes of
/5/0/0) and pull (Package URI), a fake flash with a capacity, the image check, and injected faults.

Transitions follow OMNA 5.xml and reference §4.1: a reset (``\\0`` package or empty URI) gives 0/0;
Execute only in Downloaded (else 4.05, nothing changes); integrity failure ends 0/5; update failure 2/8.

The object counts what the device did: ``downloads`` is how many times it entered Downloading (a Package
URI write or the first Block1 block of a push; a re-sent identical block is not a new one), ``flashes`` how
many times ``finish_update`` wrote a staged image and the device rebooted (whatever image then boots); an
update that fails before writing (2/8) is no flash.

``object_version`` "1.0" gives the Object 5 of LwM2M 1.0: Update Supported Objects /5/0/4 (RW boolean, no
Cancel, no Severity or Maximum Defer Period); "1.1" has Cancel /5/0/10, Severity /5/0/11 and Maximum Defer
Period /5/0/13 (OMNA 5.xml v1.1), and no /5/0/4.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit
from typing import Callable

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.image import verify_image
from fota_server.protocol.lwm2m.blockwise import Block1Receiver, BlockOption, ReceiverVerdict
from fota_server.protocol.lwm2m.objects import (
    DeliveryMethod, FirmwareState, ProtocolSupport, Severity, UpdateResult, protocol_for_uri,
)
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.values import Values

from ..signature import signature_valid
from .faults import Fault

__all__ = ["DeviceFirmware", "PackageAnswer", "image_version"]

Verifier = Callable[[bytes], str]


def image_version(image: bytes) -> str:
    """The default check: the FOTAIMG1 header, size and payload SHA-256; DecodeError hint 5 or 6 if bad."""
    return verify_image(image).version


@dataclass(frozen=True)
class PackageAnswer:
    code: str
    block1: BlockOption | None = None
    size1: int | None = None


class DeviceFirmware:
    def __init__(self, flash_bytes: int = 8 * 1024 * 1024, faults: frozenset[Fault] = frozenset(),
                 protocols: tuple[ProtocolSupport, ...] = (ProtocolSupport.COAP, ProtocolSupport.HTTP),
                 delivery: DeliveryMethod = DeliveryMethod.BOTH, verifier: Verifier = image_version,
                 lost_after_bytes: int = 2048, ram_bytes: int = 4096, max_szx: int = 6,
                 public_key_pem: bytes | None = None, object_version: str = "1.1",
                 severity: int = Severity.MANDATORY, max_defer_s: int = 0) -> None:
        self.flash_bytes = flash_bytes
        self.faults = faults
        self.protocols = protocols
        self.delivery = delivery
        self.verifier = verifier
        self.public_key_pem = public_key_pem  # with it, a pulled image must carry a valid ``sig`` in its URI
        self.lost_after_bytes = lost_after_bytes
        self.ram_bytes = ram_bytes
        self.state = FirmwareState.IDLE
        self.result = UpdateResult.INITIAL
        self.package_uri = ""
        self.staged_version: str | None = None
        self.download_uri: str | None = None  # set when a pull download should start
        self.downloads = 0
        self.flashes = 0
        self.object_version = object_version
        self.update_supported_objects = False   # /5/0/4 (v1.0)
        self.severity = int(severity)           # /5/0/11 (v1.1)
        self.max_defer_s = max_defer_s          # /5/0/13 (v1.1), seconds; 0: no deferral allowed
        self.deferred_at: float | None = None   # when the user first put the update off
        self.deferrals = 0
        self.cancels = 0
        self.dead = False                       # Fault.DIE_MID_DOWNLOAD struck: silent from now on
        self._pulled = bytearray()
        limit = min(flash_bytes, 1024) if Fault.NOT_ENOUGH_FLASH in faults else flash_bytes
        self._receiver = Block1Receiver(limit, max_szx)

    # ------------------------------------------------------------- resets and results

    def _set(self, state: FirmwareState, result: UpdateResult) -> None:
        self.state, self.result = state, result

    def reset(self) -> None:
        self._set(FirmwareState.IDLE, UpdateResult.INITIAL)
        self.package_uri = ""
        self.staged_version = None
        self.download_uri = None
        self._pulled = bytearray()
        self._receiver.reset()

    @property
    def v1_0(self) -> bool:
        return self.object_version == "1.0"

    def resources(self) -> Values:
        """The resources this object version has beyond those of every version (read by the client)."""
        if self.v1_0:
            return {LwM2MPath(5, 0, 4): self.update_supported_objects}
        return {LwM2MPath(5, 0, 11): self.severity, LwM2MPath(5, 0, 13): self.max_defer_s}

    def write_setting(self, resource_id: int, value: object) -> str:
        """A Write of /5/0/4, /5/0/11 or /5/0/13; 4.04 for a resource this object version lacks."""
        if resource_id == 4 and self.v1_0 and isinstance(value, bool):
            self.update_supported_objects = value
        elif resource_id == 11 and not self.v1_0 and isinstance(value, int) and value in set(Severity):
            self.severity = value
        elif resource_id == 13 and not self.v1_0 and isinstance(value, int) and not isinstance(value, bool) \
                and value >= 0:
            self.max_defer_s = value
        elif resource_id in (4, 11, 13):
            return "4.04" if (resource_id == 4) != self.v1_0 else "4.00"
        else:
            return "4.05"
        return "2.04"

    def _dies(self, received: int) -> bool:
        if Fault.DIE_MID_DOWNLOAD in self.faults and received > self.lost_after_bytes:
            self.dead = True
        return self.dead

    def _fail(self, result: UpdateResult, state: FirmwareState = FirmwareState.IDLE) -> None:
        self._set(state, result)
        self.download_uri = None
        self._pulled = bytearray()
        self._receiver.reset()

    def _downloaded(self, image: bytes) -> None:
        if Fault.INTEGRITY_FAILURE in self.faults:
            self._fail(UpdateResult.INTEGRITY_FAILURE)
            return
        if Fault.UNSUPPORTED_PACKAGE in self.faults:
            self._fail(UpdateResult.UNSUPPORTED_PACKAGE)
            return
        if self.public_key_pem is not None and self.package_uri and not self._signed(image):
            self._fail(UpdateResult.INTEGRITY_FAILURE)
            return
        try:
            self.staged_version = self.verifier(image)
        except DecodeError as exc:
            self._fail(UpdateResult.UNSUPPORTED_PACKAGE if exc.hint == 6 else UpdateResult.INTEGRITY_FAILURE)
            return
        self._set(FirmwareState.DOWNLOADED, UpdateResult.INITIAL)
        self.download_uri = None

    def _signed(self, image: bytes) -> bool:
        """The ``sig`` query of the Package URI verifies over the image (pull only; a push has no URI)."""
        query = parse_qs(urlsplit(self.package_uri).query)
        signature = query.get("sig", [""])[0]
        return bool(signature) and signature_valid(self.public_key_pem or b"", hashlib.sha256(image).digest(), signature)

    # ------------------------------------------------------------- push

    def write_package(self, block1: BlockOption | None, payload: bytes, size1: int | None) -> PackageAnswer:
        """A Write of /5/0/0 (one block of it, with Block1)."""
        if block1 is None and payload in (b"", b"\x00"):
            self.reset()
            return PackageAnswer("2.04")
        if block1 is not None and self._receiver.repeats_last(block1, payload):
            return PackageAnswer("2.31" if block1.more else "2.04", self._receiver.ack_option(block1))
        if self.state not in (FirmwareState.IDLE, FirmwareState.DOWNLOADING):
            return PackageAnswer("4.05")
        if block1 is None or block1.num == 0:
            self._set(FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
            self.downloads += 1
        received = len(self._receiver.data) + len(payload)
        if self._dies(received):
            return PackageAnswer("5.03")  # what a dead device's link makes of it: no answer at all
        if Fault.OUT_OF_RAM in self.faults and received > self.ram_bytes:
            self._fail(UpdateResult.OUT_OF_RAM)
            return PackageAnswer("5.00")
        if Fault.CONNECTION_LOST in self.faults and received > self.lost_after_bytes:
            self._fail(UpdateResult.CONNECTION_LOST)
            return PackageAnswer("5.03")
        verdict = self._receiver.receive(block1, payload, size1)
        ack = self._receiver.ack_option(block1) if block1 is not None else None
        if verdict is ReceiverVerdict.TOO_LARGE:
            self._fail(UpdateResult.NOT_ENOUGH_FLASH)
            return PackageAnswer("4.13", None, self._receiver.limit)
        if verdict is ReceiverVerdict.INCOMPLETE:
            return PackageAnswer("4.08")
        if verdict is ReceiverVerdict.CONTINUE:
            return PackageAnswer("2.31", ack)
        self._downloaded(self._receiver.release())
        return PackageAnswer("2.04", ack)

    # ------------------------------------------------------------- pull

    def write_uri(self, uri: str) -> str:
        """A Write of /5/0/1; returns the CoAP code. The result of a bad URI shows in /5/0/5 (int-778, 780)."""
        if uri == "":
            self.reset()
            return "2.04"
        if self.state not in (FirmwareState.IDLE,):
            return "4.05"
        if len(uri) > 255:
            return "4.00"
        self.package_uri = uri
        scheme, sep, rest = uri.partition("://")
        if Fault.INVALID_URI in self.faults or not sep or not rest or rest.startswith("/"):
            self._fail(UpdateResult.INVALID_URI)
            return "2.04"
        protocol = protocol_for_uri(uri)
        if Fault.UNSUPPORTED_PROTOCOL in self.faults or protocol is None or protocol not in self.protocols:
            self._fail(UpdateResult.UNSUPPORTED_PROTOCOL)
            return "2.04"
        self._set(FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
        self.downloads += 1
        self.download_uri = None if Fault.IGNORE_URI in self.faults else uri
        return "2.04"

    def download_data(self, chunk: bytes) -> bool:
        """Bytes of a pull download; False tells the downloader to stop (the outcome is in State/Result)."""
        if self.state is not FirmwareState.DOWNLOADING or self._dies(len(self._pulled) + len(chunk)):
            return False
        self._pulled += chunk
        if len(self._pulled) > (min(self.flash_bytes, 1024) if Fault.NOT_ENOUGH_FLASH in self.faults
                                else self.flash_bytes):
            self._fail(UpdateResult.NOT_ENOUGH_FLASH)
            return False
        if Fault.OUT_OF_RAM in self.faults and len(self._pulled) > self.ram_bytes:
            self._fail(UpdateResult.OUT_OF_RAM)
            return False
        if Fault.CONNECTION_LOST in self.faults and len(self._pulled) > self.lost_after_bytes:
            self._fail(UpdateResult.CONNECTION_LOST)
            return False
        return True

    def download_finished(self) -> None:
        if self.state is FirmwareState.DOWNLOADING:
            self._downloaded(bytes(self._pulled))
            self._pulled = bytearray()

    def download_failed(self, unsupported_protocol: bool = False) -> None:
        if self.state is FirmwareState.DOWNLOADING:
            self._fail(UpdateResult.UNSUPPORTED_PROTOCOL if unsupported_protocol else UpdateResult.CONNECTION_LOST)

    # ------------------------------------------------------------- execute and cancel

    def execute(self, now: float = 0.0) -> str:
        """Execute /5/0/2: Updating, or, with ``Fault.DEFER``, deferred (Result 11, State stays 2) while the
        Maximum Defer Period since the first deferral lasts."""
        if self.state is not FirmwareState.DOWNLOADED:
            return "4.05"
        if self._defers(now):
            self.deferrals += 1
            self.result = UpdateResult.DEFERRED
            return "2.04"
        self._set(FirmwareState.UPDATING, UpdateResult.INITIAL)
        return "2.04"

    def _defers(self, now: float) -> bool:
        if (Fault.DEFER not in self.faults or self.v1_0 or self.max_defer_s <= 0
                or self.severity == Severity.CRITICAL):
            return False
        if self.deferred_at is None:
            self.deferred_at = now
        return now < self.deferred_at + self.max_defer_s

    def finish_update(self) -> str | None:
        """Flash the staged image and reboot: the version that boots (counted in ``flashes``), or None when
        the update fails before writing anything (2/8)."""
        if self.state is not FirmwareState.UPDATING:
            return None
        if Fault.UPDATE_FAILED in self.faults or self.staged_version is None:
            self._set(FirmwareState.DOWNLOADED, UpdateResult.UPDATE_FAILED)
            return None
        version = self.staged_version
        self.staged_version = None
        self.flashes += 1
        self.package_uri = ""
        self._set(FirmwareState.IDLE, UpdateResult.SUCCESS)
        return version

    def cancel(self) -> str:
        """Execute /5/0/10 (Object 5 v1.1; a v1.0 object has no such resource)."""
        if self.v1_0:
            return "4.04"
        if self.state not in (FirmwareState.DOWNLOADING, FirmwareState.DOWNLOADED):
            return "4.05"
        self.cancels += 1
        self._fail(UpdateResult.CANCELLED)
        self.staged_version = None
        return "2.04"
