"""The HTTP pull driver of the campaign engine, and the device-facing logic of the HTTP FOTA and DDI endpoints.

The engine's ``StartAttempt`` becomes an offer that the device sees at its next check-in (DESIGN.md, data
flow step 3). The device's status reports move the offer on and queue attempt outcomes in the same
transaction; ``collect(now)`` hands them to the engine. Success is confirmed by the version the device
reports at the check-in after its reboot.

Every check-in first compares the version the device runs with the offer's: a device on the target
version is reported as ``UpdateSucceeded`` and never shown the offer (even one it has not acted on, say
after its status reports were lost); a device that reported success but comes back on another version
has failed. A ``StartAttempt`` for an attempt that has an offer continues it (and hands the engine the
offer's end again if it has one: the engine may not have recorded it); a new attempt for a device whose
open offer is the same package, already downloading or installing, takes that offer over in the state it
is in: the device is followed, not restarted.

Outcomes stay in the outbox until acknowledged: ``collect(now)`` takes the previous call's batch as
acknowledged, ``collect_numbered(now)`` with ``acknowledge(ids)`` acknowledges explicitly.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from datetime import datetime, timezone, time as dtime
from typing import Any, Callable

from ..campaign.drivers import (
    collect_acknowledging,
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DriverCommand, InstallPackage,
    PackageDownloaded, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from ..download_tokens import DownloadTokens
from ..protocol.errors import PeerError
from ..protocol.http_fota.manifest import CheckIn, CheckInAnswer, Offer, ReportState, ResultCode, StatusReport
from ..protocol.http_fota.windows import Schedule, TimeWindow, next_checkin_s
from ..records import Device, Package
from ..store.protocol_ports import CheckInEntry, HttpDeviceStore, OfferRecord, OfferState, OfferStore
from ..store.ports import DeviceStore, PackageStore

__all__ = ["HttpFotaSettings", "HttpDriver", "OfferView", "engine_code"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNTIL_STATE = {
    ReportState.DOWNLOADING: (OfferState.OFFERED, OfferState.DOWNLOADING),
    ReportState.DOWNLOADED: (OfferState.OFFERED, OfferState.DOWNLOADING, OfferState.DOWNLOADED),
    ReportState.INSTALLING: (OfferState.OFFERED, OfferState.DOWNLOADING, OfferState.DOWNLOADED,
                             OfferState.INSTALLING),
    ReportState.SUCCESS: (OfferState.OFFERED, OfferState.DOWNLOADING, OfferState.DOWNLOADED,
                          OfferState.INSTALLING, OfferState.REPORTED_SUCCESS),
    ReportState.FAILURE: (OfferState.OFFERED, OfferState.DOWNLOADING, OfferState.DOWNLOADED,
                          OfferState.INSTALLING, OfferState.REPORTED_SUCCESS, OfferState.CANCELLING),
}
_NEW_STATE = {
    ReportState.DOWNLOADING: OfferState.DOWNLOADING, ReportState.DOWNLOADED: OfferState.DOWNLOADED,
    ReportState.INSTALLING: OfferState.INSTALLING, ReportState.SUCCESS: OfferState.REPORTED_SUCCESS,
    ReportState.FAILURE: OfferState.FAILED,
}
# Our result codes as the engine's HTTP codes (campaign/reasons.py HTTP_REASONS); others pass as HttpXxx names.
_ENGINE_CODES = {
    ResultCode.CONNECTION_LOST: "download-failed", ResultCode.INVALID_URL: "download-failed",
    ResultCode.UNSUPPORTED_PROTOCOL: "download-failed", ResultCode.INTEGRITY_FAILED: "hash-mismatch",
    ResultCode.SIZE_MISMATCH: "hash-mismatch", ResultCode.INSTALL_FAILED: "install-failed",
    ResultCode.CANCELLED_BY_DEVICE: "canceled",
}


# The device has acted on the offer: a new attempt of the same update follows it rather than restarts it.
_UNDER_WAY = (OfferState.DOWNLOADING, OfferState.DOWNLOADED, OfferState.INSTALLING, OfferState.REPORTED_SUCCESS)
_WRONG_VERSION = "wrong-version"  # result_code of an offer whose device reported success on another version
_OUTCOME_KINDS: dict[str, Callable[[str, str], AttemptOutcome]] = {
    "progress": AttemptProgressed, "downloaded": lambda attempt_id, _value: PackageDownloaded(attempt_id),
    "succeeded": UpdateSucceeded, "failed": UpdateFailed,
    "cancelled": lambda attempt_id, _value: AttemptCancelled(attempt_id),
}


def engine_code(report: StatusReport) -> str:
    return _ENGINE_CODES.get(report.code, report.reason)


def _final_outcome(offer: OfferRecord) -> tuple[str, str] | None:
    """The outcome an offer's state stands for, for handing it to the engine again (None: still under way)."""
    if offer.state == OfferState.SUCCEEDED:
        return ("succeeded", offer.version_to)
    if offer.state == OfferState.FAILED and offer.result_code == _WRONG_VERSION:
        return ("succeeded", offer.detail)
    if offer.state == OfferState.FAILED:
        code = int(offer.result_code) if offer.result_code.isdigit() else 0
        return ("failed", engine_code(StatusReport(offer.offer_id, ReportState.FAILURE, code)))
    if offer.state == OfferState.CANCELLED:
        return ("cancelled", "")
    if offer.state == OfferState.DOWNLOADED and not offer.install_allowed:
        return ("downloaded", "")
    return None


@dataclass(frozen=True)
class HttpFotaSettings:
    checkin_interval_s: int = 300
    jitter: float = 0.2
    busy_interval_s: int = 30  # while an update is under way
    download_path: str = "/fw"


@dataclass(frozen=True)
class OfferView:
    """An open offer as a device should see it now."""

    record: OfferRecord
    package: Package
    download_open: bool
    install_open: bool
    cancelling: bool

    @property
    def needs_download(self) -> bool:
        return self.record.state in (OfferState.OFFERED, OfferState.DOWNLOADING)

    @property
    def visible(self) -> bool:
        """Shown to the device: inside the download window, or already downloaded (waiting to install)."""
        return not self.cancelling and (self.download_open or not self.needs_download)


@functools.lru_cache(maxsize=1024)
def _schedules(text: str) -> dict[str, Schedule]:
    """An offer's stored ``schedules`` JSON parsed: the same few texts (one per campaign) on every check-in."""
    parsed = json.loads(text)
    return {key: Schedule.from_json(parsed[key]) for key in ("download", "install") if key in parsed}


_ALWAYS = Schedule()
_MAX_PACKAGES = 1024


def _schedule(after: Any, windows: Any) -> Schedule:
    start = datetime.combine(after, dtime(0), tzinfo=timezone.utc) if after is not None else None
    return Schedule(start, tuple(TimeWindow(w.start_hour, w.end_hour) for w in windows or ()))


class HttpDriver:
    """``ProtocolDriver`` for protocol ``HTTP`` plus the check-in and report logic the HTTP adapters call."""

    def __init__(self, devices: DeviceStore, packages: PackageStore, http_devices: HttpDeviceStore,
                 offers: OfferStore, settings: HttpFotaSettings = HttpFotaSettings(),
                 campaign_lookup: Callable[[str], Any] | None = None, rng: random.Random | None = None,
                 on_outcome: Callable[[], None] | None = None, tokens: DownloadTokens | None = None) -> None:
        self.devices = devices
        self.tokens = tokens  # with None, offered URLs carry no download token (the /fw routes refuse them)
        self.packages = packages
        self.http_devices = http_devices
        self.offers = offers
        self.settings = settings
        self._campaign_lookup = campaign_lookup
        self._rng = rng or random.Random()
        self.on_outcome = on_outcome  # called when an outcome is queued, e.g. the runner's EngineHandle.wake
        self._handed: list[int] = []  # outcome ids the last collect() handed out
        self._handed_upto = 0         # highest outcome id handed out by this process
        self._packages: dict[str, Package] = {}  # packages read; the store never changes or removes one

    def _package(self, package_id: str) -> Package | None:
        package = self._packages.get(package_id)
        if package is None:
            package = self.packages.get_package(package_id)
            if package is not None:
                if len(self._packages) >= _MAX_PACKAGES:
                    self._packages.clear()
                self._packages[package_id] = package
        return package

    # ---- engine side -------------------------------------------------------------------------------
    def submit(self, command: DriverCommand, now: datetime) -> None:
        if isinstance(command, StartAttempt):
            self._start(command, now)
        elif isinstance(command, InstallPackage):
            offer = self.offers.by_attempt(command.attempt_id)
            if offer is not None and offer.open:
                self.offers.transition(offer.offer_id, offer.state, offer.state, now, install_allowed=True)
        else:
            self._cancel(command, now)

    def _schedules(self, campaign_id: str) -> str:
        campaign = self._campaign_lookup(campaign_id) if self._campaign_lookup else None
        if campaign is None:
            return "{}"
        spec = campaign.spec
        return json.dumps({"download": _schedule(spec.download_after, spec.download_windows).to_json(),
                           "install": _schedule(spec.install_after, spec.install_windows).to_json()})

    def _start(self, command: StartAttempt, now: datetime) -> None:
        known = self.offers.by_attempt(command.attempt_id)
        if known is not None:
            if command.install and known.open and not known.install_allowed:
                self.offers.transition(known.offer_id, known.state, known.state, now, install_allowed=True)
            self._redeliver(known, now)
            return
        stale = self.offers.open_offer(command.device_id)
        if (stale is not None and stale.package_id == command.package_id and stale.state in _UNDER_WAY
                and self.offers.adopt(stale, command.attempt_id, command.campaign_id, command.install,
                                      self._schedules(command.campaign_id), now)):
            return  # the device goes on with the same update where it is
        stale = self.offers.open_offer(command.device_id)
        if stale is not None:  # an older attempt the engine has moved past: it is superseded, not continued
            self.offers.transition(stale.offer_id, stale.state, OfferState.CANCELLED, now,
                                   detail=f"superseded by attempt {command.attempt_id}"[:1024],
                                   outcome=("cancelled", ""))
        added = self.offers.add_offer(command.attempt_id, command.campaign_id, command.device_id,
                                      command.package_id, command.firmware_to, command.install,
                                      self._schedules(command.campaign_id), now)
        if added is None:
            self.offers.push_outcome(command.attempt_id, "failed", "install-failed", now)
            self._wake()

    def _redeliver(self, offer: OfferRecord, now: datetime) -> None:
        """Queue the end (or the download) an offer reached again, unless an outcome of it is still queued."""
        outcome = _final_outcome(offer)
        if outcome is not None and not self.offers.has_outcome(offer.attempt_id):
            self.offers.push_outcome(offer.attempt_id, *outcome, now)
            self._wake()

    def _cancel(self, command: CancelAttempt, now: datetime) -> None:
        offer = self.offers.by_attempt(command.attempt_id)
        if offer is None or not offer.open:
            self.offers.push_outcome(command.attempt_id, "cancelled", "", now)
        elif offer.state == OfferState.OFFERED:
            self.offers.transition(offer.offer_id, offer.state, OfferState.CANCELLED, now, outcome=("cancelled", ""))
        else:
            self.offers.transition(offer.offer_id, offer.state, OfferState.CANCELLING, now)
        self._wake()

    def next_deadline(self) -> datetime | None:
        return _EPOCH if self.offers.has_outcomes(self._handed_upto) else None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        """The outcomes not acknowledged yet; calling it again acknowledges the ones it returned before."""
        outcomes, self._handed = collect_acknowledging(self, self._handed, now)
        return outcomes

    def collect_numbered(self, now: datetime) -> list[tuple[int, AttemptOutcome]]:
        """Every outcome not acknowledged yet, oldest first, with the id to ``acknowledge`` it by once the
        engine has committed it (handed out again until then)."""
        rows = self.offers.outcomes()
        if rows:
            self._handed_upto = max(self._handed_upto, rows[-1][0])
        return [(outcome_id, _OUTCOME_KINDS[kind](attempt_id, value)) for outcome_id, attempt_id, kind, value in rows]

    def acknowledge(self, outcome_ids: list[int]) -> None:
        """The engine has committed these outcomes: they leave the outbox."""
        if outcome_ids:
            self.offers.delete_outcomes(list(outcome_ids))

    def _wake(self) -> None:
        if self.on_outcome is not None:
            self.on_outcome()

    # ---- device side -------------------------------------------------------------------------------
    def view(self, device_id: str, now: datetime, offer: OfferRecord | None = None) -> OfferView | None:
        """The device's open offer as it should see it now; ``offer``: that offer, if the caller has just read
        it (then it is not read again)."""
        if offer is None:
            offer = self.offers.open_offer(device_id)
        if offer is None or not offer.open or offer.device_id != device_id:
            return None
        package = self._package(offer.package_id)
        if package is None:
            return None
        schedules = _schedules(offer.schedules)
        download, install = schedules.get("download", _ALWAYS), schedules.get("install", _ALWAYS)
        return OfferView(offer, package, download.is_open(now), offer.install_allowed and install.is_open(now),
                         offer.state == OfferState.CANCELLING)

    def until_open_s(self, view: OfferView, now: datetime) -> float | None:
        key = "download" if view.needs_download and not view.download_open else (
            "install" if not view.install_open else "")
        if not key:
            return None
        opens = _schedules(view.record.schedules).get(key, _ALWAYS).next_open(now)
        return None if opens is None else max(0.0, (opens - now).total_seconds())

    def sleep_s(self, view: OfferView | None, now: datetime) -> int:
        s = self.settings
        if view is None:
            return next_checkin_s(s.checkin_interval_s, s.jitter, self._rng.random())
        if view.visible and (view.needs_download or view.install_open):
            return next_checkin_s(min(s.busy_interval_s, s.checkin_interval_s), s.jitter, self._rng.random())
        return next_checkin_s(s.checkin_interval_s, s.jitter, self._rng.random(), self.until_open_s(view, now))

    def checkin(self, device: Device, checkin: CheckIn, now: datetime, base_url: str) -> CheckInAnswer:
        """Record the check-in, then answer it (``answer``)."""
        self.http_devices.record_checkins([self.checkin_entry(device, checkin, now)])
        return self.answer(device, checkin, now, base_url)

    @staticmethod
    def checkin_entry(device: Device, checkin: CheckIn, now: datetime) -> CheckInEntry:
        return CheckInEntry(device.device_id, device.account_name, now, checkin.firmware_version, checkin.state,
                            checkin.firmware_version, checkin.software_version, checkin.make, checkin.model,
                            checkin.serving_cell)

    def answer(self, device: Device, checkin: CheckIn, now: datetime, base_url: str) -> CheckInAnswer:
        """Confirm a reported success by the version; answer with the offer, a cancel, or nothing."""
        logging, record = self.http_devices.checkin_offer(device.device_id, now)
        view = self.view(device.device_id, now, record) if record is not None else None
        if view is not None:
            view = self._confirm(view, checkin, now)
        if view is None:
            return CheckInAnswer(self.sleep_s(None, now), None, logging)
        if view.cancelling:
            self.offers.transition(view.record.offer_id, OfferState.CANCELLING, OfferState.CANCELLED, now,
                                   outcome=("cancelled", ""))
            self._wake()
            return CheckInAnswer(self.sleep_s(None, now), None, logging, view.record.offer_id)
        offer = self.offer_of(view, base_url) if view.visible else None
        return CheckInAnswer(self.sleep_s(view, now), offer, logging)

    def offer_of(self, view: OfferView, base_url: str) -> Offer:
        p = view.package
        return Offer(view.record.offer_id, p.kind, p.version_to, self.download_url(view.record.device_id, p, base_url),
                     p.size, p.sha256, p.signature, view.install_open, (p.file_name or f"{p.name}.bin")[:128])

    def download_url(self, device_id: str, package: Package, base_url: str) -> str:
        """``<base_url>/fw/<package id>?t=<download token>``: the image, for this device only, for a while."""
        url = f"{base_url}{self.settings.download_path}/{package.package_id}"
        return f"{url}?t={self.tokens.issue(device_id, package.sha256)}" if self.tokens is not None else url

    def _confirm(self, view: OfferView, checkin: CheckIn, now: datetime) -> OfferView | None:
        """The version the device runs ends the offer: on the target it succeeded (whatever the offer's
        state: it is never shown again); after a success report on any other version it failed."""
        version = {"firmware": checkin.firmware_version, "software": checkin.software_version,
                   "config": checkin.config_version}.get(view.package.kind, checkin.firmware_version)
        record = view.record
        if version == record.version_to and record.state != OfferState.CANCELLING:
            self.offers.transition(record.offer_id, record.state, OfferState.SUCCEEDED, now,
                                   outcome=("succeeded", version))
        elif record.state == OfferState.REPORTED_SUCCESS:  # the engine records it as the wrong version
            self.offers.transition(record.offer_id, record.state, OfferState.FAILED, now, result_code=_WRONG_VERSION,
                                   detail=version[:128], outcome=("succeeded", version))
        else:
            return view
        self._wake()
        return None

    def answer_cancel(self, offer: OfferRecord, accepted: bool, now: datetime) -> None:
        """The device's answer to a cancel it was shown (DDI cancelAction feedback)."""
        if accepted:
            self.offers.transition(offer.offer_id, OfferState.CANCELLING, OfferState.CANCELLED, now,
                                   outcome=("cancelled", ""))
            self._wake()
        else:
            self.offers.transition(offer.offer_id, OfferState.CANCELLING, OfferState.DOWNLOADING, now,
                                   detail="the device rejected the cancel")

    def confirm_version(self, device_id: str, version: str, now: datetime) -> None:
        """Confirm a reported success by a version learnt another way (DDI has no version in its poll)."""
        view = self.view(device_id, now)
        if view is not None and view.record.state == OfferState.REPORTED_SUCCESS:
            kind_field = {"software": "software_version", "config": "config_version"}.get(view.package.kind,
                                                                                            "firmware_version")
            self._confirm(view, CheckIn(**{"firmware_version": "", kind_field: version}), now)

    def report(self, device: Device, report: StatusReport, now: datetime) -> None:
        """Apply a status report. PeerError 404 (not this device's update), 410 (already closed), 409 (out of order)."""
        offer = self.offers.get_offer(report.update_id)
        if offer is None or offer.device_id != device.device_id:
            raise PeerError(f"update {report.update_id} is not offered to this device", hint=404)
        if not offer.open:
            raise PeerError(f"update {report.update_id} is already {offer.state}", hint=410)
        if offer.state not in _UNTIL_STATE[report.state]:
            raise PeerError(f"a {report.state.value} report does not follow {offer.state}", hint=409)
        new_state = _NEW_STATE[report.state]
        outcome = self._outcome(offer, report, new_state)
        if not self.offers.transition(offer.offer_id, offer.state, new_state, now, result_code=str(report.code),
                                      detail=report.detail, outcome=outcome):
            raise PeerError(f"update {report.update_id} changed meanwhile; report again", hint=409)
        if outcome is not None:
            self._wake()

    @staticmethod
    def _outcome(offer: OfferRecord, report: StatusReport, new_state: str) -> tuple[str, str] | None:
        if new_state == offer.state:
            return None
        if report.state is ReportState.FAILURE:
            return ("failed", engine_code(report))
        if report.state is ReportState.DOWNLOADED and not offer.install_allowed:
            return ("downloaded", "")
        if report.state in (ReportState.DOWNLOADING, ReportState.INSTALLING):
            return ("progress", report.state.value)
        return None
