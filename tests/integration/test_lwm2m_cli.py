"""``device-emulator lwm2m`` as a separate process against the LwM2M server on loopback."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from tests.integration.test_lwm2m_interop import Lab, run

pytestmark = pytest.mark.integration


async def _located(stdout: asyncio.StreamReader) -> str:
    """The first location the device prints in a status line."""
    while line := await stdout.readline():
        if line.startswith(b"{") and (location := json.loads(line).get("location", "")):
            return str(location)
    return ""


def test_one_device_command_registers_and_answers_reads(tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        registered = asyncio.Event()
        lab.server.listeners.append(lambda event: registered.set())
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_emulator", "lwm2m", "--server", f"coap://127.0.0.1:{lab.port}",
            "--endpoint", "urn:imei:356938035643809", "--lifetime", "60", "--cell", "262-1-77-4242",
            "--firmware-version", "3.1.0", "--run-s", "20",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(registered.wait(), 15)
            assert process.stdout is not None
            # the Register's answer goes out once its registration is saved: the device says so
            located = await asyncio.wait_for(_located(process.stdout), 15)
            endpoint = "urn:imei:356938035643809"
            assert lab.server.book.by_endpoint(endpoint) is not None
            reply = await lab.server.downlink.request(endpoint, "GET", P(3, 0, 3), timeout_s=10)
            assert (reply.code, reply.payload) == ("2.05", b"3.1.0")
            reply = await lab.server.downlink.request(endpoint, "POST", P(1, 0, 4), timeout_s=10)  # Disable
            assert reply.code == "2.04"
        finally:
            process.terminate()
            await asyncio.wait_for(process.communicate(), 15)
        assert located.startswith("rd/")
    run(tmp_path, scenario)
