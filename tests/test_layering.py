"""The import rules of STYLE.md: the protocol core and the engine do no IO; the emulator uses only the protocol core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"asyncio", "aiocoap", "starlette", "uvicorn", "sqlite3", "sqlite_utils", "socket", "time",
             "httpx", "selectors", "threading", "subprocess"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["fota_server/protocol", "fota_server/campaign"])
def test_core_packages_import_no_io(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if n.split(".")[0] in FORBIDDEN)
        for path in _modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_protocol_package_exists_with_modules() -> None:
    assert len(_modules("fota_server/protocol")) >= 3


def test_emulator_imports_only_the_protocol_core_of_the_server() -> None:
    offenders = {}
    for path in _modules("device_emulator"):
        bad = sorted(n for n in _imports(path)
                     if n.startswith("fota_server") and not n.startswith("fota_server.protocol"))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import time\nfrom asyncio import sleep\nfrom . import sibling\n")
    assert _imports(sample) == {"time", "asyncio"}
