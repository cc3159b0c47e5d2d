"""Device PSKs for CoAPS on the SQLite store: provisioning, the listener's lookup, identity -> device."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from fota_server.adapters.dtls import (
    device_for_identity, endpoint_for_remote, provision_psk, psk_lookup_for, revoke_psk,
)
from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.adapters.dtls.core import DtlsServerCore, SessionState
from fota_server.app import build_services
from fota_server.config import Config
from fota_server.devices import NewDevice
from fota_server.errors import InvalidRequest, NotFound
from fota_server.records import Account, Credential
from fota_server.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    services = build_services(Config(db_path=str(tmp_path / "fota.db")))
    services.db.accounts.create_account(Account("lab", services.clock.now(), 10, "x"))
    for device_id in ("dev-1", "dev-2"):
        services.devices.add("lab", NewDevice(device_id, "LWM2M"))
    yield services
    services.db.close()


def test_provisioned_key_is_found_by_identity(services: Services) -> None:
    credential = provision_psk(services, "dev-1", "dev-1-id", "736563726574")
    assert (credential.kind, credential.identity, credential.secret) == ("psk", "dev-1-id", "736563726574")
    lookup = psk_lookup_for(services.db.credentials)
    assert lookup("dev-1-id") == b"secret"
    assert lookup("dev-2-id") is None
    assert device_for_identity(services.db.credentials, "dev-1-id") == "dev-1"
    assert device_for_identity(services.db.credentials, "dev-2-id") is None


def test_reprovisioning_replaces_identity_and_key(services: Services) -> None:
    provision_psk(services, "dev-1", "old-id", "01020304")
    provision_psk(services, "dev-1", "new-id", "0A0B0C0D")
    lookup = psk_lookup_for(services.db.credentials)
    assert lookup("old-id") is None and lookup("new-id") == bytes.fromhex("0a0b0c0d")


def test_unknown_device_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        provision_psk(services, "dev-9", "x", "00")


@pytest.mark.parametrize("identity,key_hex", [("", "00"), ("id", "not hex"), ("id", ""), ("id", "00" * 65)])
def test_malformed_identity_or_key_is_refused(services: Services, identity: str, key_hex: str) -> None:
    with pytest.raises(InvalidRequest):
        provision_psk(services, "dev-1", identity, key_hex)
    assert psk_lookup_for(services.db.credentials)(identity) is None


def test_an_identity_belongs_to_one_device(services: Services) -> None:
    provision_psk(services, "dev-1", "shared-id", "01")
    with pytest.raises(InvalidRequest):
        provision_psk(services, "dev-2", "shared-id", "02")
    assert device_for_identity(services.db.credentials, "shared-id") == "dev-1"


def test_revoked_psk_no_longer_opens_a_session(services: Services) -> None:
    provision_psk(services, "dev-1", "dev-1-id", "00112233")
    assert revoke_psk(services, "dev-1") and not revoke_psk(services, "dev-1")
    assert psk_lookup_for(services.db.credentials)("dev-1-id") is None


def test_a_corrupt_stored_key_counts_as_unknown(services: Services) -> None:
    services.db.credentials.set_credential(Credential("dev-2", "psk", "bad-id", "zz", services.clock.now()))
    assert psk_lookup_for(services.db.credentials)("bad-id") is None


def test_the_store_backed_lookup_drives_a_handshake(services: Services) -> None:
    provision_psk(services, "dev-1", "dev-1-id", b"secretPSK1".hex())
    core = DtlsServerCore(psk_lookup_for(services.db.credentials))
    client = DtlsPskClient("dev-1-id", b"secretPSK1")
    client.start(0.0)
    address = ("192.0.2.1", 5000)
    _, replies = core.accept(address, client.to_send()[0], 0.0)
    client.receive(replies[0], 0.0)
    session, flight = core.accept(address, client.to_send()[0], 0.0)
    assert session is not None
    for datagram in flight:
        client.receive(datagram, 0.0)
    for datagram in client.to_send():
        session.receive(datagram, 0.0)
    assert session.state is SessionState.ESTABLISHED and session.identity == "dev-1-id"
    assert device_for_identity(services.db.credentials, session.identity) == "dev-1"


def test_endpoint_for_remote_needs_an_authenticated_identity(services: Services) -> None:
    from types import SimpleNamespace

    provision_psk(services, "dev-2", "dev-2-id", "01")
    credentials = services.db.credentials
    assert endpoint_for_remote(credentials, SimpleNamespace(psk_identity="dev-2-id")) == "dev-2"
    assert endpoint_for_remote(credentials, SimpleNamespace(hostinfo="192.0.2.1")) is None   # plain CoAP
    assert endpoint_for_remote(credentials, SimpleNamespace(psk_identity="")) is None
    revoke_psk(services, "dev-2")
    assert endpoint_for_remote(credentials, SimpleNamespace(psk_identity="dev-2-id")) is None
