"""The import rules of STYLE.md, on real import directions (relative imports resolved): the protocol core and the
engine do no IO; the protocol core imports nothing else of the server; the engine reaches storage only through
the store ports; the emulator uses only the protocol core; API and adapter modules name no concrete store (``app.build_services``
builds every store once and passes it on)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"asyncio", "aiocoap", "starlette", "uvicorn", "sqlite3", "sqlite_utils", "socket", "time",
             "httpx", "selectors", "threading", "subprocess", "psycopg", "psycopg_pool"}
# what the engine may import of the server besides itself and the protocol core: plain values and the ports
CAMPAIGN_MAY_USE = ("fota_server.store.ports", "fota_server.records", "fota_server.clock", "fota_server.errors")
CONCRETE_STORES = ("fota_server.store.sqlite", "fota_server.store.postgres", "fota_server.store.memory",
                   "fota_server.store.campaigns_", "fota_server.store.http_devices_", "fota_server.store.omadm_",
                   "fota_server.store.registrations_", "fota_server.store.bootstrap_", "fota_server.store.http_device_cache",
                   "fota_server.store.cluster_sqlite", "fota_server.store.cluster_memory")


def _module(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """The absolute names of the modules ``path`` imports (``from . import x`` as ``<package>.x``)."""
    module, is_package = _module(path, root)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                source = node.module or ""
            else:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            if node.module:
                names.add(source)
            # a name imported from a package may be one of its modules ("from ..store import sqlite")
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _offenders(package: str, bad: Callable[[str], bool]) -> dict[str, list[str]]:
    found = {str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if bad(n)) for path in _modules(package)}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("package", ["fota_server/protocol", "fota_server/campaign"])
def test_core_packages_import_no_io(package: str) -> None:
    assert _offenders(package, lambda n: n.split(".")[0] in FORBIDDEN) == {}


def test_the_checker_sees_a_forbidden_import_in_a_core_package(tmp_path: Path) -> None:
    package = tmp_path / "fota_server" / "protocol"
    package.mkdir(parents=True)
    (package / "leaky.py").write_text("from .. import services\nimport socket\n")
    assert {n for n in _imports(package / "leaky.py", tmp_path) if n.split(".")[0] in FORBIDDEN} == {"socket"}
    assert "fota_server.services" in _imports(package / "leaky.py", tmp_path)


def test_the_protocol_core_imports_nothing_else_of_the_server() -> None:
    assert _offenders("fota_server/protocol", lambda n: n.startswith("fota_server")
                      and not n.startswith("fota_server.protocol")) == {}


def test_the_engine_reaches_storage_only_through_the_ports() -> None:
    assert _offenders("fota_server/campaign", lambda n: n.startswith("fota_server") and not n.startswith(
        ("fota_server.campaign", "fota_server.protocol", *CAMPAIGN_MAY_USE))) == {}


def test_api_and_adapters_name_no_concrete_store() -> None:
    naming = set(_offenders("fota_server/api", lambda n: n.startswith(CONCRETE_STORES))) | \
        set(_offenders("fota_server/adapters", lambda n: n.startswith(CONCRETE_STORES))) | \
        set(_offenders("fota_server/web", lambda n: n.startswith(CONCRETE_STORES)))
    assert naming == set(), "a module of the API or an adapter builds its own store (app.build_services builds them)"


def test_protocol_package_exists_with_modules() -> None:
    assert len(_modules("fota_server/protocol")) >= 3


def test_emulator_imports_only_the_protocol_core_of_the_server() -> None:
    assert _offenders("device_emulator", lambda n: n.startswith("fota_server")
                      and not n.startswith("fota_server.protocol")) == {}


def test_the_checker_resolves_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "fota_server" / "campaign"
    package.mkdir(parents=True)
    sample = package / "probe.py"
    sample.write_text("import time\nfrom asyncio import sleep\nfrom . import model\nfrom ..store import sqlite\n"
                      "from ..store.ports import DeviceStore\nfrom .model import Campaign\n")
    assert _imports(sample, tmp_path) == {
        "time", "asyncio", "asyncio.sleep", "fota_server.campaign.model", "fota_server.store",
        "fota_server.store.sqlite", "fota_server.store.ports", "fota_server.store.ports.DeviceStore",
        "fota_server.campaign.model.Campaign"}
    (package / "__init__.py").write_text("from .probe import x\nfrom .. import records\n")
    assert _imports(package / "__init__.py", tmp_path) == {"fota_server.campaign.probe", "fota_server.campaign.probe.x",
                                                           "fota_server.records"}
