"""``fota-server run --https``: a certificate generated on first start (kept in the data dir), the management
API and the device check-in over TLS."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Callable

import httpx
import pytest
from cryptography import x509

from tests.serverproc import ServerProcess, cli, create_account

pytestmark = pytest.mark.integration


def test_https_with_a_generated_certificate(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, "lab")
    cli("device", "add", "356938035643802", "--account", "lab", "--protocol", "HTTP", "--firmware", "2.0.0", db=db)
    token = json.loads(cli("device", "token", "356938035643802", "--account", "lab", db=db).stdout)["token"]
    server = server_factory(db, "--https")
    cert_file = Path(str(db) + "-data") / "tls" / "https-cert.pem"
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]

    base = f"https://127.0.0.1:{server.ports['http']}"
    trust = ssl.create_default_context(cafile=str(cert_file))
    assert httpx.get(f"{base}/health", verify=trust).json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health")  # not trusted without the generated certificate
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.ports['http']}/health")  # plain HTTP is not served
    got = httpx.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                     data={"grant_type": "client_credentials"}, verify=trust)
    assert got.status_code == 200 and got.json()["access_token"]
    checkin = httpx.post(f"{base}/http/v1/devices/356938035643802/checkin", json={"firmwareVersion": "2.0.0"},
                         headers={"Authorization": f"Bearer {token}"}, verify=trust)
    assert checkin.status_code == 200 and checkin.json()["nextCheckInSeconds"] > 0
