"""The OpenAPI 3.1 document and the docs page, served by the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import httpx
import pytest
from openapi_spec_validator import validate

from fota_server.api.sms_surface import ENDPOINTS
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.integration


def test_openapi_document_is_valid_and_complete(db_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(db_path)
    doc = httpx.get(f"{server.base_url}/api/openapi.json").json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    operations = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert {(m, p) for _, m, p, _, _ in ENDPOINTS} <= operations
    assert len([e for e in ENDPOINTS if e[0] in ("v1", "v2", "v3")]) == 71
    campaign = doc["components"]["schemas"]["V3DeviceStatus"]
    assert {"deviceId", "status", "recentAttemptTime", "nextAttemptTime"} <= set(campaign["properties"])
    report = doc["paths"]["/api/fota/v3/reports/{acc}/firmware/campaigns"]["get"]
    assert {"campaignStatus", "lastSeenCampaignId"} <= {p["name"] for p in report["parameters"]}

    page = httpx.get(f"{server.base_url}/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/api/fota/v3/campaigns/firmware/{accountName}" in page.text
    assert "http://" not in page.text.replace(server.base_url, "") and "https://" not in page.text
