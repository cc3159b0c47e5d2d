"""The PyPI rauc-hawkbit 0.2.0 DDI client, an independent implementation, against our DDI endpoint on loopback.

Its D-Bus half needs GLib, so the test drives the library's ``DDIClient`` through the same steps as its
``RaucDBUSDDIClient``: poll, identify (configData), parse ``/deploymentBase/(.+)\\?c=(.+)$``, download the
artifact and its .MD5SUM, compare the MD5, send feedback, reject a cancel, parse ``sleep`` with strptime.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
from rauc_hawkbit.ddi.cancel_action import CancelStatusExecution, CancelStatusResult
from rauc_hawkbit.ddi.client import APIError, ConfigStatusExecution, ConfigStatusResult, DDIClient
from rauc_hawkbit.ddi.deployment_base import DeploymentStatusExecution, DeploymentStatusResult

from fota_server.adapters import ddi_http
from fota_server.campaign.drivers import AttemptProgressed, CancelAttempt, UpdateSucceeded
from tests.integration.test_http_fixtures import Lab, make_lab

pytestmark = pytest.mark.integration


@pytest.fixture
def ddi_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path, ddi_http.routes)
    yield lab
    lab.server.stop()
    lab.services.db.close()


async def _run_deployment(lab: Lab, token: str, download_to: Path) -> dict[str, str]:
    async with aiohttp.ClientSession() as session:
        client = DDIClient(session, f"127.0.0.1:{lab.server.port}", False, token, "acme", "d1")
        base = await client()
        datetime.strptime(base["config"]["polling"]["sleep"], "%H:%M:%S")
        assert "configData" in base["_links"]
        await client.configData(ConfigStatusExecution.closed, ConfigStatusResult.success,
                                make="Acme", model="M1")
        base = await client()
        assert "configData" not in base["_links"]
        match = re.search(r"/deploymentBase/(.+)\?c=(.+)$", base["_links"]["deploymentBase"]["href"])
        assert match is not None
        action_id, resource = match.groups()
        deploy = await client.deploymentBase[action_id](resource)
        artifact = deploy["deployment"]["chunks"][0]["artifacts"][0]
        sm_match = re.search(r"/softwaremodules/(.+)/artifacts/(.+)$", artifact["_links"]["download"]["href"])
        assert sm_match is not None
        module, filename = sm_match.groups()
        await client.deploymentBase[action_id].feedback(
            DeploymentStatusExecution.proceeding, DeploymentStatusResult.none, ["Downloading bundle..."])
        checksum = await client.softwaremodules[module].artifacts[filename](str(download_to))
        # the library's own MD5SUM() fetches the artifact path itself; the hawkBit path is <file>.MD5SUM
        await client.softwaremodules[module].artifacts[filename + ".MD5SUM"](str(download_to) + ".MD5SUM")
        await client.deploymentBase[action_id].feedback(
            DeploymentStatusExecution.proceeding, DeploymentStatusResult.none, ["Installing"], cnt=50, of=100)
        await client.deploymentBase[action_id].feedback(
            DeploymentStatusExecution.closed, DeploymentStatusResult.success, ["Software bundle installed"])
        try:
            await client.deploymentBase[action_id].feedback(
                DeploymentStatusExecution.closed, DeploymentStatusResult.success, ["again"])
            closed_status = "accepted"
        except APIError as exc:
            closed_status = str(exc)
        return {"checksum": checksum, "md5": artifact["hashes"]["md5"], "closed": closed_status}


def test_rauc_hawkbit_client_installs_an_update(ddi_lab: Lab, tmp_path: Path) -> None:
    token = ddi_lab.add_device("d1")
    package, image = ddi_lab.add_image(payload=400_000)
    ddi_lab.offer("d1", package)
    result = asyncio.run(_run_deployment(ddi_lab, token, tmp_path / "bundle.raucb"))
    assert result["checksum"] == result["md5"]
    assert (tmp_path / "bundle.raucb").read_bytes() == image
    md5_line = (tmp_path / "bundle.raucb.MD5SUM").read_text()
    assert md5_line.split("  ")[0] == result["md5"]
    assert result["closed"].startswith("410")
    outcomes = ddi_lab.driver.collect(ddi_lab.clock.now())
    assert outcomes[0] == AttemptProgressed("a-d1", "downloading")
    assert outcomes[-1] == UpdateSucceeded("a-d1", "1.1.0")


async def _reject_cancel(lab: Lab, token: str) -> str:
    async with aiohttp.ClientSession() as session:
        client = DDIClient(session, f"127.0.0.1:{lab.server.port}", False, token, "acme", "d1")
        base = await client()
        match = re.search(r"/cancelAction/(.+)$", base["_links"]["cancelAction"]["href"])
        assert match is not None
        stop_info = await client.cancelAction[match.group(1)]()
        stop_id = stop_info["cancelAction"]["stopId"]
        await client.cancelAction[stop_id].feedback(CancelStatusExecution.rejected, CancelStatusResult.success,
                                                    status_details=("Cancelling not supported",))
        return str(stop_id)


def test_rauc_hawkbit_client_rejects_a_cancel_and_the_action_continues(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    offer = ddi_lab.driver.offers.by_attempt("a-d1")
    assert offer is not None
    ddi_lab.driver.offers.transition(offer.offer_id, "offered", "downloading", ddi_lab.clock.now())
    ddi_lab.driver.submit(CancelAttempt("a-d1", "d1", "HTTP"), ddi_lab.clock.now())
    assert asyncio.run(_reject_cancel(ddi_lab, token)) == str(offer.offer_id)
    after = ddi_lab.driver.offers.get_offer(offer.offer_id)
    assert after is not None and after.open and after.state == "downloading"
