"""The HTTP pull FOTA client of an emulated device, sans-IO (protocol/http_fota/README.md).

It checks in on the interval the server gives (its own jittered interval when the server cannot be
reached), downloads an offered package with resume after a cut connection, verifies size, SHA-256 and
signature, installs, reboots into the new version and reports each step. One request is outstanding at
a time. Time is monotonic seconds passed in as ``now``; the link sends the commands from ``to_send()`` and
feeds the answers to ``receive()``.

The machine counts what the device did: ``downloads`` is how many offered images it started to fetch
(the first ``FetchImage`` of an offer; a resumed Range request of the same offer is the same download),
``flashes`` how many installs wrote an image and rebooted (whatever version then came up; an install that
fails before writing is none), and ``versions`` the firmware versions it ran, in order, from the first.
A request that fails (connection refused, reset, timeout) ends nothing: the device checks in again after
at most its interval, or 30 s; a download that fails is resumed after 1, 2, 4 ... s (at most 30 s) and
given up after ``max_retries`` tries, so a server restart of half a minute does not cost the update.
"""

from __future__ import annotations

import hashlib
from device_emulator.draws import Draws
from collections import deque
from dataclasses import dataclass, field
from enum import Enum


from device_emulator.http.messages import (
    CheckInAnswered, CheckInRefused, Command, DownloadCut, Event, FetchImage, ImageBytes, ImageEnded,
    ImageVerified, Input, Installed, RebootedInto, RequestFailed, SendCheckIn, SendStatus, StatusAnswered,
    UpdateDropped, UpdateOffered, VerificationFailed,
)
from device_emulator.signature import signature_valid
from fota_server.protocol.errors import DecodeError, UsageError
from fota_server.protocol.http_fota.manifest import (
    CheckIn, Offer, ReportState, ResultCode, StatusReport, decode_answer, encode_checkin, encode_report,
)

__all__ = [
    "Phase", "HttpFaults", "HttpDeviceState", "HttpDeviceMachine",
    "SendCheckIn", "FetchImage", "SendStatus", "Command",
    "CheckInAnswered", "ImageBytes", "ImageEnded", "StatusAnswered", "RequestFailed", "Input",
    "UpdateOffered", "DownloadCut", "ImageVerified", "VerificationFailed", "Installed", "RebootedInto",
    "UpdateDropped", "CheckInRefused", "Event",
]


class Phase(Enum):
    IDLE = "idle"
    BUSY = "busy"          # one request outstanding
    WAITING = "waiting"    # a timer runs: retry, install or reboot


@dataclass
class HttpFaults:
    """Fault injection: cut the first ``cuts`` downloads after ``cut_after`` bytes; flip a byte of the
    image; fail the install; come back from reboot on the old version."""

    cut_after: int = 0
    cuts: int = 0
    corrupt_image: bool = False
    fail_install: bool = False
    reboot_into_old: bool = False


@dataclass
class HttpDeviceState:
    firmware_version: str
    software_version: str = ""
    config_version: str = ""
    make: str = ""
    model: str = ""
    serving_cell: str = ""

    def version_of(self, kind: str) -> str:
        return {"software": self.software_version, "config": self.config_version}.get(kind, self.firmware_version)

    def set_version(self, kind: str, version: str) -> None:
        name = {"software": "software_version", "config": "config_version"}.get(kind, "firmware_version")
        setattr(self, name, version)


@dataclass
class _Update:
    offer: Offer
    image: bytearray = field(default_factory=bytearray)
    etag: str | None = None
    verified: bool = False
    downloaded_reported: bool = False
    retries: int = 0
    fetched: bool = False     # a FetchImage went out for this offer


class HttpDeviceMachine:
    """Check-in, download, verify, install, reboot and report, as plain transitions over ``now``."""

    def __init__(self, state: HttpDeviceState, public_key_pem: bytes | None = None, *, interval_s: float = 300,
                 jitter: float = 0.2, install_s: float = 1.0, reboot_s: float = 1.0, retry_s: float = 1.0,
                 max_retries: int = 5, faults: HttpFaults | None = None, seed: int | None = None) -> None:
        self.state = state
        self._key = public_key_pem
        self._interval_s, self._jitter = interval_s, jitter
        self._install_s, self._reboot_s, self._retry_s, self._max_retries = install_s, reboot_s, retry_s, max_retries
        self.faults = faults or HttpFaults()
        self._rng = Draws(seed)
        self.phase = Phase.IDLE
        self.update: _Update | None = None
        self.finished: set[int] = set()
        self.checkins = 0
        self.failed_requests = 0
        self.downloads = 0
        self.flashes = 0
        self.versions: list[str] = [state.firmware_version]
        self._steps: deque[tuple[str, object]] = deque()
        self._outbox: list[Command] = []
        self._events: deque[Event] = deque()
        self._deadline: float | None = 0.0
        self._timer_step: tuple[str, object] | None = ("checkin", None)

    # ---- the machine's surface -------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """Nothing under way: no update, nothing queued, only the timer of the next check-in running."""
        return self.update is None and not self._steps and not self._outbox and self.phase is Phase.WAITING

    def to_send(self) -> list[Command]:
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self._deadline

    def on_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline or self.phase is Phase.BUSY:
            return
        step, self._timer_step, self._deadline = self._timer_step, None, None
        self.phase = Phase.IDLE
        if step is not None:
            self._steps.appendleft(step)
        self._advance(now)

    def receive(self, event: Input, now: float) -> None:
        if self.phase is not Phase.BUSY:
            raise UsageError(f"{type(event).__name__} arrived with no request outstanding")
        if isinstance(event, ImageBytes):
            self._image_bytes(event)
            return
        self.phase = Phase.IDLE
        if isinstance(event, CheckInAnswered):
            self._answered(event, now)
        elif isinstance(event, ImageEnded):
            self._image_ended(event, now)
        elif isinstance(event, StatusAnswered):
            self._status_answered(event, now)
        else:
            self._failed(now)
        self._advance(now)

    # ---- steps -------------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        while self.phase is Phase.IDLE and self._steps:
            step, arg = self._steps.popleft()
            getattr(self, f"_do_{step}")(arg, now)
        if self.phase is Phase.IDLE and self._deadline is None:
            self._wait(self._jittered(self._interval_s), ("checkin", None), now)

    def _wait(self, seconds: float, step: tuple[str, object], now: float) -> None:
        self.phase, self._deadline, self._timer_step = Phase.WAITING, now + seconds, step

    def _jittered(self, seconds: float) -> float:
        return max(0.0, seconds * (1 + self._jitter * (2 * self._rng.random() - 1)))

    def _send(self, command: Command) -> None:
        self.phase = Phase.BUSY
        self._outbox.append(command)

    def _do_checkin(self, _arg: object, now: float) -> None:
        s = self.state
        self.checkins += 1
        state = "updating" if self.update else "idle"
        self._send(SendCheckIn(encode_checkin(CheckIn(s.firmware_version, s.software_version, s.config_version,
                                                      s.make, s.model, s.serving_cell, state))))

    def _do_report(self, report: object, now: float) -> None:
        assert isinstance(report, StatusReport)
        self._send(SendStatus(encode_report(report)))

    def _do_download(self, _arg: object, now: float) -> None:
        u = self.update
        if u is None:
            return
        stop = self.faults.cut_after if self.faults.cuts > 0 and self.faults.cut_after else None
        if stop is not None:
            self.faults.cuts -= 1
        if not u.fetched:
            u.fetched = True
            self.downloads += 1
        self._send(FetchImage(u.offer.url, len(u.image), u.etag if u.image else None, stop))

    def _do_install(self, _arg: object, now: float) -> None:
        u = self.update
        if u is not None:
            self._wait(self._install_s, ("installed", None), now)

    def _do_installed(self, _arg: object, now: float) -> None:
        u = self.update
        if u is None:
            return
        if self.faults.fail_install:
            self._finish(ResultCode.INSTALL_FAILED, "install failed (injected)")
            return
        self._events.append(Installed(u.offer.update_id))
        self._wait(self._reboot_s, ("rebooted", None), now)

    def _do_rebooted(self, _arg: object, now: float) -> None:
        u = self.update
        if u is None:
            return
        self.flashes += 1
        if not self.faults.reboot_into_old:
            self.state.set_version(u.offer.kind, u.offer.version)
        if self.state.firmware_version != self.versions[-1]:
            self.versions.append(self.state.firmware_version)
        version = self.state.version_of(u.offer.kind)
        self._events.append(RebootedInto(u.offer.kind, version))
        self.finished.add(u.offer.update_id)
        self.update = None
        self._steps.extend([("report", StatusReport(u.offer.update_id, ReportState.SUCCESS, version=version)),
                            ("checkin", None)])

    def _do_retry(self, _arg: object, now: float) -> None:
        self._steps.appendleft(("download", None))

    # ---- answers -----------------------------------------------------------------------------------
    def _answered(self, event: CheckInAnswered, now: float) -> None:
        if event.status != 200:
            self._events.append(CheckInRefused(event.status))
            self._wait(self._jittered(self._interval_s), ("checkin", None), now)
            return
        try:
            answer = decode_answer(event.body)
        except DecodeError:
            self._wait(self._jittered(self._interval_s), ("checkin", None), now)
            return
        if answer.cancel_update_id is not None and self.update and self.update.offer.update_id == answer.cancel_update_id:
            self._events.append(UpdateDropped(answer.cancel_update_id, "cancelled by the server"))
            self.update = None
        self._offer(answer.offer)
        if not self._steps:
            self._wait(float(answer.next_checkin_s), ("checkin", None), now)

    def _offer(self, offer: Offer | None) -> None:
        if offer is None or offer.update_id in self.finished:
            return
        if self.update is None or self.update.offer.update_id != offer.update_id:
            self.update = _Update(offer)
            self._events.append(UpdateOffered(offer))
            self._steps.extend([("report", StatusReport(offer.update_id, ReportState.DOWNLOADING)), ("download", None)])
            return
        self.update.offer = offer
        if self.update.verified and offer.install_allowed:
            self._steps.extend([("report", StatusReport(offer.update_id, ReportState.INSTALLING)), ("install", None)])
        elif not self.update.verified:
            self._steps.append(("download", None))

    def _image_bytes(self, event: ImageBytes) -> None:
        u = self.update
        if u is None:
            return
        if event.first_byte != len(u.image):
            if event.first_byte != 0:
                return
            u.image.clear()
        if event.etag is not None:
            u.etag = event.etag
        u.image += event.data[: max(0, u.offer.size + 1 - len(u.image))]

    def _image_ended(self, event: ImageEnded, now: float) -> None:
        u = self.update
        if u is None:
            return
        if event.complete and event.status in (200, 206) and len(u.image) >= u.offer.size:
            self._verify(u)
            return
        if event.status == 416:
            u.image.clear()
        u.retries += 1
        self._events.append(DownloadCut(len(u.image)))
        if u.retries > self._max_retries:
            self._finish(ResultCode.CONNECTION_LOST, f"download failed {u.retries} times")
        else:  # 1, 2, 4 ... s: a server restarting within half a minute does not cost the update
            self._wait(min(30.0, self._retry_s * 2 ** (u.retries - 1)), ("retry", None), now)

    def _verify(self, u: _Update) -> None:
        if self.faults.corrupt_image and u.image:
            u.image[len(u.image) // 2] ^= 0xFF
        code = self._check(bytes(u.image), u.offer)
        if code:
            self._events.append(VerificationFailed(u.offer.update_id, code))
            self._finish(code, "verification failed")
            return
        u.verified = True
        self._events.append(ImageVerified(u.offer.update_id))
        self._steps.append(("report", StatusReport(u.offer.update_id, ReportState.DOWNLOADED)))
        if u.offer.install_allowed:
            self._steps.extend([("report", StatusReport(u.offer.update_id, ReportState.INSTALLING)), ("install", None)])

    def _check(self, image: bytes, offer: Offer) -> int:
        if len(image) != offer.size:
            return ResultCode.SIZE_MISMATCH
        digest = hashlib.sha256(image).digest()
        if digest.hex() != offer.sha256:
            return ResultCode.INTEGRITY_FAILED
        if self._key is not None and not signature_valid(self._key, digest, offer.signature):
            return ResultCode.SIGNATURE_FAILED
        return ResultCode.OK

    def _finish(self, code: int, detail: str) -> None:
        u = self.update
        if u is None:
            return
        self.finished.add(u.offer.update_id)
        self.update = None
        self._steps.clear()
        self._steps.append(("report", StatusReport(u.offer.update_id, ReportState.FAILURE, code, detail)))

    def _status_answered(self, event: StatusAnswered, now: float) -> None:
        if event.status in (404, 410) and self.update is not None:
            self._events.append(UpdateDropped(self.update.offer.update_id, f"server answered {event.status}"))
            self.update = None
            self._steps.clear()

    def _failed(self, now: float) -> None:
        self.failed_requests += 1
        self._steps.clear()
        self._wait(self._jittered(min(self._interval_s, 30.0)), ("checkin", None), now)
