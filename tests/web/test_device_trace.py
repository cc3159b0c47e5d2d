"""The protocol trace's ring (adapters/device_trace.py) on a fake clock, and its decoding for the console
(web/trace_view.py): bounded per device and in devices, least recently watched first out, gone after the
linger, nothing kept for what is not traced."""

from __future__ import annotations

from datetime import datetime, timezone

from fota_server.adapters.device_trace import DeviceTrace, TraceLimits
from fota_server.clock import FakeClock
from fota_server.protocol.lwm2m.coap_message import CON, CoapMessage, encode_message
from fota_server.protocol.lwm2m.registration import Registered, Registration
from fota_server.protocol.lwm2m.linkformat import ObjectList
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.tlv import values_to_tlv
from fota_server.web.trace_view import record_json

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
ADDR = ("127.0.0.1", 40000)


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def trace(per_device: int = 3, max_devices: int = 2, linger_s: float = 60.0) -> tuple[DeviceTrace, Monotonic]:
    mono = Monotonic()
    return DeviceTrace(TraceLimits(per_device, max_devices, linger_s), FakeClock(T0), mono), mono


def datagram(mid: int, payload: bytes = b"", fmt: int | None = None, path: tuple[str, ...] = ("rd",)) -> bytes:
    options = [(11, p.encode()) for p in path]
    if fmt is not None:
        options.append((12, fmt.to_bytes(2, "big")))
    return encode_message(CoapMessage(CON, 2, mid, b"\x01", tuple(options), payload))


def test_nothing_is_kept_for_an_address_or_device_not_traced() -> None:
    t, _ = trace()
    t.coap(ADDR, datagram(1), "in")
    t.http("dev-1", "POST", "/http/v1/devices/dev-1/checkin", 200, b"{}", b"{}")
    t.syncml(b"<SyncML>IMEI:1</SyncML>", b"", 200)
    assert t.records("dev-1") == [] and not t.addresses and not t.devices and not t.dm_ids


def test_each_device_keeps_its_last_records_in_order() -> None:
    t, _ = trace(per_device=3)
    t.watch("dev-1", address=ADDR)
    for mid in range(5):
        t.coap(ADDR, datagram(mid), "in")
    kept = t.records("dev-1")
    assert [record_json(r)["mid"] for r in kept] == [2, 3, 4]
    assert [r.seq for r in t.records("dev-1", after=kept[1].seq)] == [kept[2].seq]


def test_the_least_recently_watched_device_makes_room() -> None:
    t, mono = trace(max_devices=2)
    t.watch("a", address=("127.0.0.1", 1))
    t.watch("b", address=("127.0.0.1", 2))
    mono.now += 1
    t.watch("a")                      # a is watched again: b is now the oldest
    t.watch("c", address=("127.0.0.1", 3))
    assert list(t.devices) == ["a", "c"] and ("127.0.0.1", 2) not in t.addresses
    t.coap(("127.0.0.1", 2), datagram(9), "in")
    assert t.records("b") == []


def test_a_device_is_no_longer_traced_after_the_linger() -> None:
    t, mono = trace(linger_s=60)
    t.watch("dev-1", address=ADDR, dm_id="dev-1")
    t.coap(ADDR, datagram(1), "out")
    assert len(t.records("dev-1")) == 1
    mono.now += 61
    t.coap(ADDR, datagram(2), "in")   # the first datagram after the linger drops the device
    assert not t.traced("dev-1") and t.records("dev-1") == [] and not t.addresses and not t.dm_ids


def test_a_traced_device_registering_from_a_new_address_is_followed() -> None:
    t, _ = trace()
    t.watch("490154203237518")
    registration = Registration("r1", "urn:imei:490154203237518", 300, "1.1", "UQ", True, "", ObjectList(),
                                "127.0.0.1:5999", T0, T0)
    t.on_registration(Registered(registration, None))
    assert t.addresses[("127.0.0.1", 5999)] == "490154203237518"
    event = record_json(t.records("490154203237518")[0])
    assert event["kind"] == "lwm2m" and event["event"] == "Registered" and event["lifetime"] == "300"
    t.coap(("127.0.0.1", 5999), datagram(7), "in")
    assert record_json(t.records("490154203237518")[-1])["code"] == "POST"


def test_records_are_decoded_for_the_page() -> None:
    t, _ = trace(per_device=10)
    t.watch("dev-1", address=ADDR, dm_id="IMEI:1")
    tlv = values_to_tlv(LwM2MPath.parse("/5/0"), {LwM2MPath.parse("/5/0/3"): 2, LwM2MPath.parse("/5/0/5"): 1})
    t.coap(ADDR, datagram(3, tlv, 11542, ("5", "0")), "in")
    t.coap(ADDR, datagram(4, b"</3/0>,</5/0>", 40), "in")
    t.coap(ADDR, b"\x40", "in")                                   # not CoAP at all
    t.http("dev-1", "POST", "/http/v1/devices/dev-1/checkin", 200, b'{"firmwareVersion":"1.0"}', b'{"update":null}')
    t.syncml(b"not xml but names IMEI:1", b"", 400)
    coap_tlv, link, broken, http, syncml = (record_json(r) for r in t.records("dev-1"))
    assert coap_tlv["path"] == "/5/0" and coap_tlv["payload"]["values"] == {"/5/0/3": 2, "/5/0/5": 1}
    assert {"name": "Content-Format", "value": "11542 (lwm2m+tlv)"} in coap_tlv["options"]
    assert link["payload"]["text"] == "</3/0>,</5/0>"
    assert "error" in broken
    assert http["status"] == "200" and http["request"] == {"firmwareVersion": "1.0"}
    assert syncml["status"] == "400" and "error" in syncml["request"]


def test_a_traced_device_s_downloads_are_kept_by_its_token_and_others_are_not() -> None:
    from fota_server.adapters.device_trace import token_device_part
    from fota_server.download_tokens import DownloadTokens

    tokens = DownloadTokens(b"k" * 32, lambda: T0, 3600)
    mine, theirs = tokens.issue("dev-1", "ab" * 32), tokens.issue("dev-2", "ab" * 32)
    assert mine.split(".")[1] == token_device_part("dev-1")   # the token's format, as download_tokens writes it
    t, mono = trace(linger_s=10)
    t.download(mine, "GET", "/fw/p1", 206, "bytes=0-1023", "bytes 0-1023/4096")   # not traced yet
    t.watch("dev-1")
    t.download(mine, "GET", "/fw/p1", 206, "bytes=1024-2047", "bytes 1024-2047/4096", "127.0.0.1")
    t.download(theirs, "GET", "/fw/p1", 200, "", "4096")
    t.download("garbled", "GET", "/fw/p1", 401, "", "")
    shown = [record_json(r) for r in t.records("dev-1")]
    assert [(r["method"], r["status"], r["range"], r["sent"]) for r in shown] == [
        ("GET", "206", "bytes=1024-2047", "bytes 1024-2047/4096")]
    assert t.records("dev-2") == []
    mono.now += 11
    t.watch("dev-3")   # dev-1's linger is over: its token no longer maps
    assert token_device_part("dev-1") not in t.downloaders
