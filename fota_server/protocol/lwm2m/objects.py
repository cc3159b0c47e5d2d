"""The objects the FOTA server reads and drives: 1 (Server), 3 (Device), 4 (Connectivity Monitoring),
5 (Firmware Update), with the Object 5 state and result tables.

Sources: OMA-TS-LightweightM2M_Core-V1_1_1 Appendix E; OMNA ``3.xml``, ``4.xml`` (v1.3), ``5.xml`` (v1.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ResourceType", "ResourceDef", "ObjectDef", "OBJECTS", "resource_def",
    "FirmwareState", "UpdateResult", "RESULT_REASONS", "result_reason",
    "ProtocolSupport", "DeliveryMethod", "Severity", "SCHEME_PROTOCOLS", "protocol_for_uri",
    "SERVER", "DEVICE", "CONNECTIVITY", "FIRMWARE",
]


class ResourceType(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    UNSIGNED = "unsigned"
    FLOAT = "float"
    BOOLEAN = "boolean"
    OPAQUE = "opaque"
    TIME = "time"
    OBJLNK = "objlnk"
    NONE = "none"  # executable resources carry no value


@dataclass(frozen=True)
class ResourceDef:
    resource_id: int
    name: str
    type: ResourceType
    operations: str  # "R", "W", "RW", "E"
    multiple: bool = False


@dataclass(frozen=True)
class ObjectDef:
    object_id: int
    name: str
    resources: dict[int, ResourceDef]


def _object(object_id: int, name: str, *defs: ResourceDef) -> ObjectDef:
    return ObjectDef(object_id, name, {d.resource_id: d for d in defs})


_S, _I, _U, _B, _O, _T, _N = (ResourceType.STRING, ResourceType.INTEGER, ResourceType.UNSIGNED,
                              ResourceType.BOOLEAN, ResourceType.OPAQUE, ResourceType.TIME, ResourceType.NONE)

SERVER = 1
DEVICE = 3
CONNECTIVITY = 4
FIRMWARE = 5

OBJECTS: dict[int, ObjectDef] = {
    SERVER: _object(
        SERVER, "LwM2M Server",
        ResourceDef(0, "Short Server ID", _I, "R"), ResourceDef(1, "Lifetime", _I, "RW"),
        ResourceDef(2, "Default Minimum Period", _I, "RW"), ResourceDef(3, "Default Maximum Period", _I, "RW"),
        ResourceDef(4, "Disable", _N, "E"), ResourceDef(5, "Disable Timeout", _I, "RW"),
        ResourceDef(6, "Notification Storing", _B, "RW"), ResourceDef(7, "Binding", _S, "RW"),
        ResourceDef(8, "Registration Update Trigger", _N, "E"),
    ),
    DEVICE: _object(
        DEVICE, "Device",
        ResourceDef(0, "Manufacturer", _S, "R"), ResourceDef(1, "Model Number", _S, "R"),
        ResourceDef(2, "Serial Number", _S, "R"), ResourceDef(3, "Firmware Version", _S, "R"),
        ResourceDef(4, "Reboot", _N, "E"), ResourceDef(5, "Factory Reset", _N, "E"),
        ResourceDef(6, "Available Power Sources", _I, "R", multiple=True),
        ResourceDef(7, "Power Source Voltage", _I, "R", multiple=True),
        ResourceDef(8, "Power Source Current", _I, "R", multiple=True),
        ResourceDef(9, "Battery Level", _I, "R"), ResourceDef(10, "Memory Free", _I, "R"),
        ResourceDef(11, "Error Code", _I, "R", multiple=True), ResourceDef(12, "Reset Error Code", _N, "E"),
        ResourceDef(13, "Current Time", _T, "RW"), ResourceDef(14, "UTC Offset", _S, "RW"),
        ResourceDef(15, "Timezone", _S, "RW"), ResourceDef(16, "Supported Binding and Modes", _S, "R"),
        ResourceDef(17, "Device Type", _S, "R"), ResourceDef(18, "Hardware Version", _S, "R"),
        ResourceDef(19, "Software Version", _S, "R"), ResourceDef(20, "Battery Status", _I, "R"),
        ResourceDef(21, "Memory Total", _I, "R"),
    ),
    CONNECTIVITY: _object(
        CONNECTIVITY, "Connectivity Monitoring",
        ResourceDef(0, "Network Bearer", _I, "R"),
        ResourceDef(1, "Available Network Bearer", _I, "R", multiple=True),
        ResourceDef(2, "Radio Signal Strength", _I, "R"), ResourceDef(3, "Link Quality", _I, "R"),
        ResourceDef(4, "IP Addresses", _S, "R", multiple=True),
        ResourceDef(5, "Router IP Addresses", _S, "R", multiple=True),
        ResourceDef(6, "Link Utilization", _I, "R"), ResourceDef(7, "APN", _S, "R", multiple=True),
        ResourceDef(8, "Cell ID", _I, "R"), ResourceDef(9, "SMNC", _I, "R"), ResourceDef(10, "SMCC", _I, "R"),
        ResourceDef(11, "SignalSNR", _I, "R"), ResourceDef(12, "LAC", _I, "R"),
        ResourceDef(13, "Coverage Enhancement Level", _I, "R"),
    ),
    FIRMWARE: _object(
        FIRMWARE, "Firmware Update",
        ResourceDef(0, "Package", _O, "W"), ResourceDef(1, "Package URI", _S, "RW"),
        ResourceDef(2, "Update", _N, "E"), ResourceDef(3, "State", _I, "R"),
        ResourceDef(4, "Update Supported Objects", _B, "RW"),  # Object 5 v1.0 only (LwM2M 1.0.2 Appendix E.6)
        ResourceDef(5, "Update Result", _I, "R"), ResourceDef(6, "PkgName", _S, "R"),
        ResourceDef(7, "PkgVersion", _S, "R"),
        ResourceDef(8, "Firmware Update Protocol Support", _I, "R", multiple=True),
        ResourceDef(9, "Firmware Update Delivery Method", _I, "R"), ResourceDef(10, "Cancel", _N, "E"),
        ResourceDef(11, "Severity", _I, "RW"), ResourceDef(12, "Last State Change Time", _T, "R"),
        ResourceDef(13, "Maximum Defer Period", _U, "RW"),
    ),
}


def resource_def(object_id: int, resource_id: int) -> ResourceDef | None:
    obj = OBJECTS.get(object_id)
    return obj.resources.get(resource_id) if obj is not None else None


class FirmwareState(enum.IntEnum):
    """``/5/0/3`` State (Object 5 v1.1)."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class UpdateResult(enum.IntEnum):
    """``/5/0/5`` Update Result (Object 5 v1.1). ``DEFERRED`` (11) keeps State 2 Downloaded: the device's user
    put the update off, for at most the Maximum Defer Period ``/5/0/13`` (0: no deferral allowed)."""

    INITIAL = 0
    SUCCESS = 1
    NOT_ENOUGH_FLASH = 2
    OUT_OF_RAM = 3
    CONNECTION_LOST = 4
    INTEGRITY_FAILURE = 5
    UNSUPPORTED_PACKAGE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    CANCELLED = 10
    DEFERRED = 11


RESULT_REASONS: dict[UpdateResult, str] = {
    UpdateResult.INITIAL: "LwM2M update result 0: no outcome reported yet",
    UpdateResult.SUCCESS: "LwM2M update result 1: firmware updated successfully",
    UpdateResult.NOT_ENOUGH_FLASH: "LwM2M update result 2: not enough flash memory for the new package",
    UpdateResult.OUT_OF_RAM: "LwM2M update result 3: out of RAM during download",
    UpdateResult.CONNECTION_LOST: "LwM2M update result 4: connection lost during download",
    UpdateResult.INTEGRITY_FAILURE: "LwM2M update result 5: integrity check failure for the downloaded package",
    UpdateResult.UNSUPPORTED_PACKAGE: "LwM2M update result 6: unsupported package type",
    UpdateResult.INVALID_URI: "LwM2M update result 7: invalid URI",
    UpdateResult.UPDATE_FAILED: "LwM2M update result 8: firmware update failed",
    UpdateResult.UNSUPPORTED_PROTOCOL: "LwM2M update result 9: unsupported protocol (URI scheme)",
    UpdateResult.CANCELLED: "LwM2M update result 10: update cancelled",
    UpdateResult.DEFERRED: "LwM2M update result 11: update deferred by the device",
}


def result_reason(result: int) -> str:
    """The documented reason string for an Update Result; unknown values are named as such."""
    try:
        return RESULT_REASONS[UpdateResult(result)]
    except ValueError:
        return f"LwM2M update result {result}: not defined by Object 5 v1.1"


class ProtocolSupport(enum.IntEnum):
    """``/5/0/8`` Firmware Update Protocol Support."""

    COAP = 0
    COAPS = 1
    HTTP = 2
    HTTPS = 3
    COAP_TCP = 4
    COAPS_TCP = 5


SCHEME_PROTOCOLS: dict[str, ProtocolSupport] = {
    "coap": ProtocolSupport.COAP, "coaps": ProtocolSupport.COAPS,
    "http": ProtocolSupport.HTTP, "https": ProtocolSupport.HTTPS,
    "coap+tcp": ProtocolSupport.COAP_TCP, "coaps+tcp": ProtocolSupport.COAPS_TCP,
}


def protocol_for_uri(uri: str) -> ProtocolSupport | None:
    scheme, sep, _ = uri.partition("://")
    return SCHEME_PROTOCOLS.get(scheme.lower()) if sep else None


class DeliveryMethod(enum.IntEnum):
    """``/5/0/9`` Firmware Update Delivery Method."""

    PULL = 0
    PUSH = 1
    BOTH = 2


class Severity(enum.IntEnum):
    """``/5/0/11`` Severity (Object 5 v1.1); a device without it treats packages as mandatory."""

    CRITICAL = 0
    MANDATORY = 1
    OPTIONAL = 2
