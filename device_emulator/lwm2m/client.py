"""An LwM2M client state machine for the emulator (LwM2M Core 1.1 §6.2 registration, §6.3 device
management, Object 5), without IO. Time is monotonic seconds passed as ``now``.

The link feeds it server requests (``handle``), answers to its uplinks (``on_register_reply`` ...), pull
download data, and timer ticks; it asks the link to send uplinks through ``to_send``.

A server that goes away and comes back is ridden out: a Register without a 2.01 is tried again after
``retry_s``, doubling up to ``max_retry_s``; an Update that gets no answer (``"timeout"``: the link's
retransmissions ran out, or the network reported the server unreachable) or a 4.04/4.00/4.03 (the
server forgot the registration, Core 1.1 §6.2.2) is followed by a full Register. ``versions`` lists the
firmware versions the device ran, in order, starting with the one it started with.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.content import ContentFormat, encode_values
from fota_server.protocol.lwm2m.formats import MULTI_VALUE_FORMATS
from fota_server.protocol.lwm2m.linkformat import ObjectList, encode_object_list
from fota_server.protocol.lwm2m.objects import OBJECTS, FirmwareState, ResourceType, resource_def
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.values import Values, text_to_value

from .faults import Fault
from .firmware import DeviceFirmware
from .messages import (
    DeviceRequest, DeviceResponse, NotifyObservers, Reboot, SendDeregister, SendRegister, SendUpdate,
    StartDownload, Uplink,
)

__all__ = ["ClientConfig", "ClientPhase", "LwM2MClient", "WAKAAMA_FORMATS"]

P = LwM2MPath
_SINGLE_FORMATS = {ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR}
_OLD_NUMBERS = {ContentFormat.OLD_TEXT: ContentFormat.TEXT, ContentFormat.OLD_TLV: ContentFormat.TLV,
                ContentFormat.OLD_JSON: ContentFormat.LWM2M_JSON}
# Eclipse Wakaama's lwm2mclient built with its defaults: LwM2M 1.1, SenML JSON (announced as ct=110) and
# SenML CBOR, no TLV
WAKAAMA_FORMATS = (ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR)
MAX_WRITE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClientConfig:
    endpoint: str
    lifetime_s: int = 300
    version: str = "1.1"
    queue_mode: bool = False
    queue_awake_s: float = 93.0
    update_fraction: float = 0.5        # send an Update after this share of the lifetime
    reboot_s: float = 0.05              # flash and reboot time after Execute
    retry_s: float = 2.0                # first Register retry; doubles up to max_retry_s
    max_retry_s: float = 30.0
    manufacturer: str = "FOTA Emulator"
    model: str = "EMU-LWM2M"
    serial: str = "0001"
    firmware_version: str = "1.0.0"
    software_version: str = "1.0.0"
    cell: tuple[int, int, int, int] = (310, 410, 1, 1)  # MCC, MNC, LAC, Cell ID
    objects: ObjectList = field(default_factory=lambda: ObjectList(
        "/", None, {1: "1.1", 5: "1.1"} , {1: (0,), 3: (0,), 4: (0,), 5: (0,)}))
    # the multi-value formats it reads in, preferred first (an Accept for another gets 4.06); plain text,
    # opaque and CBOR serve single resources whatever this says
    formats: tuple[int, ...] = MULTI_VALUE_FORMATS
    # announce them in the Register payload's root link, as 1.1+ clients do (Core 1.1 §6.2.1): 1.1 names
    # the preferred one (``ct=110``), 1.2 all of them (``ct="110 112"``); a 1.0 client never does
    announce_formats: bool = True


class ClientPhase(enum.Enum):
    STOPPED = "stopped"
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"
    REBOOTING = "rebooting"


class LwM2MClient:
    def __init__(self, config: ClientConfig, firmware: DeviceFirmware | None = None) -> None:
        self.config = config
        self.firmware = firmware or DeviceFirmware()
        self.firmware_version = config.firmware_version
        self.lifetime_s = config.lifetime_s
        self.phase = ClientPhase.STOPPED
        self.location: tuple[str, ...] = ()
        self.registrations = 0
        self.reboots = 0
        self.unanswered = 0                 # Registers and Updates that got no answer at all
        self.forgotten = 0                  # Updates answered 4.04: the server had lost the registration
        self.versions: list[str] = [config.firmware_version]   # firmware versions run, in order
        self.observed: set[LwM2MPath] = set()
        self.attributes: dict[LwM2MPath, tuple[str, ...]] = {}
        self._outbox: list[Uplink] = []   # a list, not a deque: a fleet holds 100,000 of these
        self._update_at: float | None = None
        self._retry_at: float | None = None
        self._retry_s = config.retry_s
        self._flash_at: float | None = None
        self._awake_until = 0.0
        self._update_in_flight = False
        self._snapshot: dict[LwM2MPath, Values] = {}

    # ---------------------------------------------------------------- registration

    def start(self, now: float) -> None:
        self.phase = ClientPhase.REGISTERING
        self._uplink(SendRegister(self._register_query(), encode_object_list(self._object_list())), now)

    def stop(self, now: float) -> None:
        if self.location:
            self.phase = ClientPhase.DEREGISTERING
            self._uplink(SendDeregister(self.location), now)
        else:
            self.phase = ClientPhase.STOPPED

    def _object_list(self) -> ObjectList:
        objects, formats = self.config.objects, self.config.formats
        if not self.config.announce_formats or self.config.version == "1.0" or not formats:
            return objects
        announced = tuple(formats[:1]) if self.config.version == "1.1" else tuple(formats)
        return dataclasses.replace(objects, content_format=announced[0], content_formats=announced)

    def _register_query(self) -> tuple[str, ...]:
        query = [f"ep={self.config.endpoint}", f"lt={self.lifetime_s}", f"lwm2m={self.config.version}"]
        if self.config.version == "1.0":
            query.append("b=UQ" if self.config.queue_mode else "b=U")
        else:
            query.append("b=U")
            if self.config.queue_mode:
                query.append("Q")
        return tuple(query)

    def _uplink(self, uplink: Uplink, now: float) -> None:
        if self.firmware.dead:
            return  # Fault.DIE_MID_DOWNLOAD: it never registers or updates again
        self._outbox.append(uplink)
        if not isinstance(uplink, (NotifyObservers, StartDownload)):
            self._awake_until = now + self.config.queue_awake_s

    def send_update(self, now: float, with_lifetime: bool = False) -> None:
        if self.phase is not ClientPhase.REGISTERED or self._update_in_flight:
            return
        self._update_in_flight = True
        query = (f"lt={self.lifetime_s}",) if with_lifetime else ()
        self._uplink(SendUpdate(self.location, query, b""), now)

    def on_register_reply(self, code: str, location: tuple[str, ...], now: float) -> None:
        if self.phase is not ClientPhase.REGISTERING:
            return
        if code == "2.01" and len(location) == 2:
            self.phase = ClientPhase.REGISTERED
            self.location = location
            self.registrations += 1
            self._retry_s = self.config.retry_s
            self._schedule_update(now)
        else:
            self._note_unanswered(code)
            self._retry_at = now + self._retry_s
            self._retry_s = min(self.config.max_retry_s, self._retry_s * 2)

    def on_update_reply(self, code: str, now: float) -> None:
        self._update_in_flight = False
        if self.phase is not ClientPhase.REGISTERED:
            return
        if code == "2.04":
            self._schedule_update(now)
        elif code in ("4.04", "4.00", "4.03", "timeout"):
            self._note_unanswered(code)
            if code == "4.04":
                self.forgotten += 1
            self.location = ()
            self.start(now)  # the server forgot us, or is gone: a full Register (retried with backoff)
        else:
            self._update_at = now + self.config.retry_s

    def _note_unanswered(self, code: str) -> None:
        if code == "timeout":
            self.unanswered += 1

    def on_deregister_reply(self, code: str, now: float) -> None:
        self.location = ()
        self.phase = ClientPhase.STOPPED
        self._update_at = None

    def _schedule_update(self, now: float) -> None:
        self._update_at = now + max(1.0, self.lifetime_s * self.config.update_fraction)

    def reachable(self, now: float) -> bool:
        """A queue-mode client listens only for a while after it sent something (reference §2.2)."""
        if self.phase in (ClientPhase.STOPPED, ClientPhase.REBOOTING) or self.firmware.dead:
            return False
        return not self.config.queue_mode or now < self._awake_until

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        times = [t for t in (self._update_at, self._retry_at, self._flash_at) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            if self.phase is ClientPhase.REGISTERING:
                self.start(now)
        if self._update_at is not None and now >= self._update_at:
            self._update_at = None
            self.send_update(now)
        if self._flash_at is not None and now >= self._flash_at:
            self._flash_at = None
            self._flash(now)
        self._check_notifications()

    def _flash(self, now: float) -> None:
        version = self.firmware.finish_update()
        if version is None:
            return
        if version != self.firmware_version:
            self.versions.append(version)
        self.firmware_version = version
        self.reboots += 1
        if Fault.REBOOT_WITHOUT_REGISTER in self.firmware.faults and self.location:
            self.observed.clear()  # a reboot ends every Observe relation
            self._outbox.append(Reboot())
            self._update_in_flight = False
            self.send_update(now)  # its old registration, from a new port: no Register
            return
        self.phase = ClientPhase.REBOOTING
        self.location = ()
        self.observed.clear()
        self._update_at = None
        self._update_in_flight = False
        self._outbox.append(Reboot())
        self.start(now)

    def to_send(self) -> list[Uplink]:
        out, self._outbox = self._outbox, []
        return out

    # ---------------------------------------------------------------- pull downloads

    def download_data(self, chunk: bytes, now: float) -> bool:
        keep_going = self.firmware.download_data(chunk)
        self._check_notifications()
        return keep_going

    def download_finished(self, now: float) -> None:
        self.firmware.download_finished()
        self._check_notifications()

    def download_failed(self, now: float, unsupported_protocol: bool = False) -> None:
        self.firmware.download_failed(unsupported_protocol)
        self._check_notifications()

    # ---------------------------------------------------------------- the object tree

    def values(self) -> Values:
        c, fw = self.config, self.firmware
        mcc, mnc, lac, cell_id = c.cell
        tree: Values = {
            P(1, 0, 0): 1, P(1, 0, 1): self.lifetime_s, P(1, 0, 6): False, P(1, 0, 7): "U",
            P(3, 0, 0): c.manufacturer, P(3, 0, 1): c.model, P(3, 0, 2): c.serial,
            P(3, 0, 3): self.firmware_version, P(3, 0, 9): 90, P(3, 0, 11, 0): 0,
            P(3, 0, 16): "UQ" if c.queue_mode else "U", P(3, 0, 19): c.software_version,
            P(4, 0, 0): 6, P(4, 0, 2): -85, P(4, 0, 8): cell_id, P(4, 0, 9): mnc, P(4, 0, 10): mcc,
            P(4, 0, 12): lac,
            P(5, 0, 1): fw.package_uri, P(5, 0, 3): int(fw.state), P(5, 0, 5): int(fw.result),
            P(5, 0, 9): int(fw.delivery),
        }
        for index, protocol in enumerate(fw.protocols):
            tree[P(5, 0, 8, index)] = int(protocol)
        tree.update(fw.resources())
        return tree

    # ---------------------------------------------------------------- server requests

    def handle(self, request: DeviceRequest, now: float) -> DeviceResponse:
        """Answer one request from the server; bad requests get a 4.xx, never an exception."""
        try:
            path = LwM2MPath.from_segments(list(request.path))
        except DecodeError:
            return DeviceResponse("4.04")
        if path.object_id not in OBJECTS or (path.instance_id not in (None, 0)):
            return DeviceResponse("4.04")
        handler = {"GET": self._read, "PUT": self._write, "POST": self._execute}.get(request.method)
        response = handler(path, request, now) if handler else DeviceResponse("4.05")
        self._check_notifications()
        return response

    def _read(self, path: LwM2MPath, request: DeviceRequest, now: float) -> DeviceResponse:
        rdef = resource_def(path.object_id, path.resource_id) if path.resource_id is not None else None
        if rdef is not None and "R" not in rdef.operations:
            return DeviceResponse("4.05")
        values = {p: v for p, v in self.values().items() if path.is_prefix_of(p)}
        if not values:
            return DeviceResponse("4.04")
        if request.observe == 0:
            self.observed.add(path)
            self._snapshot[path] = values
        elif request.observe == 1:
            self.observed.discard(path)
        known = self._answer_format(request.accept, list(values) == [path])
        if known is None:
            return DeviceResponse("4.06")
        try:
            return DeviceResponse("2.05", encode_values(known, path, values), int(known))
        except ValueError:
            return DeviceResponse("4.06")

    def _answer_format(self, accept: int | None, single: bool) -> ContentFormat | None:
        """The format to answer a read in; None for 4.06 Not Acceptable (Core 1.1 §7.4: an Accept the client
        does not support, or a single-value format for several values)."""
        multi = self.config.formats
        if accept is None:
            return ContentFormat.TEXT if single else (ContentFormat(multi[0]) if multi else None)
        try:
            known = ContentFormat(accept)
        except ValueError:
            return None
        known = _OLD_NUMBERS.get(known, known)
        if known in _SINGLE_FORMATS:
            return known if single else None
        return known if known in multi else None

    def _write(self, path: LwM2MPath, request: DeviceRequest, now: float) -> DeviceResponse:
        if request.content_format is None and request.query:  # Write-Attributes (Core 1.1 §6.3.4)
            self.attributes[path] = request.query[:8]
            return DeviceResponse("2.04")
        if path == P(5, 0, 0):
            answer = self.firmware.write_package(request.block1, request.payload, request.size1)
            return DeviceResponse(answer.code, block1=answer.block1, size1=answer.size1)
        rdef = resource_def(path.object_id, path.resource_id) if path.resource_id is not None else None
        if rdef is None or "W" not in rdef.operations or path.depth != 3:
            return DeviceResponse("4.05")
        if len(request.payload) > MAX_WRITE_BYTES:
            return DeviceResponse("4.13", size1=MAX_WRITE_BYTES)
        value = self._single_value(request, rdef.type)
        if value is None:
            return DeviceResponse("4.00")
        if path == P(5, 0, 1) and isinstance(value, str):
            code = self.firmware.write_uri(value)
            if self.firmware.download_uri:
                self._outbox.append(StartDownload(self.firmware.download_uri))
            return DeviceResponse(code)
        if path.object_id == 5 and path.resource_id in (4, 11, 13):
            return DeviceResponse(self.firmware.write_setting(path.resource_id, value))
        if path == P(1, 0, 1) and isinstance(value, int):
            self.lifetime_s = max(1, value)
            self.send_update(now, with_lifetime=True)  # int-102: the client Updates with the new lt
        return DeviceResponse("2.04")

    @staticmethod
    def _single_value(request: DeviceRequest, kind: ResourceType) -> object | None:
        if request.content_format not in (None, ContentFormat.TEXT, ContentFormat.OLD_TEXT):
            return None
        try:
            return text_to_value(request.payload.decode("utf-8"), kind)
        except (UnicodeDecodeError, DecodeError):
            return None

    def _execute(self, path: LwM2MPath, request: DeviceRequest, now: float) -> DeviceResponse:
        rdef = resource_def(path.object_id, path.resource_id) if path.resource_id is not None else None
        if rdef is None or rdef.operations != "E" or path.depth != 3:
            return DeviceResponse("4.05")
        if path == P(5, 0, 2):
            code = self.firmware.execute(now)
            if code == "2.04" and self.firmware.state is FirmwareState.UPDATING:  # not deferred
                self._flash_at = now + self.config.reboot_s
            return DeviceResponse(code)
        if path == P(5, 0, 10):
            return DeviceResponse(self.firmware.cancel())
        if path == P(1, 0, 4):  # Disable: de-register (int-103)
            self.stop(now)
        elif path == P(1, 0, 8):  # Registration Update Trigger (int-104)
            self.send_update(now)
        elif path == P(3, 0, 4):
            self._flash_at = now + self.config.reboot_s
        return DeviceResponse("2.04")

    def _check_notifications(self) -> None:
        if not self.observed:
            return
        tree = self.values()
        changed = []
        for path in sorted(self.observed):
            current = {p: v for p, v in tree.items() if path.is_prefix_of(p)}
            if current != self._snapshot.get(path):
                self._snapshot[path] = current
                changed.append(path)
        if changed:
            self._outbox.append(NotifyObservers(tuple(changed)))
