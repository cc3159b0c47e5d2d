"""An emulated OMA-DM device: its DM tree (DevInfo, DevDetail, FUMO), the FUMO job it runs and the faults
that steer each job to a given Generic Alert 1226 result code (OMA-TS-DM-FUMO-V1_0 §6-8; reference §7, §10).

The device is sans-IO: ``accept_exec`` records the job, ``begin_download`` says whether to fetch the
package (the caller downloads it however it likes), then ``finish_download`` checks the image (format,
hash, make and model), stages it and queues the 1226 the next session reports. ``reboot`` writes the
staged image and boots it.

The device counts what it did: ``downloads`` is how many FUMO downloads it started (``begin_download``
said go), ``flashes`` how many reboots wrote a staged image (whatever then boots; a job that fails its
checks stages nothing, so its reboot is no flash), ``versions`` the firmware versions it ran, in order,
starting with the one it started with.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.image import verify_image
from fota_server.protocol.omadm.fumo import ALERT_TYPES, FumoState, FumoTree

__all__ = ["DeviceProfile", "Fault", "OmadmDevice", "PendingJob", "GenericAlert", "DOWNLOAD_STAGE_FAULTS"]


class Fault(enum.Enum):
    """Injected failures, each named for what goes wrong; the value is the 1226 result code it produces."""

    NONE = 200
    MANAGEMENT_CLIENT_ERROR = 400
    USER_CANCELLED = 401
    CORRUPT_PACKAGE = 402
    PACKAGE_MISMATCH = 403
    VALIDATION_FAILED = 404
    NOT_ACCEPTABLE = 405
    DOWNLOAD_AUTH_FAILURE = 406
    DOWNLOAD_TIMEOUT = 407
    NOT_IMPLEMENTED = 408
    UNDEFINED_ERROR = 409
    UPDATE_FAILED = 410
    BAD_URL = 411
    SERVER_UNAVAILABLE = 412
    SERVER_ERROR = 500
    DOWNLOAD_OUT_OF_MEMORY = 501
    UPDATE_OUT_OF_MEMORY = 502
    NETWORK_FAILURE = 503


# Faults that stop the job before or during the download: the package never reaches flash (State 20).
DOWNLOAD_STAGE_FAULTS = frozenset({
    Fault.MANAGEMENT_CLIENT_ERROR, Fault.USER_CANCELLED, Fault.DOWNLOAD_AUTH_FAILURE, Fault.DOWNLOAD_TIMEOUT,
    Fault.NOT_IMPLEMENTED, Fault.BAD_URL, Fault.SERVER_UNAVAILABLE, Fault.SERVER_ERROR,
    Fault.DOWNLOAD_OUT_OF_MEMORY, Fault.NETWORK_FAILURE,
})


@dataclass
class DeviceProfile:
    dev_id: str
    man: str = "Acme"
    mod: str = "Tracker-1"
    fw_version: str = "1.0.0"
    sw_version: str = "1.0"
    hw_version: str = "A"
    dm_version: str = "1.2"
    lang: str = "en-US"
    fumo_root: str = "./FUMO"
    free_memory: int = 16 * 1_048_576
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class PendingJob:
    correlator: str
    pkg_url: str
    path: str


@dataclass(frozen=True)
class GenericAlert:
    correlator: str
    source: str
    alert_type: str
    result_code: int


@dataclass
class OmadmDevice:
    profile: DeviceProfile
    fault: Fault = Fault.NONE
    tree: dict[str, str] = field(default_factory=dict)
    job: PendingJob | None = None
    pending_alerts: list[GenericAlert] = field(default_factory=list)
    staged_version: str = ""
    reboots: int = 0
    downloads: int = 0
    flashes: int = 0
    versions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        p, fumo = self.profile, FumoTree(self.profile.fumo_root)
        self.versions = self.versions or [p.fw_version]
        self.tree.update({
            "./DevInfo/DevId": p.dev_id, "./DevInfo/Man": p.man, "./DevInfo/Mod": p.mod,
            "./DevInfo/DmV": p.dm_version, "./DevInfo/Lang": p.lang,
            "./DevDetail/FwV": p.fw_version, "./DevDetail/SwV": p.sw_version, "./DevDetail/HwV": p.hw_version,
            fumo.pkg_name: "", fumo.pkg_version: "", fumo.pkg_url: "", fumo.state: str(int(FumoState.IDLE)),
        })

    @property
    def fumo(self) -> FumoTree:
        return FumoTree(self.profile.fumo_root)

    @property
    def firmware_version(self) -> str:
        return self.tree["./DevDetail/FwV"]

    def devinfo(self) -> dict[str, str]:
        return {k: v for k, v in self.tree.items() if k.startswith("./DevInfo/")}

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, data, format) of a Get; interior nodes list their children with Format ``node``."""
        if path in self.tree:
            fmt = "int" if path == self.fumo.state else "chr"
            return 200, self.tree[path], fmt
        children = sorted({k[len(path) + 1:].split("/", 1)[0] for k in self.tree if k.startswith(path + "/")})
        if children:
            return 200, "/".join(children), "node"
        return 404, "", "chr"

    def replace(self, path: str, value: str) -> int:
        if path.startswith("./DevInfo/") or path.startswith("./DevDetail/") or path == self.fumo.state:
            return 405
        if path not in self.tree:
            return 404
        self.tree[path] = value
        return 200

    def accept_exec(self, path: str, correlator: str) -> int:
        """Exec on the FUMO node: 202 and a pending job (FUMO §6.2); anything else is not allowed."""
        if path != self.fumo.download_and_update:
            return 405 if path in self.tree or path.startswith(self.fumo.root) else 404
        if self.job is not None:
            return 500
        self.job = PendingJob(correlator, self.tree[self.fumo.pkg_url], path)
        self._set_state(FumoState.DOWNLOAD_PROGRESSING)
        return 202

    def download_refusal(self) -> int | None:
        """A result code when the job must stop before any byte is fetched, else None (go and download)."""
        if self.job is None:
            return None
        if self.fault in DOWNLOAD_STAGE_FAULTS and self.fault is not Fault.NETWORK_FAILURE:
            return int(self.fault.value)
        parts = urlsplit(self.job.pkg_url)
        if parts.scheme not in ("http", "https") or parts.hostname not in self.profile.allowed_hosts:
            return Fault.BAD_URL.value
        return None

    def begin_download(self) -> int | None:
        """Before fetching the job's package: the refusal code (no download), or None after counting a
        download started."""
        refusal = self.download_refusal()
        if self.job is not None and refusal is None:
            self.downloads += 1
        return refusal

    def finish_download(self, image: bytes | None, download_error: int | None = None) -> int:
        """Check and flash the downloaded image; queue the 1226 and return its result code."""
        if self.job is None:
            raise ValueError("no FUMO job to finish")
        code = download_error or self.download_refusal() or self._install(image or b"")
        failed_state = FumoState.DOWNLOAD_FAILED if code in {f.value for f in DOWNLOAD_STAGE_FAULTS} \
            else FumoState.UPDATE_FAILED_NO_DATA
        self._set_state(FumoState.UPDATE_SUCCESSFUL_NO_DATA if code == 200 else failed_state)
        self.pending_alerts.append(GenericAlert(self.job.correlator, self.job.path,
                                                ALERT_TYPES["DownloadAndUpdate"], code))
        self.job = None
        return code

    def _install(self, image: bytes) -> int:
        if self.fault is Fault.NETWORK_FAILURE:
            return Fault.NETWORK_FAILURE.value
        if len(image) > self.profile.free_memory:
            return Fault.DOWNLOAD_OUT_OF_MEMORY.value
        if self.fault is Fault.CORRUPT_PACKAGE and image:
            image = image[:-1] + bytes([image[-1] ^ 0xFF])
        try:
            header = verify_image(image)
        except DecodeError:
            return Fault.CORRUPT_PACKAGE.value
        if self.fault is Fault.PACKAGE_MISMATCH or (header.make, header.model) != (self.profile.man, self.profile.mod):
            return Fault.PACKAGE_MISMATCH.value
        if self.fault in (Fault.VALIDATION_FAILED, Fault.NOT_ACCEPTABLE, Fault.UNDEFINED_ERROR, Fault.UPDATE_FAILED,
                          Fault.UPDATE_OUT_OF_MEMORY):
            return int(self.fault.value)
        self.staged_version = header.version
        return 200

    def reboot(self) -> None:
        """Flash the staged image, if any, and boot it; the new FwV is what the next session reports."""
        self.reboots += 1
        if self.staged_version:
            self.flashes += 1
            self.tree["./DevDetail/FwV"] = self.staged_version
            self.staged_version = ""
            if self.firmware_version != self.versions[-1]:
                self.versions.append(self.firmware_version)

    def alert_delivered(self, correlator: str) -> None:
        self.pending_alerts = [a for a in self.pending_alerts if a.correlator != correlator]

    def _set_state(self, state: FumoState) -> None:
        self.tree[self.fumo.state] = str(int(state))
