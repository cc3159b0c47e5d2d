"""Pair tests: the server's registration book and firmware-update machine against the emulator's client
machine, in memory, with an explicit clock. Every request goes through the real codecs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest

from device_emulator.lwm2m.client import ClientConfig, ClientPhase, LwM2MClient
from device_emulator.lwm2m.faults import FAULT_RESULTS, Fault
from device_emulator.lwm2m.firmware import DeviceFirmware
from device_emulator.lwm2m.messages import (
    DeviceRequest, NotifyObservers, Reboot, SendDeregister, SendRegister, SendUpdate, StartDownload,
)
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.blockwise import Block1Sender, PushStep, block2_slice
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
from fota_server.protocol.lwm2m.firmware import FirmwareUpdate, Phase
from fota_server.protocol.lwm2m.firmware_messages import (
    Command, DeviceNotAnswering, ExecuteResource, FirmwareJob, FirmwareTimeouts, Method, ObserveResource, ReadResource, Reply,
    StateReported,
    UpdateCancelled, UpdateFailed, UpdateSucceeded, WritePackage, WriteResource,
)
from fota_server.protocol.lwm2m.objects import DeliveryMethod, ProtocolSupport, result_reason
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.registration import (
    Expired, RegistrationBook, Registered, parse_register, parse_update,
)

EPOCH = datetime(2026, 3, 1, tzinfo=timezone.utc)
IMAGE = build_image("FOTA Emulator", "EMU-LWM2M", "2.0.0", 20_000)
URI = "coap://server.test/fw/abc"


def at(now: float) -> datetime:
    return EPOCH + timedelta(seconds=now)


class Pair:
    """Moves messages between the two sides; ``run`` jumps the clock from deadline to deadline."""

    def __init__(self, client: LwM2MClient, machine: FirmwareUpdate | None = None, image: bytes = IMAGE,
                 duplicate_blocks: bool = False) -> None:
        self.client = client
        self.book = RegistrationBook(grace=timedelta(seconds=5))
        self.machine = machine
        self.image = image
        self.duplicate_blocks = duplicate_blocks
        self.held: list[Command] = []
        self.registrations = 0
        self.expired: list[str] = []
        self.now = 0.0
        self.address = 1
        self.downloads = 0
        self.sent: list[Command] = []
        # what the network does to a server request: "" delivers it, "request" loses it on the way to the
        # device, "reply" loses the device's answer (the device acted on it)
        self.lose: Callable[[Command], str] = lambda _command: ""

    def pump(self) -> None:
        for _ in range(1000):
            moved = self._client_uplinks() + self._server_commands()
            if not moved:
                return
        raise AssertionError("the pair did not settle")

    def _client_uplinks(self) -> int:
        uplinks = self.client.to_send()
        for up in uplinks:
            if isinstance(up, SendRegister):
                params = parse_register(up.query, up.payload, 40)
                reply = self.book.register(params, f"10.0.0.1:{self.address}", at(self.now))
                self.client.on_register_reply(reply.code, reply.location, self.now)
            elif isinstance(up, SendUpdate):
                update = parse_update(up.query, up.payload, 40 if up.payload else None)
                reply = self.book.update(up.location[1], update, f"10.0.0.1:{self.address}", at(self.now))
                self.client.on_update_reply(reply.code, self.now)
            elif isinstance(up, SendDeregister):
                self.client.on_deregister_reply(self.book.deregister(up.location[1]).code, self.now)
            elif isinstance(up, StartDownload):
                self._download()
            elif isinstance(up, NotifyObservers) and self.machine is not None:
                tree = self.client.values()
                for path in up.paths:
                    self.machine.notify({p: v for p, v in tree.items() if path.is_prefix_of(p)}, self.now)
            elif isinstance(up, Reboot):
                self.address += 1  # a new source port
        while (event := self.book.next_event()) is not None:
            if isinstance(event, Expired):
                self.expired.append(event.registration.endpoint)
            if isinstance(event, Registered):
                self.registrations += 1
                if self.machine is not None and event.replaced is not None:
                    self.machine.device_registered(self.now)
        return len(uplinks)

    def _download(self) -> None:
        self.downloads += 1
        num = 0
        while True:
            start, end, more = block2_slice(len(self.image), num, 6)
            if not self.client.download_data(self.image[start:end], self.now):
                return
            if not more:
                self.client.download_finished(self.now)
                return
            num += 1

    def _server_commands(self) -> int:
        if self.machine is None:
            return 0
        self.held.extend(self.machine.to_send())
        if not self.held or not self.client.reachable(self.now):
            return 0
        commands, self.held = self.held, []
        for command in commands:
            self.sent.append(command)
            fate = self.lose(command)
            if fate == "request":
                continue
            reply = self._execute(command)
            if fate != "reply":
                self.machine.receive(reply, self.now)
        return len(commands)

    def _execute(self, command: Command) -> Reply:
        path = command.path
        if isinstance(command, WritePackage):
            return Reply(command.command_id, self._push())
        if isinstance(command, (ReadResource, ObserveResource)):
            accept = None if path.depth >= 3 else ContentFormat.TLV
            observe = 0 if isinstance(command, ObserveResource) else None
            request = DeviceRequest("GET", tuple(path.segments), accept=accept, observe=observe)
        elif isinstance(command, WriteResource):
            request = DeviceRequest("PUT", tuple(path.segments), payload=command.payload,
                                    content_format=command.content_format)
        else:
            assert isinstance(command, ExecuteResource)
            request = DeviceRequest("POST", tuple(path.segments))
        response = self.client.handle(request, self.now)
        values = {}
        if response.code == "2.05":
            values = decode_values(response.content_format, response.payload, path)
        return Reply(command.command_id, response.code, values)

    def _push(self) -> str:
        sender = Block1Sender(len(self.image), szx=6)
        for _ in range(10_000):
            block = sender.next_block()
            request = DeviceRequest("PUT", ("5", "0", "0"), payload=self.image[block.start:block.end],
                                    content_format=ContentFormat.OPAQUE, block1=block.block, size1=block.size1)
            response = self.client.handle(request, self.now)
            if self.duplicate_blocks:  # a lost ACK: the same block again, byte-identical
                response = self.client.handle(request, self.now)
            step = sender.on_response(response.code, response.block1, response.size1)
            if step is not PushStep.SEND:
                return response.code
        raise AssertionError("push did not end")

    def run(self, until: float) -> None:
        self.pump()
        for _ in range(10_000):
            deadlines = [d for d in (self.client.next_deadline(),
                                     self.machine.next_deadline() if self.machine else None) if d is not None]
            book_deadline = self.book.next_deadline()
            if book_deadline is not None:
                deadlines.append((book_deadline - EPOCH).total_seconds())
            if self.machine is not None and self.machine.finished and not self.held:
                return
            if not deadlines or min(deadlines) > until:
                self.now = until
                return
            self.now = max(self.now, min(deadlines))
            self.client.on_timer(self.now)
            if self.machine is not None:
                self.machine.on_timer(self.now)
            self.book.on_timer(at(self.now))
            self.pump()
        raise AssertionError("run did not end")


def events(machine: FirmwareUpdate) -> list[object]:
    out: list[object] = []
    while (event := machine.next_event()) is not None:
        out.append(event)
    return out


def make_client(*faults: Fault, queue: bool = False, version: str = "1.1",
                protocols: tuple[ProtocolSupport, ...] = (ProtocolSupport.COAP, ProtocolSupport.HTTP),
                delivery: DeliveryMethod = DeliveryMethod.BOTH) -> LwM2MClient:
    firmware = DeviceFirmware(flash_bytes=1 << 20, faults=frozenset(faults), protocols=protocols,
                              delivery=delivery)
    return LwM2MClient(ClientConfig("urn:imei:490154203237518", lifetime_s=60, queue_mode=queue,
                                    queue_awake_s=10, version=version), firmware)


def start(pair: Pair) -> None:
    pair.client.start(pair.now)
    pair.pump()
    assert pair.client.phase is ClientPhase.REGISTERED
    if pair.machine is not None:
        pair.machine.start(pair.now)


def job(method: Method = Method.PULL, uris: tuple[str, ...] = (URI,)) -> FirmwareJob:
    return FirmwareJob("2.0.0", len(IMAGE), uris, prefer=method)


# ---------------------------------------------------------------- registration

def test_register_update_and_expiry() -> None:
    pair = Pair(make_client())
    start(pair)
    reg = pair.book.by_endpoint("urn:imei:490154203237518")
    assert reg is not None and reg.lifetime_s == 60 and reg.objects.has_instance(5)
    pair.run(until=200)
    assert pair.book.get(reg.reg_id) is not None  # Updates kept it alive
    assert pair.book.get(reg.reg_id).updated_at > at(150)  # type: ignore[union-attr]
    pair.client.phase = ClientPhase.STOPPED  # the device dies silently
    pair.client._update_at = None
    pair.run(until=400)
    assert pair.book.get(reg.reg_id) is None
    assert pair.expired == ["urn:imei:490154203237518"]


def test_expiry_event_is_reported() -> None:
    book = RegistrationBook(grace=timedelta(seconds=5))
    params = parse_register(["ep=dev-1", "lt=30"], b"</3/0>", 40)
    reply = book.register(params, "a", at(0))
    assert reply.code == "2.01" and reply.location[0] == "rd"
    assert isinstance(book.next_event(), Registered)
    assert book.next_deadline() == at(35)
    book.on_timer(at(34))
    assert book.next_event() is None
    book.on_timer(at(35))
    event = book.next_event()
    assert isinstance(event, Expired) and event.registration.endpoint == "dev-1"
    assert book.update(reply.location[1], parse_update([], b"", None), "a", at(36)).code == "4.04"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_queue_mode_both_binding_forms(version: str) -> None:
    pair = Pair(make_client(queue=True, version=version))
    start(pair)
    reg = pair.book.by_endpoint("urn:imei:490154203237518")
    assert reg is not None and reg.queue_mode and reg.binding == "U"


# ---------------------------------------------------------------- firmware

@pytest.mark.parametrize("method", [Method.PULL, Method.PUSH])
def test_successful_update_confirmed_by_new_version(method: Method) -> None:
    machine = FirmwareUpdate(job(method), FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(make_client(), machine)
    start(pair)
    pair.run(until=600)
    got = events(machine)
    assert got[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.firmware_version == "2.0.0"
    assert pair.client.reboots == 1 and pair.registrations == 2 and pair.address == 2
    assert (pair.client.firmware.downloads, pair.client.firmware.flashes) == (1, 1)
    assert pair.client.versions == ["1.0.0", "2.0.0"]


def test_push_survives_duplicated_blocks() -> None:
    machine = FirmwareUpdate(job(Method.PUSH), FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(make_client(), machine, duplicate_blocks=True)
    start(pair)
    pair.run(until=600)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")


def test_queue_mode_holds_requests_until_the_device_wakes() -> None:
    machine = FirmwareUpdate(job(Method.PULL), FirmwareTimeouts(poll_interval_s=5, command_s=600))
    pair = Pair(make_client(queue=True), machine)
    pair.client.start(0.0)
    pair.pump()
    pair.now = 20.0  # past the 10 s awake window
    machine.start(pair.now)
    pair.pump()
    assert pair.held and isinstance(pair.held[0], ReadResource)
    pair.run(until=900)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")


_URI_FAULTS = {Fault.INVALID_URI, Fault.UNSUPPORTED_PROTOCOL}
_FAULT_CASES = [(f, m) for f in FAULT_RESULTS for m in (Method.PULL, Method.PUSH)
                if m is Method.PULL or f not in _URI_FAULTS]


@pytest.mark.parametrize(("fault", "method"), _FAULT_CASES)
def test_each_fault_gives_its_update_result(fault: Fault, method: Method) -> None:
    expected = FAULT_RESULTS[fault]
    machine = FirmwareUpdate(job(method), FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(make_client(fault), machine)
    start(pair)
    pair.run(until=2000)
    last = events(machine)[-1]
    assert last == UpdateFailed(result_reason(expected), expected)
    assert pair.client.firmware_version == "1.0.0"
    assert pair.client.firmware.downloads == (0 if fault in _URI_FAULTS else 1)
    assert pair.client.firmware.flashes == 0 and pair.client.versions == ["1.0.0"]


def test_unsupported_scheme_is_never_written() -> None:
    machine = FirmwareUpdate(job(Method.PULL, ("https://server.test/fw/abc",)), FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(make_client(protocols=(ProtocolSupport.COAP,), delivery=DeliveryMethod.PULL), machine)
    start(pair)
    pair.run(until=100)
    last = events(machine)[-1]
    assert isinstance(last, UpdateFailed) and last.update_result is None


def test_device_ignoring_the_uri_times_out() -> None:
    machine = FirmwareUpdate(job(Method.PULL), FirmwareTimeouts(poll_interval_s=5, download_s=60))
    pair = Pair(make_client(Fault.IGNORE_URI), machine)
    start(pair)
    pair.run(until=500)
    last = events(machine)[-1]
    assert isinstance(last, UpdateFailed) and "download not finished" in last.reason


def test_execute_outside_downloaded_is_refused_and_changes_nothing() -> None:
    client = make_client()
    client.start(0)
    response = client.handle(DeviceRequest("POST", ("5", "0", "2")), 1.0)
    assert response.code == "4.05"
    assert (client.firmware.state, client.firmware.result) == (0, 0)


def test_cancel_before_execute() -> None:
    machine = FirmwareUpdate(job(Method.PULL), FirmwareTimeouts(poll_interval_s=5))
    client = make_client(Fault.IGNORE_URI)
    pair = Pair(client, machine)
    start(pair)
    pair.run(until=20)
    assert client.firmware.state == 1
    assert machine.cancel(pair.now)
    pair.pump()
    assert events(machine)[-1] == UpdateCancelled(result_reason(10))
    assert (client.firmware.state, client.firmware.result) == (0, 10)


def test_stale_result_is_reset_before_a_new_attempt() -> None:
    client = make_client()
    client.firmware._set(0, 4)  # type: ignore[arg-type]  # a previous attempt lost its connection
    machine = FirmwareUpdate(job(Method.PULL), FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(client, machine)
    start(pair)
    pair.run(until=600)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")


def test_bad_requests_get_codes_not_exceptions() -> None:
    client = make_client()
    client.start(0)
    for request in [DeviceRequest("GET", ("x",)), DeviceRequest("GET", ("77", "0")),
                    DeviceRequest("PUT", ("5", "0", "1"), payload=b"\xff", content_format=0),
                    DeviceRequest("GET", ("3", "0"), accept=9999), DeviceRequest("DELETE", ("3", "0")),
                    DeviceRequest("GET", ("5", "0", "0")), DeviceRequest("POST", ("5", "0", "3"))]:
        assert client.handle(request, 1.0).code.startswith("4.")


def test_read_formats() -> None:
    client = make_client()
    for accept in (ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_JSON):
        response = client.handle(DeviceRequest("GET", ("3", "0"), accept=accept), 0.0)
        values = decode_values(response.content_format, response.payload, LwM2MPath(3, 0))
        assert values[LwM2MPath(3, 0, 3)] == "1.0.0"
    with pytest.raises(DecodeError):
        decode_values(ContentFormat.TEXT, b"x", LwM2MPath(3, 0))


def test_resumed_attempt_executes_a_package_already_downloaded() -> None:
    client = make_client()
    pair = Pair(client, FirmwareUpdate(job(Method.PUSH), FirmwareTimeouts(poll_interval_s=5)))
    start(pair)
    pair.machine = None  # the server process dies after the download
    pair.run(until=1)
    assert client.firmware.state == 0
    for step in (client.firmware.write_package(None, IMAGE, None),):
        assert step.code == "2.04"
    assert client.firmware.state == 2
    resumed = FirmwareUpdate(FirmwareJob("2.0.0", len(IMAGE), (), Method.PUSH, resume=True),
                             FirmwareTimeouts(poll_interval_s=5))
    pair.machine = resumed
    resumed.start(pair.now)
    pair.run(until=600)
    got = events(resumed)
    assert got[-1] == UpdateSucceeded("2.0.0")
    assert not any(isinstance(e, StateReported) and e.state == 1 for e in got)  # no second download
    assert (client.firmware.downloads, client.firmware.flashes, client.versions) == (1, 1, ["1.0.0", "2.0.0"])


def test_a_lost_reply_is_asked_again_not_failed() -> None:
    machine = FirmwareUpdate(job(Method.PULL), FirmwareTimeouts(poll_interval_s=5, command_s=30))
    pair = Pair(make_client(), machine)
    lost = [True]

    def lose_first(command: Command) -> str:
        if lost and isinstance(command, ReadResource):
            lost.clear()
            return "reply"
        return ""

    pair.lose = lose_first
    start(pair)
    pair.run(until=1000)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.reboots == 1 and pair.downloads == 1


def test_a_device_that_never_answers_is_not_answering_not_failed() -> None:
    timeouts = FirmwareTimeouts(poll_interval_s=5, command_s=30, max_unanswered=3)
    machine = FirmwareUpdate(job(Method.PULL), timeouts)
    pair = Pair(make_client(), machine)
    pair.lose = lambda _command: "request"
    start(pair)
    pair.run(until=1000)
    assert events(machine)[-1] == DeviceNotAnswering("LwM2M: device not reachable (no answer to /5/0)")
    assert len(pair.sent) == 2  # nothing was done to the device yet: a second try is enough to tell


# ---------------------------------------------------------------- exactly once: check before acting

def _updated_client() -> LwM2MClient:
    """A device that has already taken the update (one download, one flash, now on 2.0.0)."""
    client = make_client()
    pair = Pair(client, FirmwareUpdate(job(), FirmwareTimeouts(poll_interval_s=5)))
    start(pair)
    pair.run(until=600)
    assert client.firmware_version == "2.0.0" and client.reboots == 1
    return client


@pytest.mark.parametrize("resume", [True, False])
def test_a_device_already_on_the_target_is_a_success_and_never_sent_the_image(resume: bool) -> None:
    client = _updated_client()
    machine = FirmwareUpdate(FirmwareJob("2.0.0", len(IMAGE), (URI,), resume=resume), FirmwareTimeouts())
    pair = Pair(client, machine)
    machine.start(pair.now)
    pair.run(until=600)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")
    assert [type(c) for c in pair.sent] == [ReadResource, ReadResource]  # /5/0, then /3/0/3: nothing written
    assert client.reboots == 1 and pair.downloads == 0


def test_a_resumed_attempt_follows_a_pull_download_under_way() -> None:
    client = make_client()
    client.start(0.0)
    assert client.firmware.write_uri(URI) == "2.04"  # the old server process wrote the URI, then died
    machine = FirmwareUpdate(FirmwareJob("2.0.0", len(IMAGE), (URI,), resume=True),
                             FirmwareTimeouts(poll_interval_s=5))
    pair = Pair(client, machine)
    machine.start(pair.now)
    pair.pump()
    assert machine.phase is Phase.WAITING_DOWNLOAD
    pair._download()  # the device's download goes on meanwhile
    pair.run(until=600)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")
    assert not any(isinstance(c, WriteResource) for c in pair.sent)
    assert client.reboots == 1 and pair.downloads == 1


def test_a_resumed_attempt_takes_a_failure_result_as_the_verdict() -> None:
    client = make_client(Fault.INTEGRITY_FAILURE)
    client.start(0.0)
    client.firmware.write_uri(URI)
    client.firmware.download_data(IMAGE)
    client.firmware.download_finished()
    machine = FirmwareUpdate(FirmwareJob("2.0.0", len(IMAGE), (URI,), resume=True), FirmwareTimeouts())
    pair = Pair(client, machine)
    machine.start(pair.now)
    pair.run(until=600)
    assert events(machine)[-1] == UpdateFailed(result_reason(5), 5)
    assert not any(isinstance(c, WriteResource) for c in pair.sent)


def _lose(kind: type, fate: str, times: int = 1, path: LwM2MPath | None = None) -> Callable[[Command], str]:
    left = [times]

    def lose(command: Command) -> str:
        if isinstance(command, kind) and (path is None or command.path == path) and left[0] > 0:
            left[0] -= 1
            return fate
        return ""
    return lose


_VERSION = LwM2MPath(3, 0, 3)
_LOSSES: dict[str, Callable[[], Callable[[Command], str]]] = {
    "execute answer": lambda: _lose(ExecuteResource, "reply"),
    "execute request": lambda: _lose(ExecuteResource, "request"),
    "uri write answer": lambda: _lose(WriteResource, "reply", path=LwM2MPath(5, 0, 1)),
    "uri write request": lambda: _lose(WriteResource, "request", path=LwM2MPath(5, 0, 1)),
    "version read before acting": lambda: _lose(ReadResource, "reply", times=1, path=_VERSION),
    "version reads after the reboot": lambda: _after_execute(_lose(ReadResource, "reply", times=3, path=_VERSION)),
}


def _after_execute(lose: Callable[[Command], str]) -> Callable[[Command], str]:
    executed = [False]

    def after(command: Command) -> str:
        executed[0] = executed[0] or isinstance(command, ExecuteResource)
        return lose(command) if executed[0] else ""
    return after


@pytest.mark.parametrize("loss", sorted(_LOSSES))
def test_a_lost_message_is_followed_up_and_the_device_updates_once(loss: str) -> None:
    machine = FirmwareUpdate(job(), FirmwareTimeouts(poll_interval_s=5, command_s=30))
    pair = Pair(make_client(), machine)
    pair.lose = _LOSSES[loss]()
    start(pair)
    pair.run(until=3000)
    assert events(machine)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.reboots == 1 and pair.downloads == 1


def test_a_device_silent_after_its_reboot_is_not_failed_and_the_next_attempt_does_not_flash_it() -> None:
    client = make_client()
    machine = FirmwareUpdate(job(), FirmwareTimeouts(poll_interval_s=5, command_s=30, max_unanswered=2))
    pair = Pair(client, machine)
    executed = [False]

    def silent_after_execute(command: Command) -> str:
        if isinstance(command, ExecuteResource):
            executed[0] = True
            return "reply"
        return "reply" if executed[0] else ""

    pair.lose = silent_after_execute
    start(pair)
    pair.run(until=3000)
    assert isinstance(events(machine)[-1], DeviceNotAnswering)
    assert client.firmware_version == "2.0.0"
    retry = FirmwareUpdate(job(), FirmwareTimeouts(poll_interval_s=5, command_s=30))
    pair = Pair(client, retry)
    retry.start(pair.now)
    pair.run(until=3000)
    assert events(retry)[-1] == UpdateSucceeded("2.0.0")
    assert client.reboots == 1


@pytest.mark.parametrize("seed", range(60))
def test_under_random_loss_and_restarts_every_device_updates_exactly_once_and_every_outcome_is_true(
        seed: int) -> None:
    """30 % of requests and of answers lost; now and then the server 'restarts' (the machine is dropped
    and a resumed one takes over). Attempts follow each other as the engine's retries would."""
    rng = __import__("random").Random(seed)
    client = make_client()
    timeouts = FirmwareTimeouts(poll_interval_s=5, command_s=20, recheck_s=2)
    pair = Pair(client, None)
    pair.client.start(0.0)
    pair.pump()
    pair.lose = lambda _c: rng.choice(("request", "reply")) if rng.random() < 0.3 else ""
    resume = False
    for _ in range(40):
        machine = FirmwareUpdate(FirmwareJob("2.0.0", len(IMAGE), (URI,), resume=resume), timeouts)
        pair.machine, pair.held = machine, []
        machine.start(pair.now)
        crash = rng.random() < 0.3
        pair.run(until=pair.now + (rng.uniform(1, 60) if crash else 5000))
        if crash and not machine.finished:
            resume = True
            continue
        outcome = events(machine)[-1]
        on_target = client.firmware_version == "2.0.0"
        if isinstance(outcome, UpdateSucceeded):
            assert on_target
            break
        assert isinstance(outcome, DeviceNotAnswering) or not on_target, outcome
        resume = False
    else:
        raise AssertionError("no attempt succeeded")
    assert client.reboots == 1, f"flashed {client.reboots} times"
