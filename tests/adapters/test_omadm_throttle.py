"""The OMA-DM endpoint's plain parts with explicit ``now``: the authentication throttle (per device, per
address) and the session table whose heap hands out only the sessions due."""

from __future__ import annotations

from fota_server.adapters.omadm_sessions import SessionTable
from fota_server.adapters.omadm_throttle import AuthThrottle, ThrottleSettings
from fota_server.protocol.omadm.session import DeviceCredential, DmServerSession, ServerSessionConfig
from fota_server.protocol.omadm.syncml import Command, Encoding, Message, SyncHdr, decode_message, encode_message

SETTINGS = ThrottleSettings(max_failures=3, window_s=60.0, block_s=30.0, max_keys=100)


def test_a_device_is_blocked_after_the_failures_and_released_after_the_block() -> None:
    throttle = AuthThrottle(SETTINGS)
    assert not throttle.failed("dev", "10.0.0.1", 0.0) and not throttle.failed("dev", "10.0.0.2", 1.0)
    assert throttle.retry_after("dev", "10.0.0.9", 1.0) is None
    assert throttle.failed("dev", "10.0.0.3", 2.0)  # the third failure, from a third address
    assert throttle.retry_after("dev", "10.0.0.9", 2.5) == 30  # blocked from anywhere
    assert throttle.retry_after("other", "10.0.0.9", 2.5) is None
    assert throttle.retry_after("dev", "10.0.0.9", 32.0) is None


def test_an_address_is_blocked_whatever_device_it_names() -> None:
    throttle = AuthThrottle(SETTINGS)
    for n in range(3):
        throttle.failed(f"dev-{n}", "10.0.0.1", float(n))
    assert throttle.retry_after("dev-new", "10.0.0.1", 3.0) == 29
    assert throttle.retry_after("dev-new", "10.0.0.2", 3.0) is None


def test_failures_outside_the_window_and_a_success_start_again() -> None:
    throttle = AuthThrottle(SETTINGS)
    throttle.failed("dev", "", 0.0)
    throttle.failed("dev", "", 1.0)
    assert not throttle.failed("dev", "", 70.0)  # a new window
    throttle.failed("dev", "", 71.0)
    throttle.succeeded("dev")
    assert not throttle.failed("dev", "", 72.0)
    assert throttle.retry_after("dev", "", 72.0) is None


def test_the_table_of_counts_is_capped() -> None:
    throttle = AuthThrottle(ThrottleSettings(max_keys=10))
    for n in range(100):
        throttle.failed(f"dev-{n}", "", float(n))
    assert len(throttle._counts) == 10


def session(now: float, idle_s: float = 10.0) -> DmServerSession:
    return DmServerSession(ServerSessionConfig(idle_timeout_s=idle_s), "dev", "1", Encoding.XML,
                           DeviceCredential("u", "p"), b"", now=now)


def test_only_sessions_due_come_out_of_the_table() -> None:
    table = SessionTable()
    sessions = {n: session(float(n)) for n in range(1000)}
    for n, s in sessions.items():
        table.add((f"dev-{n}", "1"), s)
    assert table.next_deadline() == 10.0
    assert table.due(9.0) == []
    assert table.due(12.5) == [sessions[0], sessions[1], sessions[2]]
    table.drop(sessions[3])
    assert table.due(13.0) == [] and len(table) == 999


def test_a_session_whose_deadline_moved_is_put_back() -> None:
    table = SessionTable()
    s = session(0.0)
    table.add(("dev", "1"), s)
    body = encode_message(Message(SyncHdr("1", 1, "/dm", "dev"), (Command("Alert", 1, data="1201"),)), Encoding.XML)
    s.receive(decode_message(body)[0], body, 15.0)  # a message at 15 s: idle until 25 s
    assert table.due(10.0) == [] and table.next_deadline() == 25.0
    assert table.due(25.0) == [s]


def test_a_session_that_authenticates_is_forgiven_its_failures_at_its_address() -> None:
    """Many devices behind one address, each failing once on a stale nonce and then authenticating, never
    block the address; a guesser, who never authenticates, does."""
    throttle = AuthThrottle(SETTINGS)
    for n in range(10):
        throttle.failed(f"dev-{n}", "10.0.0.1", float(n))
        throttle.succeeded(f"dev-{n}", "10.0.0.1", forgiven=1)
    assert throttle.retry_after("dev-new", "10.0.0.1", 10.0) is None
    for n in range(3):
        throttle.failed("victim", "10.0.0.1", 11.0 + n)
    assert throttle.retry_after("dev-new", "10.0.0.1", 14.0) is not None


def test_the_oldest_unauthenticated_session_is_the_one_to_make_room() -> None:
    table = SessionTable()
    first, second = session(0.0), session(1.0)
    table.add(("dev", "1"), first)
    table.add(("dev", "2"), second)
    assert table.oldest_unproven() is first
    table.proven(first)
    assert table.oldest_unproven() is second
    table.drop(second)
    assert table.oldest_unproven() is None and len(table) == 1
