"""The sample account and firmware that ``fota-server run --sample`` loads, so the quick start shows something."""

from __future__ import annotations

import json
import os
from typing import Any

from firmware_samples import SAMPLES_DIR, load_manifest

from .errors import InvalidRequest
from .services import Services

__all__ = ["SAMPLE_ACCOUNT", "ensure_sample_data", "quickstart_text"]

SAMPLE_ACCOUNT = "0000123456-00001"


def ensure_sample_data(services: Services) -> dict[str, Any]:
    """Create the sample account (once) and load the committed sample images; returns its credentials.

    The credentials are kept in ``<data dir>/sample-credentials.json`` (mode 0600) so that later
    runs can show them again; the database holds only their hashes.
    """
    creds_path = services.config.resolved_data_dir / "sample-credentials.json"
    if services.db.accounts.get_account(SAMPLE_ACCOUNT) is None:
        creds = services.auth.create_account(SAMPLE_ACCOUNT, license_count=1000).__dict__
        fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh, indent=2)
    else:
        creds = json.loads(creds_path.read_text())
    for entry in load_manifest():
        try:
            services.firmware.add_file(
                SAMPLES_DIR / entry["file"], name=entry["name"], make=entry["make"], model=entry["model"],
                version_from=entry["from"], version_to=entry["to"], protocol=entry["protocol"])
        except InvalidRequest as exc:
            if exc.error_code != "PackageExists":
                raise
    return creds


def quickstart_text(creds: dict[str, Any], host: str, http_port: int) -> str:
    base = f"http://{host}:{http_port}"
    return f"""
Sample account {creds['account_name']} is ready (credentials in the data dir's sample-credentials.json).
Web console: {base}/ui/  (user {creds['username']}, password {creds['password']})
Try it:
  TOKEN=$(curl -s -u {creds['client_id']}:{creds['client_secret']} -d grant_type=client_credentials \\
      {base}/api/ts/v1/oauth2/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  SESSION=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"username": "{creds['username']}", "password": "{creds['password']}"}}' \\
      {base}/api/m2m/v1/session/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessionToken"])')
  curl -s -H "Authorization: Bearer $TOKEN" -H "VZ-M2M-Token: $SESSION" \\
      {base}/api/fota/v3/subscriptions/{creds['account_name']}
Press Ctrl-C to stop.
"""
