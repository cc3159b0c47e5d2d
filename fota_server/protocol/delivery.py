"""How a firmware image travels to a device: the ``deliveryMethod`` a campaign (or a device) names.

``auto`` lets the server choose: for LwM2M from the device's Firmware Update Protocol Support (/5/0/8) and
Delivery Method (/5/0/9), preferring the secure transport of the device's own session (Object 5,
OMA-TS-LightweightM2M_Core-V1_1_1 Appendix E.6). The others name one way: a pull over one URI scheme
(the device fetches the Package URI, /5/0/1) or a push (the server writes /5/0/0 block-wise, RFC 7959).

HTTP and OMA-DM devices always pull over the server's one HTTP scheme, so for them only ``auto``,
``pull-http`` and ``pull-https`` make sense.
"""

from __future__ import annotations

import enum

__all__ = ["Delivery", "DELIVERY_NAMES", "PROTOCOL_DELIVERIES", "parse_delivery"]


class Delivery(str, enum.Enum):
    AUTO = "auto"
    PULL_COAP = "pull-coap"
    PULL_COAPS = "pull-coaps"
    PULL_HTTP = "pull-http"
    PULL_HTTPS = "pull-https"
    PUSH = "push"

    @property
    def scheme(self) -> str:
        """The URI scheme of a pull (``coaps`` for ``pull-coaps``); ``""`` for ``auto`` and ``push``."""
        return self.value.removeprefix("pull-") if self.value.startswith("pull-") else ""


DELIVERY_NAMES: tuple[str, ...] = tuple(d.value for d in Delivery)

# Which methods each device protocol can carry out.
PROTOCOL_DELIVERIES: dict[str, frozenset[Delivery]] = {
    "LWM2M": frozenset(Delivery),
    "HTTP": frozenset({Delivery.AUTO, Delivery.PULL_HTTP, Delivery.PULL_HTTPS}),
    "OMADM": frozenset({Delivery.AUTO, Delivery.PULL_HTTP, Delivery.PULL_HTTPS}),
}


def parse_delivery(value: object) -> Delivery | None:
    """The method a wire value names (case-insensitive), or None when it names none."""
    if not isinstance(value, str) or len(value) > 16:
        return None
    try:
        return Delivery(value.strip().lower())
    except ValueError:
        return None
