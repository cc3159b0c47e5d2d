"""The device manifest: the devices of a fleet as the server must know them before they connect.

``fota-server device import FILE`` reads it (format ``fota-fleet-manifest/1``)::

    {"format": "fota-fleet-manifest/1", "account": "fleet",
     "devices": [
       {"deviceId": "350000000000000", "protocol": "LWM2M", "imei": "350000000000000",
        "make": "FOTA Emulator", "model": "EMU-1", "firmwareVersion": "1.0.0",
        "servingCell": "310-410-100-1000", "license": true,
        "credentials": {"lwm2mEndpoint": "urn:imei:350000000000000"}},
       {"deviceId": "...", "protocol": "HTTP", ..., "credentials": {"httpToken": "<32 hex digits>"}},
       {"deviceId": "...", "protocol": "OMADM", ...,
        "credentials": {"omadmDevId": "IMEI:...", "omadmUser": "dm-...", "omadmSecret": "<32 hex digits>"}}]}

The HTTP token is the device's bearer token (stored hashed by the server), the OMA-DM user and secret
are the DM account. LwM2M devices get no PSK (``"pskIdentity"``, ``"pskKey"``) unless asked with ``psk=True``:
the server then insists on CoAPS for them, and the fleet speaks plain CoAP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .fleet_spec import DevicePlan, cell_text

__all__ = ["MANIFEST_FORMAT", "manifest", "write_manifest", "credentials_of"]

MANIFEST_FORMAT = "fota-fleet-manifest/1"


def credentials_of(plan: DevicePlan, psk: bool = False) -> dict[str, str]:
    if plan.protocol == "LWM2M":
        keys = {"pskIdentity": plan.device_id, "pskKey": plan.secret} if psk else {}
        return {"lwm2mEndpoint": plan.endpoint, **keys}
    if plan.protocol == "HTTP":
        return {"httpToken": plan.secret}
    return {"omadmDevId": plan.dev_id, "omadmUser": plan.user_name, "omadmSecret": plan.secret}


def manifest(plans: Iterable[DevicePlan], account: str, psk: bool = False) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "account": account, "devices": [
        {"deviceId": p.device_id, "protocol": p.protocol, "imei": p.device_id, "make": p.make, "model": p.model,
         "firmwareVersion": p.version, "servingCell": cell_text(p.cell), "license": True,
         "credentials": credentials_of(p, psk)} for p in plans]}


def write_manifest(plans: Iterable[DevicePlan], account: str, path: Path, psk: bool = False) -> int:
    """Write the manifest; returns the number of devices in it."""
    data = manifest(plans, account, psk)
    path.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    return len(data["devices"])
