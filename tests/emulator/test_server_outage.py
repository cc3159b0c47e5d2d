"""The LwM2M client machine rides out a server that goes away and comes back (killed and restarted), on
explicit time: unanswered Updates and Registers are retried with a bounded backoff, a server that forgot
the registration (4.04) gets a full Register, and the device is registered again soon after the server is
back. The server side is the real registration book, paired in memory."""

from __future__ import annotations

from datetime import timedelta

from device_emulator.lwm2m.client import ClientPhase
from device_emulator.lwm2m.messages import SendRegister, SendUpdate
from fota_server.protocol.lwm2m.registration import RegistrationBook

from tests.emulator.test_lwm2m_pairs import Pair, at, make_client, start

EP = "urn:imei:490154203237518"


class OutagePair(Pair):
    """A pair whose server can be down: every Register and Update then gets no answer (``"timeout"``)."""

    def __init__(self) -> None:
        super().__init__(make_client())
        self.down = False
        self.tries: list[tuple[float, str]] = []   # (when, Register or Update) sent while the server was down

    def _client_uplinks(self) -> int:
        if not self.down:
            return super()._client_uplinks()
        uplinks = self.client.to_send()
        for up in uplinks:
            if isinstance(up, SendRegister):
                self.tries.append((self.now, "Register"))
                self.client.on_register_reply("timeout", (), self.now)
            elif isinstance(up, SendUpdate):
                self.tries.append((self.now, "Update"))
                self.client.on_update_reply("timeout", self.now)
        return len(uplinks)

    def restart_server(self, keeps_registrations: bool) -> None:
        self.down = False
        if not keeps_registrations:
            self.book = RegistrationBook(grace=timedelta(seconds=5))


def test_an_unanswered_update_leads_to_a_register_with_bounded_backoff() -> None:
    pair = OutagePair()
    start(pair)
    pair.down = True
    pair.run(until=1000)
    kinds = [kind for _, kind in pair.tries]
    assert kinds[0] == "Update" and set(kinds[1:]) == {"Register"}  # one Update, then only Registers
    gaps = [b - a for (a, _), (b, _) in zip(pair.tries[1:], pair.tries[2:])]
    assert gaps[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(gaps) == 30.0 and gaps[-5:] == [30.0] * 5  # never more than 30 s between tries
    assert pair.client.phase is ClientPhase.REGISTERING and pair.client.unanswered == len(pair.tries)


def test_registered_again_within_the_backoff_after_the_server_is_back() -> None:
    pair = OutagePair()
    start(pair)
    registered = pair.client.registrations
    pair.down = True
    pair.run(until=500)
    pair.restart_server(keeps_registrations=False)
    back_at = pair.now
    pair.run(until=back_at + 31)
    assert pair.client.phase is ClientPhase.REGISTERED
    assert pair.client.registrations == registered + 1
    assert pair.book.by_endpoint(EP) is not None
    pair.run(until=back_at + 200)  # and it keeps the registration alive with Updates, as before
    assert pair.client.phase is ClientPhase.REGISTERED and pair.client.registrations == registered + 1
    assert pair.expired == []


def test_a_server_that_forgot_the_registration_gets_a_register_on_the_next_update() -> None:
    pair = OutagePair()
    start(pair)
    first = pair.book.by_endpoint(EP)
    assert first is not None
    pair.restart_server(keeps_registrations=False)  # back at once, with an empty registration book
    pair.run(until=40)  # the next Update (lifetime 60 s, at half of it) is answered 4.04
    again = pair.book.by_endpoint(EP)
    assert again is not None and again.reg_id != first.reg_id
    assert pair.client.registrations == 2 and pair.client.location == ("rd", again.reg_id)
    assert pair.client.unanswered == 0


def test_a_server_that_kept_the_registration_answers_the_update() -> None:
    pair = OutagePair()
    start(pair)
    reg = pair.book.by_endpoint(EP)
    assert reg is not None
    pair.down = True
    pair.run(until=29)  # down and back before the first Update falls due (at 30 s)
    pair.restart_server(keeps_registrations=True)
    pair.run(until=100)
    assert pair.tries == [] and pair.client.registrations == 1
    assert pair.client.location == ("rd", reg.reg_id)
    kept = pair.book.get(reg.reg_id)
    assert kept is not None and kept.updated_at > at(60)
