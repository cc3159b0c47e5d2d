"""Sample firmware images in the FOTAIMG1 format, a generator for more, and their manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SAMPLES_DIR", "load_manifest"]

SAMPLES_DIR = Path(__file__).parent / "samples"


def load_manifest() -> list[dict[str, Any]]:
    """The committed samples: name, file, make, model, from, to, protocol, size, sha256."""
    data: list[dict[str, Any]] = json.loads((SAMPLES_DIR / "manifest.json").read_text())
    return data
