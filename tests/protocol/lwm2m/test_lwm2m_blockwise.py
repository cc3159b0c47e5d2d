"""Block-wise planning (RFC 7959): push negotiation, the device's receiver, Block2 slices."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.blockwise import (
    Block1Receiver, Block1Sender, BlockOption, PushStep, ReceiverVerdict, block2_slice, szx_for_size,
)


def test_option_encoding_rfc7959_examples() -> None:
    assert BlockOption(0, True, 6).to_int() == 0x0E
    assert BlockOption.from_int(0x1E) == BlockOption(1, True, 6)
    assert BlockOption(2, False, 2).size == 64 and BlockOption(2, False, 2).offset == 128
    with pytest.raises(DecodeError):
        BlockOption.from_int(0x0F)  # SZX 7
    assert szx_for_size(1024) == 6 and szx_for_size(16) == 0


def test_sender_sends_size1_first_and_follows_a_smaller_szx() -> None:
    sender = Block1Sender(3000, szx=6)
    first = sender.next_block()
    assert first.size1 == 3000 and (first.start, first.end) == (0, 1024) and first.block.more
    assert sender.on_response("2.31", BlockOption(0, True, 5)) is PushStep.SEND
    second = sender.next_block()
    assert second.block == BlockOption(2, True, 5) and (second.start, second.end) == (1024, 1536)
    assert second.size1 is None


def test_sender_restarts_smaller_on_413_with_block1() -> None:
    sender = Block1Sender(5000, szx=6)
    sender.next_block()
    assert sender.on_response("4.13", BlockOption(0, True, 4)) is PushStep.SEND
    restart = sender.next_block()
    assert restart.start == 0 and restart.block.szx == 4


def test_sender_stops_when_size1_is_below_the_image() -> None:
    sender = Block1Sender(5000)
    sender.next_block()
    assert sender.on_response("4.13", None, 4096) is PushStep.TOO_LARGE
    assert sender.device_limit == 4096


def test_sender_restarts_on_408_a_bounded_number_of_times() -> None:
    sender = Block1Sender(2048)
    steps = []
    for _ in range(Block1Sender.MAX_RESTARTS + 1):
        sender.next_block()
        steps.append(sender.on_response("4.08"))
    assert steps[:-1] == [PushStep.SEND] * Block1Sender.MAX_RESTARTS and steps[-1] is PushStep.FAILED


@given(st.binary(min_size=0, max_size=5000), st.integers(0, 6), st.data())
def test_sender_and_receiver_move_any_image(image: bytes, szx: int, data: st.DataObject) -> None:
    device_szx = data.draw(st.integers(0, 6))
    sender = Block1Sender(len(image), szx)
    receiver = Block1Receiver(limit=10_000, max_szx=device_szx)
    for _ in range(2000):
        block = sender.next_block()
        verdict = receiver.receive(block.block, image[block.start:block.end], block.size1)
        ack = receiver.ack_option(block.block)
        step = sender.on_response(verdict.value, ack)
        if step is not PushStep.SEND:
            break
    assert step is PushStep.DONE
    assert receiver.release() == image


def test_receiver_refuses_gaps_and_changed_retransmissions() -> None:
    receiver = Block1Receiver(limit=100)
    assert receiver.receive(BlockOption(0, True, 0), b"a" * 16, 40) is ReceiverVerdict.CONTINUE
    assert receiver.receive(BlockOption(0, True, 0), b"a" * 16, 40) is ReceiverVerdict.CONTINUE  # duplicate
    assert receiver.receive(BlockOption(0, True, 0), b"b" * 16, 40) is ReceiverVerdict.INCOMPLETE
    assert receiver.receive(BlockOption(2, True, 0), b"c" * 16, None) is ReceiverVerdict.INCOMPLETE
    assert len(receiver.data) == 16
    assert Block1Receiver(limit=10).receive(BlockOption(0, True, 0), b"x" * 16, 500) is ReceiverVerdict.TOO_LARGE


def test_block2_slices() -> None:
    assert block2_slice(2500, 0, 6) == (0, 1024, True)
    assert block2_slice(2500, 2, 6) == (2048, 2500, False)
    assert block2_slice(2500, 9, 2) == (576, 640, True)
    with pytest.raises(DecodeError):
        block2_slice(2500, 3, 6)
