"""Server configuration: a frozen dataclass built from defaults, a TOML file, the environment and flags.

Precedence, lowest first: defaults < config file < environment (``FOTA_<FIELD>``) < command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "FOTA_"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class Config:
    db_path: str = "./fota.db"   # a SQLite file, or a postgresql:// URL (TOML: db_path or db_url)
    data_dir: str = ""  # firmware blobs and the signing key; default: "<db_path>-data"
    host: str = "127.0.0.1"
    http_port: int = 8080
    coap_port: int = 5683
    coap_enabled: bool = True
    coaps_port: int = 5684
    coaps_enabled: bool = True
    coaps_idle_timeout_s: int = 600
    token_ttl_s: int = 3600
    session_ttl_s: int = 3600
    max_body_bytes: int = 1_048_576
    max_firmware_bytes: int = 64 * 1_048_576
    log_level: str = "INFO"
    callback_ttl_days: int = 7
    omadm_fumo_root: str = "./FUMO"  # the device's FUMO node, e.g. a vendor path such as ./FwUpdate/1
    omadm_sms_hook_url: str = ""  # also send Package 0 to this SMS gateway hook (HTTP POST, JSON)
    http_checkin_interval_s: int = 300  # what HTTP devices are told: check in again after about this long
    public_host: str = ""  # the address devices reach us at, for firmware URIs; default: host (or 127.0.0.1)
    https: bool = False
    tls_cert_file: str = ""  # with https and no files: a self-signed certificate in <data_dir>/tls
    tls_key_file: str = ""
    tls_client_ca: str = ""  # require client certificates signed by this CA (mutual TLS)
    # device edge
    enroll: str = ""  # add devices that belong to no account to this account on first contact ("" = refuse them)
    enroll_max_devices: int = 1000  # enrolment stops once the enrolment account holds this many devices
    unknown_devices_account: str = ""  # whose web console lists refused devices of no account ("" = enroll's)
    download_token_ttl_s: int = 86400  # how long a firmware download URL handed to a device stays valid
    omadm_allow_basic: bool = False  # accept OMA-DM syncml:auth-basic (off: MD5 digest / HMAC only)
    omadm_session_idle_s: int = 300  # an OMA-DM session with no message for this long ends (its timer)
    allow_private_callbacks: bool = False  # callback URLs may resolve to loopback, link-local or private ranges
    max_http_connections: int = 10000  # concurrent HTTP connections; beyond this, 503
    http_header_timeout_s: int = 10  # a client must send its request head within this long
    dtls_max_handshakes: int = 10000  # half-open DTLS handshakes kept at once
    lwm2m_device_reads_per_s: int = 200  # LwM2M devices read (/3/0, /4/0) after Register per second, at most
    lwm2m_busy_max_age_s: int = 60  # the longest Max-Age a saturated server's 5.03 asks a Register to wait
    lwm2m_queue_awake_s: int = 93  # a queue-mode LwM2M device listens this long after each uplink (MAX_TRANSMIT_WAIT)
    # LwM2M bootstrap server (fota_server/adapters/lwm2m_bootstrap.py), with CoAP on
    bootstrap_enabled: bool = True
    bootstrap_port: int = 5783
    bootstrap_coaps_port: int = 5784  # the bootstrap CoAPS listener runs when CoAPS is on
    # several processes on one database (README "Several processes")
    node: str = ""  # this process's name among those sharing the database ("": the only process)
    node_lease_s: int = 10  # a process unheard for this long is gone: its leadership and devices pass on
    reuse_port: bool = False  # SO_REUSEPORT on the HTTP, CoAP and CoAPS listeners: processes share ports
    # observability (README "Metrics and logs")
    metrics_port: int = 0  # also serve GET /metrics, without credentials, on this port (0 = off)
    metrics_public: bool = False  # GET /metrics on the HTTP port without the management credentials
    log_format: str = "text"  # text, or json: one JSON object per line
    access_log: bool = False  # uvicorn's line per HTTP request

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        if self.db_path.startswith(("postgresql://", "postgres://")):
            return Path("fota-data")   # beside the processes; several processes on one database share it
        return Path(self.db_path + "-data")

    @property
    def advertised_host(self) -> str:
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def with_overrides(self, values: Mapping[str, Any]) -> "Config":
        return dataclasses.replace(self, **_coerce_all(values))


def _coerce(name: str, raw: Any) -> Any:
    field_types = {f.name: f.type for f in fields(Config)}
    if name not in field_types:
        raise ConfigError(f"unknown configuration key {name!r}")
    kind = field_types[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"configuration key {name!r}: expected {kind}, got {raw!r}") from exc


def _coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _coerce(name, raw) for name, raw in values.items() if raw is not None}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Config)}
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                out[name] = value
    return out


def load_config(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration; ``FOTA_CONFIG`` names a TOML file when ``config_file`` is None."""
    env = dict(os.environ if environ is None else environ)
    config = Config()
    path = config_file or env.get("FOTA_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        section = dict(data.get("server", data))
        if "db_url" in section:   # a database server: db_url = "postgresql://user@host/dbname"
            section["db_path"] = section.pop("db_url")
        config = config.with_overrides(section)
    config = config.with_overrides(_from_env(env))
    return config.with_overrides(flags or {})
