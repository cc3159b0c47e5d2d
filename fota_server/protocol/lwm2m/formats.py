"""Which content format to ask a device for (LwM2M Core 1.1 §7.4, our reference §3), without IO.

A device says what it speaks in two ways: the LwM2M version it registers with (``lwm2m=``; a 1.0 client
must speak TLV, a 1.1+ client SHOULD NOT, Core 1.1 §7.4.3) and the ``ct`` attribute of its registration's
root link (``</>;rt="oma.lwm2m";ct=110`` in 1.1, a list ``ct="60 110 112 11542"`` in 1.2, Core §6.2.1).

- Reads of an object or instance (several values) try the announced multi-value formats first, then the
  ones the version implies: SenML CBOR 112, SenML JSON 110, TLV 11542, LwM2M JSON 11543 for 1.1/1.2;
  TLV, then LwM2M JSON for 1.0.
- A single resource is read and written as plain text (opaque for an opaque resource); a multiple-instance
  resource carries several values and is treated like an instance.
- On 4.06 Not Acceptable the caller retries once with ``next_after`` and ``remember``s what worked (and
  ``refuse``s what did not); the memory is per endpoint, bounded (least recently used first out) and holds
  only devices that did not take the first choice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from .content import ContentFormat
from .linkformat import ObjectList
from .objects import ResourceType, resource_def
from .paths import LwM2MPath

__all__ = ["DeviceFormats", "FormatChooser", "MULTI_VALUE_FORMATS", "multi_value_order", "single_value_format",
           "carries_several_values", "parse_format_names", "FORMAT_NAMES"]

MULTI_VALUE_FORMATS = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.TLV,
                       ContentFormat.LWM2M_JSON)
_BY_VERSION_1_0 = (ContentFormat.TLV, ContentFormat.LWM2M_JSON)
_ALIASES = {ContentFormat.OLD_TLV: ContentFormat.TLV, ContentFormat.OLD_JSON: ContentFormat.LWM2M_JSON}

FORMAT_NAMES = {"senml-cbor": ContentFormat.SENML_CBOR, "senml-json": ContentFormat.SENML_JSON,
                "tlv": ContentFormat.TLV, "lwm2m-json": ContentFormat.LWM2M_JSON}


def parse_format_names(text: str) -> tuple[ContentFormat, ...]:
    """``"senml-cbor,senml-json"`` (names of ``FORMAT_NAMES`` or numbers) -> formats in that order;
    ValueError names what is not a multi-value format."""
    out: list[ContentFormat] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        fmt = FORMAT_NAMES.get(part)
        if fmt is None and part.isdigit() and int(part) in {int(f) for f in MULTI_VALUE_FORMATS}:
            fmt = ContentFormat(int(part))
        if fmt is None:
            raise ValueError(f"unknown multi-value content format {part[:32]!r} "
                             f"(one of {', '.join(FORMAT_NAMES)})")
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ValueError("no content format named")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DeviceFormats:
    """What a device announced at registration: its LwM2M version and the ``ct`` numbers, in its order."""

    version: str = "1.0"
    announced: tuple[int, ...] = ()

    @classmethod
    def of(cls, version: str, objects: ObjectList,
           attributes: Sequence[tuple[str, str]] = ()) -> DeviceFormats:
        """From a registration: the root link's ``ct``, else a ``ct`` Register query some clients send."""
        announced = objects.content_formats
        if not announced:
            query_ct = next((value for key, value in attributes if key == "ct"), "")
            announced = tuple(int(p) for p in query_ct[:64].split(" ")
                              if p.isascii() and p.isdigit() and len(p) <= 5)
        return cls(version, announced)


def multi_value_order(device: DeviceFormats) -> tuple[ContentFormat, ...]:
    """The multi-value formats to try for this device, best first: the announced ones (in the device's
    order), then the ones its version implies."""
    implied = _BY_VERSION_1_0 if device.version == "1.0" else MULTI_VALUE_FORMATS
    out: list[ContentFormat] = []
    for number in device.announced:
        fmt = _multi(number)
        if fmt is not None and fmt not in out:
            out.append(fmt)
    out.extend(fmt for fmt in implied if fmt not in out)
    return tuple(out)


def _multi(number: int) -> ContentFormat | None:
    try:
        fmt = ContentFormat(number)
    except ValueError:
        return None
    fmt = _ALIASES.get(fmt, fmt)
    return fmt if fmt in MULTI_VALUE_FORMATS else None


def carries_several_values(path: LwM2MPath) -> bool:
    """An object, an instance or a multiple-instance resource (Core 1.1 §7.4: plain text and opaque carry
    one value)."""
    if path.depth < 3:
        return True
    if path.depth > 3 or path.resource_id is None:
        return False
    rdef = resource_def(path.object_id, path.resource_id)
    return rdef is not None and rdef.multiple


def single_value_format(path: LwM2MPath) -> ContentFormat:
    """Plain text, or opaque for an opaque resource."""
    rdef = resource_def(path.object_id, path.resource_id) if path.resource_id is not None else None
    return ContentFormat.OPAQUE if rdef is not None and rdef.type is ResourceType.OPAQUE else ContentFormat.TEXT


@dataclass(frozen=True, slots=True)
class _Learnt:
    worked: ContentFormat | None = None
    refused: frozenset[ContentFormat] = frozenset()


class FormatChooser:
    """Per-device choice of the Accept (reads) and Content-Format (writes) to use, and memory of what worked
    and what the device refused.

    Usage: ``accept = chooser.first(ep, path, device)``; on 4.06 ``chooser.refuse(ep, accept)`` and ``accept =
    chooser.next_after(ep, path, device, accept)`` (None: nothing left) and send once more; on 2.05
    ``chooser.remember(ep, accept, device)``. A read that ends in 4.06 leaves the device's next read starting
    at a format not yet refused, so even a device that refuses several formats converges.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._learnt: OrderedDict[str, _Learnt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._learnt)

    def remembered(self, endpoint: str) -> ContentFormat | None:
        learnt = self._learnt.get(endpoint)
        return learnt.worked if learnt is not None else None

    def multi_order(self, endpoint: str, device: DeviceFormats) -> tuple[ContentFormat, ...]:
        """The multi-value formats for this device, best first: what worked, then ``multi_value_order``
        without what it refused (all of them again if it refused every one)."""
        multi = multi_value_order(device)
        learnt = self._learnt.get(endpoint)
        if learnt is None:
            return multi
        if learnt.worked is not None:
            multi = (learnt.worked, *(fmt for fmt in multi if fmt is not learnt.worked))
        kept = tuple(fmt for fmt in multi if fmt not in learnt.refused or fmt is learnt.worked)
        return kept or multi

    def order(self, endpoint: str, path: LwM2MPath, device: DeviceFormats) -> tuple[ContentFormat, ...]:
        """Every format worth trying for a read of ``path``, best first."""
        multi = self.multi_order(endpoint, device)
        if carries_several_values(path):
            return multi
        return (single_value_format(path), *multi)

    def first(self, endpoint: str, path: LwM2MPath, device: DeviceFormats) -> ContentFormat:
        return self.order(endpoint, path, device)[0]

    def next_after(self, endpoint: str, path: LwM2MPath, device: DeviceFormats,
                   fmt: int) -> ContentFormat | None:
        """The format to retry with after the device refused ``fmt`` with 4.06; None when none is left."""
        order = self.order(endpoint, path, device)
        for index, candidate in enumerate(order):
            if candidate == fmt:
                return order[index + 1] if index + 1 < len(order) else None
        return order[0] if order[0] != fmt else None  # ``fmt`` was dropped from the order by ``refuse``

    def remember(self, endpoint: str, fmt: int, device: DeviceFormats | None = None) -> None:
        """``fmt`` worked for ``endpoint``. Single-value formats say nothing about the device and are not
        kept; nor is a device whose working format is the one it would be asked for first anyway."""
        multi = _multi(fmt)
        if multi is None:
            return
        learnt = self._learnt.get(endpoint, _Learnt())
        learnt = _Learnt(multi, learnt.refused - {multi})
        if device is not None and not learnt.refused and multi is multi_value_order(device)[0]:
            self._learnt.pop(endpoint, None)
            return
        self._keep(endpoint, learnt)

    def refuse(self, endpoint: str, fmt: int) -> None:
        """The device answered 4.06 to ``fmt`` (a single-value format refused says nothing and is not kept)."""
        multi = _multi(fmt)
        if multi is None:
            return
        learnt = self._learnt.get(endpoint, _Learnt())
        self._keep(endpoint, _Learnt(None if learnt.worked is multi else learnt.worked, learnt.refused | {multi}))

    def _keep(self, endpoint: str, learnt: _Learnt) -> None:
        self._learnt[endpoint] = learnt
        self._learnt.move_to_end(endpoint)
        while len(self._learnt) > self.capacity:
            self._learnt.popitem(last=False)

    def forget(self, endpoint: str) -> None:
        self._learnt.pop(endpoint, None)

    def write_format(self, endpoint: str, path: LwM2MPath, device: DeviceFormats) -> ContentFormat:
        """The Content-Format for a Write of ``path``: plain text or opaque for one resource, else the
        multi-value format that worked for the device (or its first choice)."""
        return self.first(endpoint, path, device)
