"""A quiet device is noticed, and the Object 5 details real clients exercise: the server's firmware-update
machine against the emulator's client machine, in memory, on an explicit clock (``Pair`` from the pair
tests), with the registration events the driver feeds it (Register, Update, expiry)."""

from __future__ import annotations

from datetime import timedelta

from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from device_emulator.lwm2m.faults import Fault
from device_emulator.lwm2m.firmware import DeviceFirmware
from fota_server.protocol.delivery import Delivery
from fota_server.protocol.lwm2m.firmware import FirmwareUpdate, Phase
from fota_server.protocol.lwm2m.firmware_messages import (
    DeviceNotAnswering, ExecuteResource, FirmwareJob, FirmwareTimeouts, Method, ObserveResource, UpdateCancelled,
    UpdateFailed, UpdateSucceeded, WritePackage, WriteResource,
)
from fota_server.protocol.lwm2m.linkformat import ObjectList
from fota_server.protocol.lwm2m.objects import Severity
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.registration import Expired, RegistrationBook, RegistrationEvent, Registered, Updated

from tests.emulator.test_lwm2m_pairs import IMAGE, URI, Pair, events, start

P = LwM2MPath
LIFETIME_S = 60
GRACE_S = 5


class _ListeningBook(RegistrationBook):
    """The registration book, telling the machine what the driver tells it (``Lwm2mDriver._tell_sessions``)."""

    def __init__(self, pair: "EventPair") -> None:
        super().__init__(grace=timedelta(seconds=GRACE_S))
        self._pair = pair

    def next_event(self) -> RegistrationEvent | None:
        event = super().next_event()
        machine, now = self._pair.machine, self._pair.now
        if machine is not None and event is not None:
            quiet_s = event.registration.lifetime_s + GRACE_S if self._pair.tell_lifetime else None
            if isinstance(event, Registered) and event.replaced is None:
                machine.device_registered(now, quiet_s)  # Pair itself reports replacing registrations
            elif isinstance(event, Updated) and self._pair.tell_updates:
                machine.device_heard(now, quiet_s)
            elif isinstance(event, Expired) and self._pair.tell_expiry:
                machine.device_lost(now)
        return event


class EventPair(Pair):
    def __init__(self, client: LwM2MClient, machine: FirmwareUpdate, stall_downloads: bool = False) -> None:
        super().__init__(client, machine)
        self.book = _ListeningBook(self)
        self.tell_updates = True
        self.tell_expiry = True
        self.tell_lifetime = True
        self.stall_downloads = stall_downloads   # a pull download starts and makes no progress

    def _download(self) -> None:
        if not self.stall_downloads:
            super()._download()

    def register_again(self) -> None:
        """The client registers again (after a power cycle, or a network change); the machine keeps running."""
        self.client.start(self.now)
        self.pump()

    def sent_of(self, kind: type, path: LwM2MPath) -> int:
        return sum(1 for c in self.sent if isinstance(c, kind) and c.path == path)


def client(*faults: Fault, object_version: str = "1.1", max_defer_s: int = 0,
           severity: int = Severity.MANDATORY) -> LwM2MClient:
    firmware = DeviceFirmware(flash_bytes=1 << 20, faults=frozenset(faults), object_version=object_version,
                              max_defer_s=max_defer_s, severity=severity)
    objects = ObjectList("/", None, {1: "1.1", 5: object_version}, {1: (0,), 3: (0,), 4: (0,), 5: (0,)})
    config = ClientConfig("urn:imei:490154203237518", lifetime_s=LIFETIME_S,
                          version="1.0" if object_version == "1.0" else "1.1", objects=objects)
    return LwM2MClient(config, firmware)


def machine(method: Method = Method.PULL, uris: tuple[str, ...] = (URI,), object_version: str = "1.1",
            delivery: Delivery = Delivery.AUTO, **timeouts: float) -> FirmwareUpdate:
    job = FirmwareJob("2.0.0", len(IMAGE), uris, prefer=method, object_version=object_version, delivery=delivery)
    settings = {"poll_interval_s": 5.0, "quiet_s": float(LIFETIME_S + GRACE_S), **timeouts}
    return FirmwareUpdate(job, FirmwareTimeouts(**settings))  # type: ignore[arg-type]


# ---------------------------------------------------------------- a quiet device is noticed

def test_a_device_that_dies_mid_download_is_not_answering_within_its_lifetime_not_the_download_timeout() -> None:
    m = machine(download_s=3600)
    pair = EventPair(client(Fault.DIE_MID_DOWNLOAD), m)
    pair.tell_expiry = False   # the machine's own liveness deadline alone
    start(pair)
    pair.run(until=LIFETIME_S + GRACE_S + 30)
    assert pair.client.firmware.dead and pair.client.firmware.state == 1
    assert m.finished
    last = events(m)[-1]
    assert isinstance(last, DeviceNotAnswering) and "lifetime" in last.reason


def test_without_a_lifetime_the_same_device_holds_its_slot_until_the_download_timeout() -> None:
    m = machine(download_s=3600, quiet_s=None)  # type: ignore[arg-type]
    pair = EventPair(client(Fault.DIE_MID_DOWNLOAD), m)
    pair.tell_expiry = pair.tell_lifetime = False
    start(pair)
    pair.run(until=LIFETIME_S + GRACE_S + 30)
    assert not m.finished and m.phase is Phase.WAITING_DOWNLOAD


def test_registration_expiry_ends_the_attempt_as_not_answering() -> None:
    m = machine(download_s=3600, quiet_s=None)  # type: ignore[arg-type]
    pair = EventPair(client(Fault.DIE_MID_DOWNLOAD), m)
    pair.tell_lifetime = False   # expiry alone
    start(pair)
    pair.run(until=LIFETIME_S + GRACE_S + 1)
    assert pair.expired == ["urn:imei:490154203237518"]
    last = events(m)[-1]
    assert isinstance(last, DeviceNotAnswering) and "registration expired" in last.reason


def test_registration_updates_keep_a_slow_download_alive() -> None:
    m = machine(download_s=3600)
    pair = EventPair(client(), m, stall_downloads=True)   # alive, updating its registration, downloading slowly
    start(pair)
    pair.run(until=10 * LIFETIME_S)
    assert not m.finished and m.phase is Phase.WAITING_DOWNLOAD
    pair.stall_downloads = False
    pair._download()
    pair.run(until=11 * LIFETIME_S)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")


def test_a_device_rebooted_mid_download_is_observed_again_and_the_attempt_resumes() -> None:
    m = machine()
    pair = EventPair(client(), m, stall_downloads=True)
    start(pair)
    pair.run(until=20)
    assert m.phase is Phase.WAITING_DOWNLOAD and pair.sent_of(ObserveResource, P(5, 0, 3)) == 1
    pair.client = client()              # power cycle: a fresh Object 5 (0/0), no observations, no download
    pair.stall_downloads = False
    pair.register_again()               # Register: replaces its registration
    pair.run(until=200)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.sent_of(ObserveResource, P(5, 0, 3)) == 2 and pair.sent_of(ObserveResource, P(5, 0, 5)) == 2
    assert pair.client.firmware.flashes == 1 and pair.client.firmware_version == "2.0.0"


def test_a_device_registering_again_while_downloading_is_observed_again_and_followed() -> None:
    m = machine()
    pair = EventPair(client(), m, stall_downloads=True)
    start(pair)
    pair.run(until=20)
    pair.client.observed.clear()        # a new registration ends the old Observe relations (Core §6.4.1)
    pair.client.location = ()
    pair.register_again()               # Register again, same endpoint: replaces the registration
    pair.run(until=40)
    assert m.phase is Phase.WAITING_DOWNLOAD
    assert pair.sent_of(ObserveResource, P(5, 0, 3)) == 2 and pair.sent_of(WriteResource, P(5, 0, 1)) == 1
    assert pair.client.observed == {P(5, 0, 3), P(5, 0, 5)}
    pair.stall_downloads = False
    pair._download()                    # the download it kept going finishes: the notification says so
    pair.run(until=200)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.firmware.downloads == 1 and pair.client.firmware.flashes == 1


# ---------------------------------------------------------------- Object 5 details

LONG_URI = "coap://a-rather-long-host-name.lab.example/fw/" + "ab" * 32 + "/" + "t" * 160


def test_a_package_uri_over_255_bytes_with_its_token_is_never_written_auto_pushes() -> None:
    assert len(LONG_URI) > 255
    m = machine(uris=(LONG_URI,))
    pair = EventPair(client(), m)
    start(pair)
    pair.run(until=600)
    assert m.method is Method.PUSH and events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.sent_of(WriteResource, P(5, 0, 1)) == 0 and pair.sent_of(WritePackage, P(5, 0, 0)) == 1


def test_a_named_pull_whose_uri_is_too_long_fails_saying_so() -> None:
    m = machine(uris=(LONG_URI,), delivery=Delivery.PULL_COAP)
    pair = EventPair(client(), m)
    start(pair)
    pair.run(until=600)
    last = events(m)[-1]
    assert isinstance(last, UpdateFailed) and "255" in last.reason and last.reason.startswith("LwM2M: pull-coap")
    assert pair.sent_of(WriteResource, P(5, 0, 1)) == 0 and pair.client.firmware.downloads == 0


def test_update_supported_objects_is_set_before_execute_on_a_v1_0_object() -> None:
    m = machine(object_version="1.0")
    pair = EventPair(client(object_version="1.0"), m)
    start(pair)
    pair.run(until=600)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.firmware.update_supported_objects is True
    written = [i for i, c in enumerate(pair.sent) if isinstance(c, WriteResource) and c.path == P(5, 0, 4)]
    executed = [i for i, c in enumerate(pair.sent) if isinstance(c, ExecuteResource) and c.path == P(5, 0, 2)]
    assert len(written) == 1 and len(executed) == 1 and written[0] < executed[0]


def test_a_v1_1_object_has_no_update_supported_objects_and_is_not_written_one() -> None:
    m = machine()
    pair = EventPair(client(), m)
    start(pair)
    pair.run(until=600)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.sent_of(WriteResource, P(5, 0, 4)) == 0


def test_cancel_mid_download_executes_cancel_on_a_v1_1_object() -> None:
    m = machine()
    pair = EventPair(client(), m, stall_downloads=True)
    start(pair)
    pair.run(until=20)
    assert m.cancel(pair.now)
    pair.pump()
    assert isinstance(events(m)[-1], UpdateCancelled)
    assert pair.sent_of(ExecuteResource, P(5, 0, 10)) == 1 and pair.client.firmware.cancels == 1
    assert (pair.client.firmware.state, pair.client.firmware.result) == (0, 10)


def test_cancel_mid_download_resets_a_v1_0_object_which_has_no_cancel() -> None:
    m = machine(object_version="1.0")
    pair = EventPair(client(object_version="1.0"), m, stall_downloads=True)
    start(pair)
    pair.run(until=20)
    assert pair.client.firmware.state == 1
    assert m.cancel(pair.now)
    pair.pump()
    last = events(m)[-1]
    assert isinstance(last, UpdateCancelled) and "reset" in last.reason
    assert pair.sent_of(ExecuteResource, P(5, 0, 10)) == 0
    assert (pair.client.firmware.state, pair.client.firmware.result) == (0, 0)


def test_a_deferred_update_is_executed_again_after_the_deferral_not_failed() -> None:
    m = machine(defer_retry_s=120, update_s=60)
    pair = EventPair(client(Fault.DEFER, max_defer_s=600), m)
    start(pair)
    pair.run(until=2000)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    firmware = pair.client.firmware
    assert firmware.deferrals >= 2 and firmware.flashes == 1
    assert pair.sent_of(ExecuteResource, P(5, 0, 2)) == firmware.deferrals + 1


def test_a_critical_update_is_not_deferred() -> None:
    m = machine(defer_retry_s=120)
    pair = EventPair(client(Fault.DEFER, max_defer_s=600, severity=Severity.CRITICAL), m)
    start(pair)
    pair.run(until=600)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.firmware.deferrals == 0


def test_deferrals_past_the_maximum_defer_period_fail_with_result_11() -> None:
    m = machine(defer_retry_s=100)
    pair = EventPair(client(Fault.DEFER, max_defer_s=300), m)
    pair.client.firmware.deferred_at = 1e9   # a device that breaks its own /5/0/13 and defers for ever
    start(pair)
    pair.run(until=5000)
    last = events(m)[-1]
    assert isinstance(last, UpdateFailed) and last.update_result == 11 and "300" in last.reason
    assert pair.client.firmware.flashes == 0 and pair.sent_of(ExecuteResource, P(5, 0, 2)) >= 3


def test_state_3_then_a_reboot_without_register_is_caught_by_the_next_update() -> None:
    m = machine(poll_interval_s=100_000, update_s=100_000)   # neither polls nor the update timeout may decide
    pair = EventPair(client(Fault.REBOOT_WITHOUT_REGISTER), m)
    start(pair)
    pair.run(until=50)
    assert events(m)[-1] == UpdateSucceeded("2.0.0")
    assert pair.client.registrations == 1 and pair.client.firmware.flashes == 1


def test_state_3_then_a_reboot_that_never_comes_back_is_not_answering_within_the_lifetime() -> None:
    m = machine(poll_interval_s=100_000, update_s=100_000)
    pair = EventPair(client(Fault.REBOOT_WITHOUT_REGISTER), m)
    start(pair)
    original = pair.client.firmware.execute

    def execute_and_die(now: float = 0.0) -> str:
        code = original(now)
        pair.client.firmware.dead = True   # State 3, then nothing: no Register, no Update, no answer
        return code

    pair.client.firmware.execute = execute_and_die  # type: ignore[method-assign]
    pair.run(until=3 * LIFETIME_S)
    last = [e for e in events(m) if isinstance(e, (DeviceNotAnswering, UpdateFailed, UpdateSucceeded))]
    assert len(last) == 1 and isinstance(last[0], DeviceNotAnswering)
