"""Generate realistic sample firmware images (64 KiB to 8 MiB) with a manifest entry.

    python -m firmware_samples.generate --make Acme --model Sensor-1 --from 1.0.0 --to 1.1.0 \\
        --protocol LWM2M --size 256KiB OUT.bin
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from fota_server.protocol.image import build_image, verify_image

__all__ = ["parse_size", "generate", "main", "MIN_SIZE", "MAX_SIZE"]

MIN_SIZE = 64 * 1024
MAX_SIZE = 8 * 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2, "mb": 1000**2}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 65536, 64KiB, 8MiB)")
    size = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between 64 KiB and 8 MiB, got {size} bytes")
    return size


def generate(make: str, model: str, version_from: str, version_to: str, protocol: str, size: int,
             out: Path) -> dict[str, object]:
    """Write an image of exactly ``size`` bytes for ``version_to``; returns its manifest entry."""
    payload_size = size
    image = build_image(make, model, version_to, payload_size)
    while len(image) != size:  # the header grows by a digit or two with the payload size
        payload_size -= len(image) - size
        image = build_image(make, model, version_to, payload_size)
    verify_image(image)
    out.write_bytes(image)
    return {
        "name": f"{make}-{model}-{version_from}-to-{version_to}".replace(" ", "_"),
        "file": out.name, "make": make, "model": model, "from": version_from, "to": version_to,
        "protocol": protocol, "size": len(image), "sha256": hashlib.sha256(image).hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_samples.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--make", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--from", dest="version_from", required=True)
    parser.add_argument("--to", dest="version_to", required=True)
    parser.add_argument("--protocol", default="LWM2M", choices=["LWM2M", "HTTP", "OMADM"])
    parser.add_argument("--size", default="64KiB")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    entry = generate(args.make, args.model, args.version_from, args.version_to, args.protocol, size, args.out)
    json.dump(entry, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
