"""What the server learns from a device: its id from the endpoint name (LwM2M Core 1.1 §7.3.1 URN forms),
and the Device (3) and Connectivity Monitoring (4) fields it reads after Register and Update."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .paths import LwM2MPath
from .values import Values

__all__ = ["DeviceReport", "device_report", "device_id_for_endpoint", "DEVICE_READS", "cell_key"]

DEVICE_READS = (LwM2MPath(3, 0), LwM2MPath(4, 0))

_URN_KINDS = ("urn:imei:", "urn:imei-imsi:", "urn:imei-msisdn:", "urn:meid:", "urn:esn:", "urn:uuid:")


@functools.lru_cache(maxsize=256)   # a Register asks it of the same endpoint several times in a row
def device_id_for_endpoint(endpoint: str) -> tuple[str, str]:
    """(kind, id): ``urn:imei:490154203237518`` -> ("imei", "490154203237518"); other names stay whole."""
    lowered = endpoint.lower()
    for prefix in _URN_KINDS:
        if lowered.startswith(prefix) and len(endpoint) > len(prefix):
            rest = endpoint[len(prefix):]
            kind = prefix[4:-1]
            if kind in ("imei-imsi", "imei-msisdn"):
                return "imei", rest.split("-", 1)[0]
            return kind, rest
    return "ep", endpoint


def cell_key(mcc: int | None, mnc: int | None, lac: int | None, cell_id: int | None) -> str:
    """``MCC-MNC-LAC-CellID``; unknown parts are empty. No Cell ID, no key."""
    if cell_id is None:
        return ""
    return "-".join("" if v is None else str(v) for v in (mcc, mnc, lac, cell_id))


@dataclass(frozen=True)
class DeviceReport:
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    firmware_version: str = ""
    software_version: str = ""
    serving_cell: str = ""

    def fields(self) -> dict[str, str]:
        """Non-empty fields under the device store's names."""
        named = {"make": self.manufacturer, "model": self.model, "firmware_version": self.firmware_version,
                 "software_version": self.software_version, "serving_cell": self.serving_cell}
        return {k: v for k, v in named.items() if v}


def _text(values: Values, path: LwM2MPath) -> str:
    value = values.get(path)
    return value[:128] if isinstance(value, str) else ""


def _number(values: Values, path: LwM2MPath) -> int | None:
    value = values.get(path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def device_report(values: Values) -> DeviceReport:
    """Fields from reads of /3/0 and /4/0 (a 4.04 for /4/0/11 or /4/0/12 just leaves them unknown)."""
    p = LwM2MPath
    return DeviceReport(
        manufacturer=_text(values, p(3, 0, 0)), model=_text(values, p(3, 0, 1)), serial=_text(values, p(3, 0, 2)),
        firmware_version=_text(values, p(3, 0, 3)), software_version=_text(values, p(3, 0, 19)),
        serving_cell=cell_key(_number(values, p(4, 0, 10)), _number(values, p(4, 0, 9)),
                              _number(values, p(4, 0, 12)), _number(values, p(4, 0, 8))),
    )
