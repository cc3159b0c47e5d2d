"""The delivery method, chosen (sans-IO): the firmware-update machine reads /5/0, then follows the job's
``Delivery`` against /5/0/8 (Protocol Support) and /5/0/9 (Delivery Method), OMA-TS-LightweightM2M_Core-V1_1_1
Appendix E.6. ``auto`` prefers the device's own secure transport; a named method the device or the server
cannot do fails the attempt, naming the method, and nothing is written to the device."""

from __future__ import annotations

import pytest

from fota_server.protocol.delivery import Delivery, parse_delivery
from fota_server.protocol.lwm2m.firmware import FirmwareUpdate
from fota_server.protocol.lwm2m.firmware_messages import (
    DeliveryChosen, FirmwareJob, Method, ReadResource, Reply, UpdateFailed, WritePackage, WriteResource,
)
from fota_server.protocol.lwm2m.objects import DeliveryMethod, ProtocolSupport
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from fota_server.protocol.lwm2m.values import Values

COAP, COAPS = "coap://s.test:5683/fw/abc/tok", "coaps://s.test:5684/fw/abc/tok"
HTTP, HTTPS = "http://s.test:8080/fw/sha256/abc?t=tok", "https://s.test:8443/fw/sha256/abc?t=tok"
ALL = (ProtocolSupport.COAP, ProtocolSupport.COAPS, ProtocolSupport.HTTP, ProtocolSupport.HTTPS)


def object5(protocols: tuple[ProtocolSupport, ...] | None = ALL,
            delivery: DeliveryMethod | None = DeliveryMethod.BOTH) -> Values:
    values: Values = {P(5, 0, 3): 0, P(5, 0, 5): 0}
    for index, protocol in enumerate(protocols or ()):
        values[P(5, 0, 8, index)] = int(protocol)
    if delivery is not None:
        values[P(5, 0, 9)] = int(delivery)
    return values


def run_check(job: FirmwareJob, values: Values) -> tuple[list[object], list[object]]:
    """Start the machine, answer its Read of /5/0 with ``values``: (events, commands it sends next)."""
    machine = FirmwareUpdate(job)
    machine.start(0.0)
    (read,) = machine.to_send()
    assert isinstance(read, ReadResource) and read.path == P(5, 0)
    machine.receive(Reply(read.command_id, "2.05", values), 1.0)
    events = []
    while (event := machine.next_event()) is not None:
        events.append(event)
    return events, list(machine.to_send())


def chosen(job: FirmwareJob, values: Values) -> DeliveryChosen:
    events, _ = run_check(job, values)
    found = [e for e in events if isinstance(e, DeliveryChosen)]
    assert found, events
    return found[0]


def failure(job: FirmwareJob, values: Values) -> str:
    events, sent = run_check(job, values)
    assert isinstance(events[-1], UpdateFailed), events
    assert not [c for c in sent if isinstance(c, (WriteResource, WritePackage))]   # nothing written to the device
    return events[-1].reason


def job(delivery: Delivery = Delivery.AUTO, uris: tuple[str, ...] = (COAP, COAPS, HTTP),
        secure: bool = False, **extra: object) -> FirmwareJob:
    return FirmwareJob("2.0.0", 4096, uris, delivery=delivery, secure_session=secure, **extra)  # type: ignore[arg-type]


# ------------------------------------------------------------------ auto

def test_auto_pulls_over_the_plain_session_transport_first() -> None:
    got = chosen(job(), object5())
    assert (got.method, got.uri, got.delivery) == (Method.PULL, COAP, Delivery.PULL_COAP)


def test_auto_prefers_coaps_then_https_for_a_dtls_device() -> None:
    assert chosen(job(secure=True), object5()).delivery is Delivery.PULL_COAPS
    no_coaps = (ProtocolSupport.COAP, ProtocolSupport.HTTP, ProtocolSupport.HTTPS)
    assert chosen(job(uris=(COAP, HTTPS), secure=True), object5(no_coaps)).uri == HTTPS   # https before coap
    assert chosen(job(uris=(COAP, HTTP), secure=True), object5(no_coaps)).uri == COAP     # then coap


def test_auto_follows_protocol_support_and_pushes_when_no_scheme_fits() -> None:
    assert chosen(job(), object5((ProtocolSupport.HTTP,))).uri == HTTP
    assert chosen(job(), object5(None)).uri == COAP          # no /5/0/8: CoAP only
    assert chosen(job(uris=(HTTPS,)), object5((ProtocolSupport.COAP,))).delivery is Delivery.PUSH


def test_auto_follows_the_delivery_method_resource() -> None:
    assert chosen(job(), object5(delivery=DeliveryMethod.PUSH)).method is Method.PUSH
    assert chosen(job(prefer=Method.PUSH), object5(delivery=DeliveryMethod.PULL)).method is Method.PULL
    assert "auto" in failure(job(uris=(HTTPS,)), object5((ProtocolSupport.COAP,), DeliveryMethod.PULL))


# ------------------------------------------------------------------ named methods

@pytest.mark.parametrize("delivery, uri", [(Delivery.PULL_COAP, COAP), (Delivery.PULL_COAPS, COAPS),
                                           (Delivery.PULL_HTTP, HTTP), (Delivery.PULL_HTTPS, HTTPS)])
def test_a_named_pull_uses_its_scheme_whatever_the_session(delivery: Delivery, uri: str) -> None:
    for secure in (False, True):
        got = chosen(job(delivery, (COAP, COAPS, HTTP, HTTPS), secure), object5())
        assert (got.method, got.uri, got.delivery) == (Method.PULL, uri, delivery)


def test_named_push_overrides_a_pull_preference() -> None:
    got = chosen(job(Delivery.PUSH), object5())
    assert (got.method, got.uri, got.delivery) == (Method.PUSH, "", Delivery.PUSH)


def test_a_named_method_the_device_cannot_do_fails_naming_it() -> None:
    assert "pull-coaps" in failure(job(Delivery.PULL_COAPS), object5((ProtocolSupport.COAP, ProtocolSupport.HTTP)))
    assert "pull-http" in failure(job(Delivery.PULL_HTTP), object5(delivery=DeliveryMethod.PUSH))
    assert "push" in failure(job(Delivery.PUSH), object5(delivery=DeliveryMethod.PULL))
    assert "pull-coap" in failure(job(Delivery.PULL_COAP), object5((ProtocolSupport.HTTPS,)))


def test_a_named_method_the_server_cannot_do_fails_naming_it() -> None:
    assert "pull-https" in failure(job(Delivery.PULL_HTTPS, (COAP, HTTP)), object5())
    assert "pull-coaps" in failure(job(Delivery.PULL_COAPS, (COAP, HTTP)), object5())
    assert "push" in failure(job(Delivery.PUSH, allow_push=False), object5())


def test_failure_reasons_fit_the_engine_code_field() -> None:
    """The driver hands a reason without its "LwM2M: " prefix to the engine, which keeps 64 characters."""
    cases = [(job(Delivery.PULL_COAPS), object5((ProtocolSupport.COAP, ProtocolSupport.HTTP, ProtocolSupport.HTTPS))),
             (job(Delivery.PULL_HTTPS, (COAP,)), object5()), (job(Delivery.PUSH), object5(delivery=DeliveryMethod.PULL))]
    for case in cases:
        reason = failure(*case).removeprefix("LwM2M: ")
        assert len(reason) <= 64 and reason.startswith(case[0].delivery.value)


def test_wire_names_parse_case_insensitively_and_nothing_else() -> None:
    assert parse_delivery("PULL-CoAPs") is Delivery.PULL_COAPS and parse_delivery("auto") is Delivery.AUTO
    assert [parse_delivery(v) for v in ("", "pull", "coap", 1, None, "push" * 10)] == [None] * 6
