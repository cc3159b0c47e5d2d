from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.serverproc import ServerProcess

# Timing checks measure the machine, not the code: on a busy CI core they fail properties that hold.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fota.db"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start real server processes on OS-assigned ports; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(db: Path | None = None, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(db or tmp_path / "fota.db", list(args), env or {}).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
        print(f"--- server output ({server.db}) ---\n" + "".join(server.output))  # shown when a test fails
