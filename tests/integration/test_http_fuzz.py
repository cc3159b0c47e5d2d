"""Whatever a device sends, the HTTP FOTA and DDI endpoints answer with a 4xx and keep serving."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fota_server.adapters import ddi_http
from tests.integration.test_http_fixtures import Lab, make_lab

pytestmark = pytest.mark.integration


@pytest.fixture
def ddi_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path, ddi_http.routes)
    yield lab
    lab.server.stop()
    lab.services.db.close()


def _bodies(seed: int, count: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    shapes: list[object] = [None, True, 1.5, -1, "x", [], {}, {"status": []}, {"updateId": None},
                            {"logs": [None]}, {"firmwareVersion": ["1"]}, {"status": {"execution": None}}]
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif kind == 1:
            yield json.dumps(rng.choice(shapes)).encode()
        elif kind == 2:
            yield b"[" * rng.randrange(1, 5000)
        else:
            yield json.dumps({"updateId": rng.randrange(-5, 5), "state": rng.choice(["success", "", 5]),
                              "firmwareVersion": rng.choice(["1", "", 7]), "code": rng.choice([1, "a", None]),
                              "status": {"execution": rng.choice(["closed", "x"]),
                                         "result": rng.choice([{}, None, {"finished": "maybe"}])}}).encode()


def test_random_bodies_never_break_the_endpoints(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    paths = ["/http/v1/devices/d1/checkin", "/http/v1/devices/d1/status", "/http/v1/devices/d1/logs",
             "/acme/controller/v1/d1/deploymentBase/1/feedback", "/acme/controller/v1/d1/cancelAction/1/feedback"]
    with httpx.Client(base_url=ddi_lab.url, timeout=10) as client:
        for i, body in enumerate(_bodies(seed=7, count=150)):
            path = paths[i % len(paths)]
            scheme = "TargetToken" if "controller" in path else "Bearer"
            answer = client.post(path, content=body, headers={"Authorization": f"{scheme} {token}"})
            assert 400 <= answer.status_code < 500 or answer.status_code == 200, (path, body[:80], answer.text)
        put = client.put("/acme/controller/v1/d1/configData", content=b"\x00\xff",
                         headers={"Authorization": f"TargetToken {token}"})
        assert put.status_code == 400
        assert client.post(paths[0], json={"firmwareVersion": "1.0.0"},
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
