"""The command line, run as a user runs it (child processes on a real SQLite file)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from firmware_samples import SAMPLES_DIR, load_manifest
from fota_server.signing import verify_signature
from tests.serverproc import cli_process as cli, create_account

SAMPLE = SAMPLES_DIR / "acme-sensor-1-1.1.0.bin"


def _add(db: Path, file: Path = SAMPLE, name: str = "fw-1", *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("firmware", "add", str(file), "--name", name, "--make", "Acme", "--model", "Sensor-1",
               "--from", "1.0.0", "--to", "1.1.0", "--protocol", "lwm2m", *extra, db=db, check=check)


def test_account_create_prints_client_and_user_credentials(db_path: Path) -> None:
    text = cli("account", "create", "0000123456-00001", db=db_path).stdout
    for label in ("client id:", "client secret:", "username:", "password:"):
        assert label in text
    creds = create_account(db_path, "acc-2", licenses=7)
    assert creds["account_name"] == "acc-2" and len(creds["client_secret"]) >= 32
    listed = json.loads(cli("account", "list", db=db_path).stdout)
    assert {"name": "acc-2", "licenseCount": 7} in listed
    # secrets are stored hashed, never in clear
    assert creds["client_secret"].encode() not in db_path.read_bytes()
    assert creds["password"].encode() not in db_path.read_bytes()


def test_account_create_twice_fails_clearly(db_path: Path) -> None:
    create_account(db_path, "acc-1")
    proc = cli("account", "create", "acc-1", db=db_path, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr


def test_firmware_add_stores_content_addressed_and_signed(db_path: Path) -> None:
    package = json.loads(_add(db_path).stdout)
    data = SAMPLE.read_bytes()
    digest = hashlib.sha256(data)
    assert package["sha256"] == digest.hexdigest() and package["size"] == len(data)
    assert package["protocol"] == "LWM2M"
    blob = Path(str(db_path) + "-data") / "blobs" / "sha256" / digest.hexdigest()[:2] / digest.hexdigest()
    assert blob.read_bytes() == data
    public_pem = cli("keys", "public", db=db_path).stdout
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert verify_signature(public_pem, digest.digest(), package["signature"])
    assert not verify_signature(public_pem, hashlib.sha256(b"other").digest(), package["signature"])
    listed = json.loads(cli("firmware", "list", db=db_path).stdout)
    assert [p["name"] for p in listed] == ["fw-1"]


def test_signing_key_is_generated_once_and_kept(db_path: Path) -> None:
    first = cli("keys", "public", db=db_path).stdout
    assert cli("keys", "public", db=db_path).stdout == first
    key_file = Path(str(db_path) + "-data") / "signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key = load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_firmware_add_refuses_duplicates_bad_protocol_and_empty_files(db_path: Path, tmp_path: Path) -> None:
    _add(db_path)
    dup = _add(db_path, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert "empty" in _add(db_path, empty, "fw-empty", check=False).stderr
    bad = subprocess.run([sys.executable, "-m", "fota_server", "firmware", "add", str(SAMPLE), "--name", "x",
                          "--make", "A", "--model", "B", "--from", "1", "--to", "2", "--protocol", "zigbee",
                          "--db", str(db_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_firmware_over_the_size_limit_is_refused(db_path: Path) -> None:
    proc = cli("firmware", "add", str(SAMPLE), "--name", "big", "--make", "A", "--model", "B", "--from", "1",
               "--to", "2", "--protocol", "HTTP", db=db_path, env={"FOTA_MAX_FIRMWARE_BYTES": "1000"}, check=False)
    assert proc.returncode == 1 and "larger than the limit" in proc.stderr
    assert json.loads(cli("firmware", "list", db=db_path).stdout) == []


def test_emulator_verifies_a_signed_sample_and_rejects_tampering(db_path: Path, tmp_path: Path) -> None:
    package = json.loads(_add(db_path).stdout)
    pub = tmp_path / "pub.pem"
    pub.write_text(cli("keys", "public", db=db_path).stdout)

    def verify(file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "device_emulator", "verify", str(file), "--sha256",
                               package["sha256"], "--signature", package["signature"], "--public-key", str(pub)],
                              capture_output=True, text=True, timeout=60)

    ok = verify(SAMPLE)
    assert ok.returncode == 0 and "1.1.0" in ok.stdout
    tampered = tmp_path / "t.bin"
    data = bytearray(SAMPLE.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    bad = verify(tampered)
    assert bad.returncode == 1 and "update result 5" in bad.stderr


def test_committed_samples_match_their_manifest() -> None:
    entries = load_manifest()
    assert {e["protocol"] for e in entries} == {"LWM2M", "HTTP", "OMADM"}
    for entry in entries:
        data = (SAMPLES_DIR / entry["file"]).read_bytes()
        assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
