"""Pair tests: the server's DM session machine against the emulator's DM client, in memory, explicit ``now``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from device_emulator.omadm import ClientConfig, DeviceProfile, DmClientSession, Fault, OmadmDevice
from device_emulator.omadm.client import ClientState
from device_emulator.omadm.device import DOWNLOAD_STAGE_FAULTS
from fota_server.protocol.errors import PeerError
from fota_server.protocol.image import build_image
from fota_server.protocol.omadm import events as ev
from fota_server.protocol.omadm.digests import AUTH_BASIC, AUTH_MAC, server_password
from fota_server.protocol.omadm.fumo import result_reason
from fota_server.protocol.omadm.refusal import refusal
from fota_server.protocol.omadm.session import (
    DeviceCredential, DmServerSession, FumoJob, ServerSessionConfig, SessionState,
)
from fota_server.protocol.omadm.syncml import Encoding, decode_message

IMAGE = build_image("Acme", "Tracker-1", "2.0.0", 2048)
URL = "http://127.0.0.1:9/dm/pkg/p1"


@dataclass
class Server:
    """What the HTTP adapter does around the machine: route by SessionID, keep nonces, collect events."""

    credential: DeviceCredential | None = DeviceCredential("dev1", "s3cret-pass")
    srvcred: str | None = None  # the server password, if not the one derived from the device secret
    jobs: list[FumoJob] = field(default_factory=list)
    nonce: bytes = b""
    client_nonce: bytes = b""
    config: ServerSessionConfig = field(default_factory=ServerSessionConfig)
    events: list[object] = field(default_factory=list)
    sessions: dict[str, DmServerSession] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def handle(self, body: bytes, now: float, mac: str | None = None) -> bytes:
        message, encoding = decode_message(body)
        session = self.sessions.get(message.header.session_id)
        if session is None or session.finished:
            password = None if self.credential is None else server_password(self.credential.password)
            password = self.srvcred or password
            session = DmServerSession(self.config, message.header.source, message.header.session_id, encoding,
                                      self.credential, self.nonce, self.jobs, now,
                                      nonce_source=lambda: next(self.counter).to_bytes(16, "big"),
                                      server_password=password, client_nonce=self.client_nonce)
            self.sessions[message.header.session_id] = session
        try:
            session.receive(message, body, now, mac)
        except PeerError as exc:  # what the adapter does: a SyncML refusal with the hint as its status
            assert isinstance(exc.hint, int)
            return refusal(message, encoding, exc.hint, "/dm")
        while (event := session.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, ev.NonceIssued):
                self.nonce = event.nonce
            elif isinstance(event, ev.ClientNonceReceived):
                self.client_nonce = event.nonce
        reply = session.to_send()
        assert reply is not None
        return reply

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def run_session(server: Server, client: DmClientSession, now: float = 100.0) -> int:
    """Exchange messages until the client ends; returns how many messages the client sent."""
    for sent in range(1, 40):
        outgoing = client.to_send()
        assert outgoing is not None
        reply = server.handle(outgoing.body, now + sent, outgoing.mac_header)
        client.receive(reply)
        if client.finished:
            return sent
    raise AssertionError("session did not end")


def device(fault: Fault = Fault.NONE) -> OmadmDevice:
    return OmadmDevice(DeviceProfile("IMEI:356938035643809"), fault)


def config(**kw: object) -> ClientConfig:
    return ClientConfig(username="dev1", password="s3cret-pass", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", list(Encoding))
def test_stale_nonce_is_challenged_then_inventory(encoding: Encoding) -> None:
    server, dev = Server(nonce=b"server-side-nonce"), device()
    client = DmClientSession(config(encoding=encoding), dev, "1", b"stale")
    run_session(server, client)
    assert client.state is ClientState.ENDED
    failed = server.of(ev.AuthenticationFailed)
    assert [(f.status, f.final) for f in failed] == [(401, False)]
    assert server.of(ev.Authenticated)[0].scheme == "syncml:auth-md5"
    info = server.of(ev.DeviceInfoReported)[0].values
    assert info == {"DevId": "IMEI:356938035643809", "Man": "Acme", "Mod": "Tracker-1", "DmV": "1.2", "Lang": "en-US"}
    assert server.of(ev.DeviceDetailReported)[0].values == {"FwV": "1.0.0", "SwV": "1.0", "HwV": "A"}
    assert client.nonce == server.nonce  # the 212 NextNonce, kept for the next session
    assert server.of(ev.ClientNonceReceived)[0].nonce == client.server_nonce
    assert server.of(ev.SessionEnded)[-1].reason == "completed"


def test_second_session_authenticates_at_once_and_replay_fails() -> None:
    server, dev = Server(), device()
    run_session(server, DmClientSession(config(), dev, "1", b""))
    second = DmClientSession(config(), dev, "2", server.nonce)
    first_message = second.to_send()
    assert first_message is not None
    second._pending = first_message
    run_session(server, second)
    assert not server.of(ev.AuthenticationFailed)
    server.events.clear()
    server.handle(first_message.body.replace(b"<SessionID>2<", b"<SessionID>3<"), 500.0)
    refused = server.of(ev.AuthenticationFailed)
    assert refused and refused[0].status == 401 and not server.of(ev.DeviceInfoReported)


def test_wrong_password_is_refused_and_the_session_stops() -> None:
    server, dev = Server(), device()
    client = DmClientSession(ClientConfig("dev1", "wrong-password"), dev, "1", b"")
    run_session(server, client)
    assert client.state is ClientState.FAILED
    assert server.of(ev.AuthenticationFailed)[-1].final
    assert not server.of(ev.DeviceInfoReported)
    assert server.sessions["1"].state is SessionState.ERROR


def test_unknown_device_is_challenged_like_a_wrong_password() -> None:
    server = Server(credential=None)
    client = DmClientSession(config(), device(), "1", b"")
    run_session(server, client)
    assert client.state is ClientState.FAILED and not server.of(ev.Authenticated)


@pytest.mark.parametrize("auth", [AUTH_BASIC, AUTH_MAC])
def test_basic_and_mac_authentication(auth: str) -> None:
    server, dev = Server(nonce=b"n0", config=ServerSessionConfig(allow_basic=True)), device()
    client = DmClientSession(config(auth=auth), dev, "1", b"")
    run_session(server, client)
    assert client.state is ClientState.ENDED
    assert server.of(ev.Authenticated)[0].scheme == auth
    assert server.of(ev.DeviceDetailReported)


def test_basic_is_refused_by_default() -> None:
    server = Server()
    client = DmClientSession(config(auth=AUTH_BASIC), device(), "1", b"")
    run_session(server, client)
    assert client.state is ClientState.FAILED and not server.of(ev.Authenticated)


def full_update(fault: Fault, root: str = "./FUMO", encoding: Encoding = Encoding.XML) -> tuple[Server, OmadmDevice]:
    dev = OmadmDevice(DeviceProfile("IMEI:1", fumo_root=root), fault)
    job = FumoJob("job-7", URL, "fw-2.0.0", "2.0.0", root=root)
    server = Server(jobs=[job])
    run_session(server, DmClientSession(config(encoding=encoding), dev, "1", b""))
    assert server.of(ev.FumoExecAccepted) == [ev.FumoExecAccepted("IMEI:1", "job-7")]
    assert dev.job is not None and dev.job.pkg_url == URL
    image = None if dev.begin_download() else IMAGE
    dev.finish_download(image)
    dev.reboot()
    server.jobs = []
    client = DmClientSession(config(encoding=encoding), dev, "2", server.nonce)
    run_session(server, client)
    assert client.delivered == ["job-7"] and not dev.pending_alerts
    return server, dev


@pytest.mark.parametrize("fault", list(Fault))
def test_each_fault_reaches_the_server_as_its_result_code(fault: Fault) -> None:
    server, dev = full_update(fault)
    result = server.of(ev.FumoResultReported)[0]
    assert (result.correlator, result.result_code) == ("job-7", fault.value)
    assert result.reason == result_reason(fault.value)
    assert result.alert_type == "org.openmobilealliance.dm.firmwareupdate.downloadandupdate"
    state = server.of(ev.FumoStateRead)[0].state
    versions = [d.values["FwV"] for d in server.of(ev.DeviceDetailReported)]
    if fault is Fault.NONE:
        assert state == 100 and versions[-1] == "2.0.0"
        assert (dev.flashes, dev.versions) == (1, ["1.0.0", "2.0.0"])
    else:
        assert state in (20, 80) and versions[-1] == "1.0.0"
        assert (dev.flashes, dev.versions) == (0, ["1.0.0"])
    refused = fault in DOWNLOAD_STAGE_FAULTS and fault is not Fault.NETWORK_FAILURE
    assert dev.downloads == (0 if refused else 1)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_vendor_fumo_root(encoding: Encoding) -> None:
    server, dev = full_update(Fault.NONE, "./FwUpdate/1", encoding)
    assert dev.firmware_version == "2.0.0"
    assert server.of(ev.FumoResultReported)[0].source == "./FwUpdate/1/DownloadAndUpdate"


def test_small_max_msg_size_splits_the_server_package() -> None:
    dev = device()
    jobs = [FumoJob(f"job-{n}", URL + "?" + "x" * 200) for n in range(1)]
    server = Server(jobs=jobs)
    client = DmClientSession(config(max_msg_size=1200), dev, "1", b"")
    sent = run_session(server, client)
    assert sent >= 4
    assert server.of(ev.FumoExecAccepted) and server.of(ev.DeviceDetailReported)
    for session in server.sessions.values():
        assert session.finished


def test_retransmitted_message_gets_the_same_reply_and_out_of_order_is_refused() -> None:
    server, dev = Server(), device()
    client = DmClientSession(config(), dev, "1", b"")
    first = client.to_send()
    assert first is not None
    reply = server.handle(first.body, 1.0)
    assert server.handle(first.body, 2.0) == reply
    refused, _ = decode_message(server.handle(first.body.replace(b"<MsgID>1<", b"<MsgID>5<"), 3.0))
    assert [(c.cmd, c.data) for c in refused.commands][:1] == [("SyncHdr", "400")]  # SyncML, not an exception
    assert refused.header.target == "IMEI:356938035643809"
    assert server.sessions["1"].state is SessionState.ERROR


def test_idle_session_expires() -> None:
    server, dev = Server(), device()
    client = DmClientSession(config(), dev, "1", b"")
    message = client.to_send()
    assert message is not None
    server.handle(message.body, 10.0)
    session = server.sessions["1"]
    deadline = session.next_deadline()
    assert deadline == 10.0 + 300.0
    session.on_timer(deadline - 1)
    assert not session.finished
    session.on_timer(deadline)
    assert session.finished and session.next_event() == ev.SessionEnded("IMEI:356938035643809", "1", "expired")
    assert session.next_deadline() is None


def test_server_initiated_session_then_missing_credentials_get_407() -> None:
    server, dev = Server(), device()
    client = DmClientSession(config(), dev, "1A2B", b"", server_initiated=True)
    run_session(server, client)
    assert server.of(ev.SessionStarted)[0].server_initiated
    abort = (b"<SyncML><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID>"
             b"<MsgID>1</MsgID><Target><LocURI>/dm</LocURI></Target><Source><LocURI>IMEI:356938035643809</LocURI>"
             b"</Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1223</Data></Alert><Final/></SyncBody></SyncML>")
    server.nonce = b""
    server.handle(abort, 5.0)
    assert server.of(ev.AuthenticationFailed)[-1].status == 407


def test_unknown_generic_alert_type_gets_415() -> None:
    server, dev = Server(), device()
    dev.pending_alerts.append(__import__("device_emulator.omadm.device", fromlist=["GenericAlert"]).GenericAlert(
        "c1", "./X", "com.example.other", 200))
    client = DmClientSession(config(), dev, "1", b"")
    run_session(server, client)
    assert not server.of(ev.FumoResultReported) and dev.pending_alerts


def test_server_credential_with_kept_nonces_is_accepted_at_once() -> None:
    server, dev = Server(), device()
    first = DmClientSession(config(), dev, "1", b"")
    run_session(server, first)
    assert first.server_nonce is not None and server.client_nonce == first.server_nonce
    second = DmClientSession(config(), dev, "2", server.nonce, server_nonce=first.server_nonce)
    sent = run_session(server, second)
    assert sent == 2 and second.state is ClientState.ENDED  # Pkg 1, then Pkg 3 with the inventory results


def test_server_credential_on_a_stale_nonce_is_challenged_and_commands_are_sent_again() -> None:
    server, dev = Server(client_nonce=b"lost-after-restart"), device()
    server.jobs = [FumoJob("job-1", URL)]
    client = DmClientSession(config(), dev, "1", b"", server_nonce=b"what-the-device-expects")
    sent = run_session(server, client)
    # Pkg 1; the refused Gets; the Gets again (FwV and FUMO State are read before the Exec); the Exec's status
    assert client.state is ClientState.ENDED and sent == 4
    assert server.of(ev.FumoExecAccepted) == [ev.FumoExecAccepted("IMEI:356938035643809", "job-1")]
    assert server.client_nonce == client.server_nonce


def test_client_refuses_a_server_with_the_wrong_password() -> None:
    server, dev = Server(srvcred="not-the-derived-password"), device()
    server.jobs = [FumoJob("job-1", URL)]
    client = DmClientSession(config(), dev, "1", b"")
    run_session(server, client)
    assert client.state is ClientState.FAILED and dev.job is None
    assert not server.of(ev.FumoExecAccepted)
    assert server.of(ev.SessionEnded)[-1].reason == "server_auth_failed"
