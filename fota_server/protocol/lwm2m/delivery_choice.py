"""Which way the image travels to one LwM2M device: the campaign's (or device's) ``Delivery`` against what
the device says it can do in Object 5 (OMA-TS-LightweightM2M_Core-V1_1_1 Appendix E.6; reference §4):
/5/0/8 Firmware Update Protocol Support (0 CoAP, 1 CoAPS, 2 HTTP, 3 HTTPS, ...; absent: CoAP only) and
/5/0/9 Firmware Update Delivery Method (0 pull, 1 push, 2 both; absent: both).

``auto`` pulls when it can, over the first offered URI whose scheme /5/0/8 lists, and for a device whose
own session is DTLS prefers CoAPS, then HTTPS, then CoAP, then HTTP; otherwise it pushes. A named method
the device or this server cannot do is refused with a reason (at most 64 characters, beginning with the
method's name) rather than replaced by another.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery import Delivery
from .firmware_messages import FirmwareJob, Method
from .objects import SCHEME_PROTOCOLS, DeliveryMethod, ProtocolSupport, protocol_for_uri
from .paths import LwM2MPath
from .values import Values

__all__ = ["Chosen", "choose_delivery", "device_protocols", "device_delivery"]

_PROTOCOL_NUMBERS = frozenset(int(p) for p in ProtocolSupport)
_DELIVERY_NUMBERS = frozenset(int(d) for d in DeliveryMethod)
_PULL_BY_PROTOCOL = {ProtocolSupport.COAP: Delivery.PULL_COAP, ProtocolSupport.COAPS: Delivery.PULL_COAPS,
                     ProtocolSupport.HTTP: Delivery.PULL_HTTP, ProtocolSupport.HTTPS: Delivery.PULL_HTTPS}
_SECURE_FIRST = (ProtocolSupport.COAPS, ProtocolSupport.HTTPS, ProtocolSupport.COAP, ProtocolSupport.HTTP)
_DELIVERY_PATH = LwM2MPath(5, 0, 9)


@dataclass(frozen=True)
class Chosen:
    method: Method
    uri: str            # the Package URI of a pull, "" for a push
    delivery: Delivery  # the method by name (never ``auto``)


def device_protocols(values: Values) -> frozenset[ProtocolSupport]:
    """/5/0/8 as read: the protocols the device lists; unknown numbers are ignored; none listed: CoAP."""
    listed = {v for p, v in values.items() if (p.object_id, p.resource_id) == (5, 8) and isinstance(v, int)
              and not isinstance(v, bool) and v in _PROTOCOL_NUMBERS}
    return frozenset(ProtocolSupport(v) for v in listed) or frozenset({ProtocolSupport.COAP})


def device_delivery(values: Values) -> DeliveryMethod:
    """/5/0/9 as read; absent or unknown: both."""
    value = values.get(_DELIVERY_PATH)
    if isinstance(value, int) and not isinstance(value, bool) and value in _DELIVERY_NUMBERS:
        return DeliveryMethod(value)
    return DeliveryMethod.BOTH


def _pull(uri: str) -> Chosen:
    protocol = protocol_for_uri(uri)
    return Chosen(Method.PULL, uri, _PULL_BY_PROTOCOL.get(protocol, Delivery.PULL_COAP)
                  if protocol is not None else Delivery.PULL_COAP)


def choose_delivery(job: FirmwareJob, values: Values) -> Chosen | str:
    """The way to deliver ``job`` to a device whose Object 5 reads ``values``, or why there is none."""
    supported, accepts = device_protocols(values), device_delivery(values)
    pulls = accepts in (DeliveryMethod.PULL, DeliveryMethod.BOTH)
    pushes = accepts in (DeliveryMethod.PUSH, DeliveryMethod.BOTH)
    wanted = job.delivery
    if wanted is Delivery.PUSH:
        if not job.allow_push:
            return "push: this server has push turned off"
        return Chosen(Method.PUSH, "", Delivery.PUSH) if pushes else "push: the device only pulls (/5/0/9 = 0)"
    if wanted.scheme:
        protocol = SCHEME_PROTOCOLS[wanted.scheme]
        if not pulls:
            return f"{wanted.value}: the device only takes push (/5/0/9 = 1)"
        if protocol not in supported:
            listed = ",".join(str(int(p)) for p in sorted(supported))
            return f"{wanted.value}: the device lacks it in /5/0/8 ({listed})"[:64]
        uri = next((u for u in job.pull_uris if protocol_for_uri(u) is protocol), "")
        return _pull(uri) if uri else f"{wanted.value}: this server does not serve {wanted.scheme}"
    offered = [u for u in job.pull_uris if protocol_for_uri(u) in supported]
    if job.secure_session:
        offered.sort(key=lambda u: _SECURE_FIRST.index(p) if (p := protocol_for_uri(u)) in _SECURE_FIRST
                     else len(_SECURE_FIRST))
    can_pull, can_push = bool(offered) and pulls, job.allow_push and pushes
    if can_pull and (job.prefer is Method.PULL or not can_push):
        return _pull(offered[0])
    if can_push:
        return Chosen(Method.PUSH, "", Delivery.PUSH)
    return "auto: the device supports no delivery we offer (/5/0/8, /5/0/9)"
