"""``Lwm2mServer.handle_rd``: the one way in for Register, Update and De-register, whichever route
(fast path, lean root, site resource; CoAP or CoAPS) a request took. Every rule holds there."""

from __future__ import annotations

from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings, RdRequest
from fota_server.clock import SystemClock


def _server(known: set[str]) -> tuple[Lwm2mServer, list[tuple[str, str]]]:
    asked: list[tuple[str, str]] = []

    def admit(endpoint: str, address: str, secured: bool) -> bool:
        asked.append((endpoint, address))
        return endpoint in known

    return Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False), admit=admit), asked


def _register(ep: str, identity: str | None = None, address: str = "10.0.0.1:5683") -> RdRequest:
    return RdRequest("POST", None, (f"ep={ep}", "lt=300"), b"</5/0>", 40, True, address, identity)


def test_an_endpoint_that_belongs_to_no_account_is_refused_and_nothing_is_kept() -> None:
    server, asked = _server(known={"urn:imei:1"})
    assert server.handle_rd(_register("stranger")).code == "4.03"
    assert asked == [("stranger", "10.0.0.1:5683")]
    assert len(server.book) == 0 and server.endpoint_for_device("stranger") is None
    answer = server.handle_rd(_register("urn:imei:1"))
    assert answer.code == "2.01" and answer.location[0] == "rd" and len(answer.location[1]) == 16


def test_routing_bad_input_and_identity_rules() -> None:
    server, _ = _server(known={"dev", "psk-dev"})
    reg_id = server.handle_rd(_register("dev")).location[1]
    assert server.handle_rd(RdRequest("GET", None, (), b"", None, True, "a:1")).code == "4.05"
    assert server.handle_rd(RdRequest("PUT", reg_id, (), b"", None, True, "a:1")).code == "4.05"
    assert server.handle_rd(RdRequest("POST", "x" * 40, (), b"", None, True, "a:1")).code == "4.04"
    assert server.handle_rd(RdRequest("POST", "0" * 16, (), b"", None, True, "a:1")).code == "4.04"
    assert server.handle_rd(RdRequest("POST", None, ("lt=1",), b"", None, True, "a:1")).code == "4.00"
    assert server.handle_rd(RdRequest("POST", None, ("ep=dev", "lwm2m=9.9"), b"", None, True, "a:1")).code == "4.12"
    assert server.refused["registration request"] == 2
    # a plain-CoAP Update from a new address (NAT rebinding) is accepted
    assert server.handle_rd(RdRequest("POST", reg_id, ("lt=600",), b"", None, True, "10.7.7.7:1")).code == "2.04"
    assert server.book.get(reg_id).address == "10.7.7.7:1"  # type: ignore[union-attr]
    # a registration made over DTLS: only the same PSK identity may update, replace or remove it
    secured = server.handle_rd(_register("psk-dev", identity="psk-dev")).location[1]
    assert server.handle_rd(RdRequest("POST", secured, (), b"", None, True, "a:2")).code == "4.03"
    assert server.handle_rd(RdRequest("DELETE", secured, (), b"", None, True, "a:2", "dev")).code == "4.03"
    assert server.handle_rd(_register("psk-dev")).code == "4.03"
    assert server.handle_rd(RdRequest("POST", secured, (), b"", None, True, "a:3", "psk-dev")).code == "2.04"
    assert server.handle_rd(RdRequest("DELETE", secured, (), b"", None, True, "a:3", "psk-dev")).code == "2.02"
    assert server.handle_rd(RdRequest("DELETE", reg_id, (), b"", None, True, "a:3")).code == "2.02"
    assert len(server.book) == 0
