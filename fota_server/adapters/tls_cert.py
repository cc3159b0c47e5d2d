"""HTTPS certificates: a self-signed server certificate the server generates on first start (cryptography),
or the files the user provides. Returns paths that uvicorn's ``ssl_certfile``/``ssl_keyfile`` take."""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["self_signed_certificate", "load_or_create_certificate", "uvicorn_ssl_options", "UvicornSslOptions"]


class UvicornSslOptions(TypedDict, total=False):
    """The TLS keyword arguments of ``uvicorn.Config`` that the server sets."""

    ssl_certfile: str
    ssl_keyfile: str
    ssl_ca_certs: str
    ssl_cert_reqs: int


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def self_signed_certificate(hosts: list[str], now: datetime, valid_days: int = 825) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``hosts`` (names or IP addresses), ECDSA P-256."""
    if not hosts:
        raise ValueError("a certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fota-server")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=valid_days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def load_or_create_certificate(directory: Path, hosts: list[str], now: datetime | None = None) -> tuple[Path, Path]:
    """``<directory>/https-cert.pem`` and ``https-key.pem``, generated (key mode 0600) if absent."""
    cert_path, key_path = directory / "https-cert.pem", directory / "https-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed_certificate(hosts, now or datetime.now(timezone.utc))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path


def uvicorn_ssl_options(cert_path: Path | str, key_path: Path | str, client_ca: Path | str | None = None
                        ) -> UvicornSslOptions:
    """Keyword arguments for ``uvicorn.Config``; with ``client_ca`` a client certificate is required (mutual TLS)."""
    options: UvicornSslOptions = {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}
    if client_ca is not None:
        options["ssl_ca_certs"] = str(client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options
