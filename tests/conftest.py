from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.serverproc import ServerProcess

# Timing checks measure the machine, not the code: on a busy CI core they fail properties that hold.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (marked ``slow(seconds)``, a rough figure for ordering only) run first, longest first,
    the others in collection order: xdist hands tests out in this order, so the long ones start at once, one
    per worker, and each worker ends on short tests instead of one running a long test alone at the end."""
    def weight(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.args[0]) if marker.args else 1.0

    items.sort(key=weight, reverse=True)   # stable: equal weights keep collection order


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for the tests: ``.ci/run``'s (``FOTA_TEST_POSTGRES_URL``), else a throwaway
    cluster of this test session; a skip naming what is missing when there is no PostgreSQL to start."""
    import os
    import tempfile

    from tests.pgcluster import ENV_URL, Cluster, bindir

    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    if bindir() is None:
        pytest.skip("no PostgreSQL here: install Debian's postgresql package (.ci/run does) to run this test")
    directory = Path(tempfile.mkdtemp(prefix="fota-pg-"))
    directory.chmod(0o755)   # the cluster runs as the postgres user when the tests run as root
    cluster = Cluster(directory / "cluster").start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
        directory.rmdir()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server for one test, dropped after it."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, query = postgres_server.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
