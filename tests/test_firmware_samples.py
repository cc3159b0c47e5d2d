from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_samples.generate import MAX_SIZE, generate, parse_size
from fota_server.protocol.image import verify_image


@pytest.mark.parametrize("text, size", [("65536", 65536), ("64KiB", 65536), ("8MiB", MAX_SIZE), ("1 mb", 1000000)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1KiB", "9MiB", "lots", "12 parsecs"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_generate_exact_size_at_both_ends(tmp_path: Path) -> None:
    for size in (64 * 1024, MAX_SIZE):
        out = tmp_path / f"img-{size}.bin"
        entry = generate("Quectel", "BG96", "1.0", "2.0", "LWM2M", size, out)
        data = out.read_bytes()
        assert len(data) == size == entry["size"]
        assert verify_image(data).version == "2.0"
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_generator_command_line(tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    proc = subprocess.run([sys.executable, "-m", "firmware_samples.generate", str(out), "--make", "u-blox",
                           "--model", "SARA-R5", "--from", "A", "--to", "B", "--size", "128KiB"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["size"] == 128 * 1024 == out.stat().st_size
