"""``fota-server``: run the server and manage accounts, firmware and keys from the command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .adapters.omadm_access import set_enrolment_secret
from .app import build_services, serve
from .config import Config, ConfigError, load_config
from .demo import DemoOptions, run_demo
from .device_import import import_manifest
from .devices import NewDevice
from .errors import DomainError
from .logs import setup_logging
from .protocol.delivery import DELIVERY_NAMES
from .services import Services
from .sample_data import SAMPLE_ACCOUNT, ensure_sample_data, quickstart_text
from .adapters.cluster import NodeTaken
from .store.health import StorageOpenError, StorageUnavailable

__all__ = ["main"]

log = logging.getLogger("fota_server")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (also FOTA_CONFIG)")
    parser.add_argument("--db", dest="db_path", help="SQLite database path (default ./fota.db), or a postgresql://user@host/dbname URL "
                        "(FOTA_DB_PATH)")
    parser.add_argument("--data-dir", dest="data_dir", help="firmware blobs and signing key (default <db>-data)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fota-server", description="FOTA server: LwM2M, HTTP(S) and OMA-DM "
                                     "firmware updates with a ThingSpace SMS compatible API.")
    parser.add_argument("--version", action="version", version=f"fota-server {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the management API (HTTP) and CoAP")
    _common(run)
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--http-port", dest="http_port", type=int, help="HTTP port (default 8080; 0 picks one)")
    run.add_argument("--coap-port", dest="coap_port", type=int, help="CoAP UDP port (default 5683; 0 picks one)")
    run.add_argument("--coaps-port", dest="coaps_port", type=int, help="CoAPS (DTLS-PSK) port (default 5684; 0 picks one)")
    run.add_argument("--no-coap", dest="coap_enabled", action="store_const", const=False,
                     help="no CoAP or CoAPS listener (and no LwM2M)")
    run.add_argument("--no-coaps", dest="coaps_enabled", action="store_const", const=False, help="no CoAPS listener")
    run.add_argument("--bootstrap-port", dest="bootstrap_port", type=int,
                     help="LwM2M bootstrap server CoAP port (default 5783; 0 picks one)")
    run.add_argument("--bootstrap-coaps-port", dest="bootstrap_coaps_port", type=int,
                     help="LwM2M bootstrap server CoAPS port (default 5784; 0 picks one)")
    run.add_argument("--no-bootstrap", dest="bootstrap_enabled", action="store_const", const=False,
                     help="no LwM2M bootstrap server")
    run.add_argument("--https", dest="https", action="store_const", const=True,
                     help="serve HTTPS (a generated self-signed certificate unless tls_cert_file/tls_key_file are set)")
    run.add_argument("--sample", action="store_true",
                     help="create a sample account, load the sample firmware and enrol unknown devices into it")
    run.add_argument("--enroll", dest="enroll", metavar="ACCOUNT",
                     help="add devices that belong to no account to ACCOUNT on first contact (default: refuse them)")
    run.add_argument("--enroll-max-devices", dest="enroll_max_devices", type=int, metavar="N",
                     help="stop enrolling once the account holds N devices (default 1000)")
    run.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING (default INFO)")
    run.add_argument("--node", dest="node", metavar="NAME",
                     help="this process's name when several processes share one database (default: the only one)")
    run.add_argument("--node-lease-s", dest="node_lease_s", type=int, metavar="S",
                     help="a process unheard for this long is taken as gone (default 10)")
    run.add_argument("--reuse-port", dest="reuse_port", action="store_const", const=True,
                     help="share the HTTP, CoAP and CoAPS ports with other processes (SO_REUSEPORT)")
    run.add_argument("--metrics-port", dest="metrics_port", type=int, metavar="N",
                     help="also serve GET /metrics without credentials on port N (default 0: off)")
    run.add_argument("--metrics-public", dest="metrics_public", action="store_const", const=True,
                     help="GET /metrics on the HTTP port without the management credentials")
    run.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                     help="text (default), or json: one JSON object per line")
    run.add_argument("--access-log", dest="access_log", action="store_const", const=True,
                     help="log a line per HTTP request (uvicorn's access log)")

    demo = sub.add_parser("demo", help="run the server, a fleet of emulated devices and a campaign, then report")
    demo.add_argument("--lwm2m", type=int, default=150, help="LwM2M devices (default 150)")
    demo.add_argument("--http", type=int, default=100, help="HTTP devices (default 100)")
    demo.add_argument("--omadm", type=int, default=50, help="OMA-DM devices (default 50)")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--keep", type=Path, help="keep the database and fleet results in this folder")
    demo.add_argument("--serve", action=argparse.BooleanOptionalAction, default=None,
                      help="after the report, keep the server and the fleet running for the web console until "
                           "Ctrl-C (default: when at a terminal)")
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="show the server's and the fleet's log lines (default: progress and report only; the "
                           "server's log goes to demo.log in the demo's folder)")
    demo.add_argument("--config", help=argparse.SUPPRESS)

    account = sub.add_parser("account", help="manage accounts").add_subparsers(dest="action", required=True)
    create = account.add_parser("create", help="create an account; prints its API client and user credentials")
    _common(create)
    create.add_argument("name")
    create.add_argument("--licenses", type=int, default=100, help="license count of the account (default 100)")
    create.add_argument("--json", action="store_true", help="print the credentials as JSON")
    lst = account.add_parser("list", help="list accounts")
    _common(lst)
    enrol = account.add_parser("omadm-enrol-secret", help="set the OMA-DM enrolment user name and secret of an "
                               "account (used with run --enroll ACCOUNT; stored as digests)")
    _common(enrol)
    enrol.add_argument("name")
    enrol.add_argument("--secret", required=True)
    enrol.add_argument("--user", default="enrol", help="the user name devices send (default enrol)")

    firmware = sub.add_parser("firmware", help="manage the firmware repository").add_subparsers(
        dest="action", required=True)
    add = firmware.add_parser("add", help="store, hash and sign an image")
    _common(add)
    add.add_argument("file", type=Path)
    add.add_argument("--name", required=True)
    add.add_argument("--make", required=True)
    add.add_argument("--model", required=True)
    add.add_argument("--from", dest="version_from", required=True)
    add.add_argument("--to", dest="version_to", required=True)
    add.add_argument("--protocol", required=True, type=str.upper, choices=["LWM2M", "HTTP", "OMADM"])
    add.add_argument("--kind", default="firmware", choices=["firmware", "software", "config"])
    add.add_argument("--account", help="visible to this account only (default: every account)")
    fls = firmware.add_parser("list", help="list packages")
    _common(fls)
    fls.add_argument("--account", default="", help="as seen by this account")
    fls.add_argument("--kind", default="firmware", choices=["firmware", "software", "config"])

    device = sub.add_parser("device", help="manage devices and their credentials").add_subparsers(
        dest="action", required=True)
    dadd = device.add_parser("add", help="add a device to an account")
    _common(dadd)
    dadd.add_argument("device_id", help="device id, e.g. an IMEI or an LwM2M endpoint name")
    dadd.add_argument("--account", required=True)
    dadd.add_argument("--protocol", required=True, type=str.upper, choices=["LWM2M", "HTTP", "OMADM"])
    for flag in ("imei", "mdn", "make", "model", "firmware", "cell"):
        dadd.add_argument(f"--{flag}", default="")
    dadd.add_argument("--license", action="store_true", help="assign a license to it")
    dlist = device.add_parser("list", help="list an account's devices")
    _common(dlist)
    dlist.add_argument("--account", required=True)
    imp = device.add_parser("import", help="add devices and credentials from a device manifest (JSON)")
    _common(imp)
    imp.add_argument("manifest", type=Path)
    imp.add_argument("--account", help="import into this account instead of the manifest's")
    psk = device.add_parser("psk", help="set the DTLS-PSK identity and key (hex) of an LwM2M device")
    _common(psk)
    psk.add_argument("device_id")
    psk.add_argument("--account", required=True)
    psk.add_argument("--identity", required=True)
    psk.add_argument("--key", required=True, help="the pre-shared key as hex")
    tok = device.add_parser("token", help="issue a new HTTP check-in token (printed once)")
    _common(tok)
    tok.add_argument("device_id")
    tok.add_argument("--account", required=True)
    dlv = device.add_parser("delivery", help="how images travel to an LwM2M device, over any campaign's "
                            "deliveryMethod (auto: no override)")
    _common(dlv)
    dlv.add_argument("device_id")
    dlv.add_argument("--account", required=True)
    dlv.add_argument("--method", required=True, choices=list(DELIVERY_NAMES))
    dm = device.add_parser("omadm", help="set the OMA-DM user name and shared secret of a device")
    _common(dm)
    dm.add_argument("device_id")
    dm.add_argument("--account", required=True)
    dm.add_argument("--user", required=True)
    dm.add_argument("--secret", required=True)

    _bootstrap_parser(device)

    keys = sub.add_parser("keys", help="the firmware signing key").add_subparsers(dest="action", required=True)
    pub = keys.add_parser("public", help="print the public key (PEM) devices verify signatures with")
    _common(pub)
    return parser


def _bootstrap_parser(device: Any) -> None:
    boot = device.add_parser("bootstrap", help="how the LwM2M bootstrap server configures a device (flags left "
                             "out keep their value)")
    _common(boot)
    boot.add_argument("device_id")
    boot.add_argument("--account", required=True)
    boot.add_argument("--security", choices=["psk", "nosec"],
                      help="DM server security (default: psk if the device has a DM PSK, else nosec)")
    boot.add_argument("--dm-identity", help="the DM PSK identity written to /0 (also the device's DM PSK)")
    boot.add_argument("--dm-key", help="the DM PSK key as hex")
    boot.add_argument("--bootstrap-identity", help="the PSK identity the device uses on the bootstrap CoAPS port")
    boot.add_argument("--bootstrap-key", help="the bootstrap PSK key as hex")
    boot.add_argument("--lifetime", type=int, help="registration lifetime written to /1/0/1 (default 300)")
    boot.add_argument("--server-uri", help="DM server URI written to /0 (default: this server's coap(s)://)")
    boot.add_argument("--show", action="store_true", help="only print the configuration")
    boot.add_argument("--delete", action="store_true", help="back to the default configuration")


def _bootstrap_command(args: argparse.Namespace, services: Services) -> None:
    from .bootstrap_config import BootstrapChange

    configs = services.bootstrap
    if args.delete:
        configs.delete(args.account, args.device_id)
    elif not args.show:
        configs.set(args.account, args.device_id, BootstrapChange(
            security=args.security, dm_identity=args.dm_identity, dm_key=args.dm_key,
            bootstrap_identity=args.bootstrap_identity, bootstrap_key=args.bootstrap_key,
            lifetime_s=args.lifetime, server_uri=args.server_uri))
    _print_json(configs.view(args.account, args.device_id))


def _config(args: argparse.Namespace) -> Config:
    flags = {k: getattr(args, k, None) for k in
             ("db_path", "data_dir", "host", "http_port", "coap_port", "coap_enabled", "coaps_port", "coaps_enabled",
              "https", "log_level", "enroll", "enroll_max_devices", "bootstrap_port", "bootstrap_coaps_port",
              "bootstrap_enabled", "node", "node_lease_s", "reuse_port", "metrics_port", "metrics_public",
              "log_format", "access_log")}
    return load_config(args.config, flags=flags)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _run(args: argparse.Namespace, config: Config) -> int:
    if args.sample:
        services = build_services(config)
        creds = ensure_sample_data(services)
        services.db.close()
        if not config.enroll:
            config = config.with_overrides({"enroll": SAMPLE_ACCOUNT})
    else:
        creds = None

    def ready(ports: dict[str, int]) -> None:
        # what start-up built (modules, the known devices, the restored registrations) lives as long as the
        # process: the cyclic collector walks it no more (``docs/benchmarks.md``, LwM2M)
        gc.collect()
        gc.freeze()
        print(f"fota-server {__version__} listening on {config.host}: "
              + ", ".join(f"{name} port {port}" for name, port in ports.items()), flush=True)
        if creds is not None:
            print(quickstart_text(creds, config.host, ports["http"]), flush=True)

    asyncio.run(serve(config, on_ready=ready))
    return 0


def _device_command(args: argparse.Namespace, services: Services) -> None:
    registry = services.devices
    if args.action == "add":
        device = registry.add(args.account, NewDevice(
            device_id=args.device_id, protocol=args.protocol, imei=args.imei, mdn=args.mdn, make=args.make,
            model=args.model, firmware_version=args.firmware, serving_cell=args.cell))
        licensed = bool(args.license and services.db.licenses.assign(args.account, [device.device_id],
                                                                       services.clock.now()))
        _print_json({"deviceId": device.device_id, "protocol": device.protocol, "licensed": licensed})
    elif args.action == "import":
        result = import_manifest(args.manifest.read_bytes(), registry, services.db.licenses, services.clock,
                                 args.account)
        _print_json({"account": result.account, "added": result.added, "licensed": result.licensed,
                     "errors": result.errors[:100], "errorCount": len(result.errors)})
    elif args.action == "list":
        _print_json([{"deviceId": d.device_id, "protocol": d.protocol, "make": d.make, "model": d.model,
                      "firmwareVersion": d.firmware_version, "cell": d.serving_cell, "lineStatus": d.line_status,
                      "licensed": services.db.licenses.has_license(d.device_id)}
                     for d in services.db.devices.list_devices(args.account, limit=100_000)])
    elif args.action == "psk":
        cred = registry.set_psk(args.account, args.device_id, args.identity, args.key)
        _print_json({"deviceId": cred.device_id, "identity": cred.identity})
    elif args.action == "token":
        _print_json({"deviceId": args.device_id, "token": registry.new_http_token(args.account, args.device_id)})
    elif args.action == "bootstrap":
        _bootstrap_command(args, services)
    elif args.action == "delivery":
        device = registry.set_delivery(args.account, args.device_id, args.method)
        _print_json({"deviceId": device.device_id, "deliveryMethod": device.delivery_method})
    elif args.action == "omadm":
        cred = registry.set_omadm_secret(args.account, args.device_id, args.user, args.secret)
        _print_json({"deviceId": cred.device_id, "user": cred.identity})


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "run":
        return _run(args, config)
    if args.command == "demo":
        return run_demo(config, DemoOptions(lwm2m=args.lwm2m, http=args.http, omadm=args.omadm,
                                            timeout_s=args.timeout, keep=args.keep, serve=args.serve,
                                            verbose=args.verbose))
    services = build_services(config)
    try:
        if args.command == "account" and args.action == "create":
            creds = services.auth.create_account(args.name, args.licenses)
            if args.json:
                _print_json(creds.__dict__)
            else:
                print(f"account:       {creds.account_name}\nclient id:     {creds.client_id}\n"
                      f"client secret: {creds.client_secret}\nusername:      {creds.username}\n"
                      f"password:      {creds.password}\n(secrets are stored hashed; keep these now)")
        elif args.command == "account" and args.action == "omadm-enrol-secret":
            _print_json(set_enrolment_secret(services, args.name, args.user, args.secret))
        elif args.command == "account":
            _print_json([{"name": a.name, "licenseCount": a.license_count} for a in services.db.accounts.list_accounts()])
        elif args.command == "firmware" and args.action == "add":
            package = services.firmware.add_file(
                args.file, name=args.name, make=args.make, model=args.model, version_from=args.version_from,
                version_to=args.version_to, protocol=args.protocol, kind=args.kind, account_name=args.account)
            _print_json({k: v for k, v in package.__dict__.items() if k != "created_at"})
        elif args.command == "firmware":
            _print_json([{"name": p.name, "make": p.make, "model": p.model, "from": p.version_from,
                          "to": p.version_to, "protocol": p.protocol, "size": p.size, "sha256": p.sha256}
                         for p in services.db.packages.list_packages(args.account, args.kind)])
        elif args.command == "device":
            _device_command(args, services)
        elif args.command == "keys":
            print(services.firmware.public_key_pem(), end="")
    finally:
        services.db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"fota-server: {exc}", file=sys.stderr)
        return 2
    try:
        setup_logging(config.log_level, config.log_format, config.access_log)
    except ValueError as exc:
        print(f"fota-server: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, config)
    except StorageOpenError as exc:  # one line naming the path and why, no traceback
        print(f"fota-server: {exc}", file=sys.stderr)
        return 2
    except NodeTaken as exc:   # another live process holds this process's name on the database
        print(f"fota-server: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"fota-server: cannot write database {config.db_path}: {exc.detail}", file=sys.stderr)
        return 1
    except DomainError as exc:
        print(f"fota-server: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fota-server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
