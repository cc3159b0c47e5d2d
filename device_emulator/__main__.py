"""``device-emulator``: emulated devices for the FOTA server.

The protocol clients (LwM2M, HTTP, OMA-DM) and fleets plug in as subcommands; ``verify`` runs the
check every emulated device makes before it flashes an image.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Sequence


from device_emulator import fleet_command, fleet_trace
from device_emulator.http import command as http_command
from device_emulator.lwm2m import command as lwm2m_command
from device_emulator.omadm import command as omadm_command
from device_emulator.signature import signature_valid
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.image import verify_image

__all__ = ["main", "check_image"]


def check_image(image: bytes, sha256_hex: str | None, signature_b64: str | None, public_key_pem: bytes | None) -> str:
    """What a device checks before flashing; returns the image version or raises DecodeError."""
    header = verify_image(image)
    digest = hashlib.sha256(image).digest()
    if sha256_hex is not None and digest.hex() != sha256_hex.lower():
        raise DecodeError("image SHA-256 differs from the one offered", hint=5)
    if signature_b64 is not None and public_key_pem is not None:
        if not signature_valid(public_key_pem, digest, signature_b64):
            raise DecodeError("firmware signature does not verify", hint=5)
    return header.version


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="device-emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check an image as a device would: format, size, hash, signature")
    verify.add_argument("file", type=Path)
    verify.add_argument("--sha256")
    verify.add_argument("--signature", help="base64 DER ECDSA signature")
    verify.add_argument("--public-key", type=Path, help="PEM file from 'fota-server keys public'")
    http_command.add_parser(sub)
    omadm_command.add_parser(sub)
    lwm2m_command.add_parser(sub)
    fleet_command.add_parser(sub)
    fleet_trace.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "http":
        return http_command.run(args)
    if args.command == "omadm":
        return omadm_command.run(args)
    if args.command == "lwm2m":
        return lwm2m_command.run(args)
    if args.command == "fleet":
        return fleet_command.run(args)
    if args.command == "one":
        return fleet_trace.run(args)
    key = args.public_key.read_bytes() if args.public_key else None
    try:
        version = check_image(args.file.read_bytes(), args.sha256, args.signature, key)
    except DecodeError as exc:
        print(f"REJECTED (update result {exc.hint}): {exc}", file=sys.stderr)
        return 1
    print(f"OK: image of version {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
