"""Fuzz every decoder that reads bytes from a device or a file: any input must give a value or the
decoder's documented error (``DecodeError``, or its subclass), never another exception.

    python tools/fuzz.py --inputs 1000000 [--only tlv,syncml_xml] [--engine atheris|mutation] [--seed 1]

The inputs are shared out evenly among the decoders. With ``atheris`` installed (``pip install atheris``)
each decoder runs in its own process under libFuzzer, coverage-guided, its corpus seeded with valid
samples and its dictionary with hostile tokens (non-ASCII digits, ``1e400``, deep nesting, ids above
65535, dates that overflow in UTC). Without it, a mutation fuzzer of our own mutates the same seeds and
random bytes (no coverage feedback). Prints, per decoder, the inputs run and the crashes found; a crash is
any exception other than the documented error. The first crashing inputs are written to ``--crash-dir``.
Exit status 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOSTILE_TOKENS: tuple[bytes, ...] = (
    "²".encode(), "١٢".encode(), "٣".encode(), b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity",
    b"1" * 40, b"9" * 5000, b"65535", b"65536", b"99999", b"4294967296", b"18446744073709551616",
    b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00", b"\\ud800", b"\xff\xfe", b"\xc0\x80",
    b"\xed\xa0\x80", b"[" * 64, b"{\"a\":" * 64, b"\x9f" * 64, b"\x81" * 64, b"<Add>" * 32, b"&#0;",
    b"<!DOCTYPE x [<!ENTITY a \"b\">]>", b"\x00", b"\xff", b"%", b"\"", b"true", b"null", b"-0",
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00", b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", b"\xc2\x49" + b"\xff" * 9,
)


@dataclass(frozen=True)
class Target:
    """One decoder: how to feed it bytes, valid samples to start from, and the errors it documents."""

    name: str
    run: Callable[[bytes], object]
    seeds: tuple[bytes, ...]
    allowed: tuple[type[BaseException], ...]
    doc: str = ""


@dataclass
class Tally:
    inputs: int = 0
    crashes: int = 0
    signatures: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[str, bytes]] = field(default_factory=list)

    def record(self, data: bytes, exc: BaseException) -> None:
        self.crashes += 1
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
        signature = f"{type(exc).__name__} at {where}"
        if signature not in self.signatures and len(self.samples) < 20:
            self.samples.append((signature, data))
        self.signatures[signature] = self.signatures.get(signature, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "crashes": self.crashes, "signatures": self.signatures,
                "samples": [[s, base64.b64encode(d).decode()] for s, d in self.samples]}


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _split(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


def build_targets() -> dict[str, Target]:  # noqa: PLR0915 - one table, read top to bottom
    """Import the decoders (late, so that atheris can instrument them) and describe each one."""
    from fota_server.clock import FakeClock
    from fota_server.device_import import import_manifest
    from fota_server.devices import DeviceRegistry
    from fota_server.errors import InvalidRequest
    from fota_server.records import Account
    from fota_server.store import MemoryDatabase
    from fota_server.protocol import image
    from fota_server.protocol.errors import DecodeError
    from fota_server.protocol.http_fota import ddi, manifest, ranges
    from fota_server.protocol.lwm2m import coap_message as coap
    from fota_server.protocol.lwm2m import linkformat, registration, senml, tlv
    from fota_server.protocol.lwm2m.blockwise import BlockOption
    from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
    from fota_server.protocol.lwm2m.lwm2m_json import decode_lwm2m_json, encode_lwm2m_json
    from fota_server.protocol.lwm2m.objects import ResourceType
    from fota_server.protocol.lwm2m.paths import LwM2MPath
    from fota_server.protocol.lwm2m.values import ObjLink, Values, text_to_value
    from fota_server.protocol.omadm import digests, notification, syncml

    p = LwM2MPath
    bases = (p(3, 0), p(4, 0), p(5, 0), p(3), p(3, 0, 0), p(3, 0, 9), p(3, 0, 13), p(4, 0, 8), p(5, 0, 0),
             p(5, 0, 1), p(5, 0, 3), p(1, 0, 6), p(3, 0, 7), p(3, 0, 7, 0), p(3, 0, 11), p(99, 1, 2))
    device: Values = {p(3, 0, 0): "Acme", p(3, 0, 1): "Widget", p(3, 0, 3): "1.0.0", p(3, 0, 9): 87,
              p(3, 0, 13): 1_700_000_000, p(3, 0, 7, 0): 3800, p(3, 0, 7, 1): 5000}
    cells: Values = {p(4, 0, 8): 12345, p(4, 0, 9): 1, p(4, 0, 10): 310, p(4, 0, 12): 77, p(4, 0, 0): 6}
    formats: tuple[int | None, ...] = (None, *[int(f) for f in ContentFormat], 99, 65535)

    def with_base(fn: Callable[[bytes, LwM2MPath], object]) -> Callable[[bytes], object]:
        def run(data: bytes) -> object:
            pick, rest = _split(data)
            return fn(rest, bases[pick % len(bases)])
        return run

    def content(data: bytes) -> object:
        pick, rest = _split(data)
        base_pick, rest = _split(rest)
        return decode_values(formats[pick % len(formats)], rest, bases[base_pick % len(bases)])

    kinds = (*ResourceType, None)

    def plain_text(data: bytes) -> object:
        pick, rest = _split(data)
        return text_to_value(_text(rest), kinds[pick % len(kinds)])

    def coap_datagram(data: bytes) -> object:
        message = coap.decode_message(data)
        for number, value in message.options:
            if number in (coap.BLOCK2, coap.BLOCK1):
                BlockOption.from_int(coap.uint_value(value) or 0)
            elif number in (coap.CONTENT_FORMAT, coap.SIZE2, coap.SIZE1):
                coap.uint_value(value)
        segments = [_text(v) for v in message.values(coap.URI_PATH)]
        if segments and segments[0] != "rd":
            LwM2MPath.from_segments(segments)
        return message

    def register(data: bytes) -> object:
        query, _, payload = data.partition(b"\n")
        options = [_text(o) for o in query.split(b"&")] if query else []
        if options and options[0] == "update":
            return registration.parse_update(options[1:], payload, 40)
        return registration.parse_register(options, payload, 40)

    def range_header(data: bytes) -> object:
        pick, rest = _split(data)
        return ranges.parse_range(_text(rest), (0, 1, 100, 1 << 20, 1 << 40)[pick % 5])

    def device_manifest(data: bytes) -> object:
        db = MemoryDatabase()
        clock = FakeClock()
        db.accounts.create_account(Account("0000123456-00001", clock.now(), 10, "Subscription"))
        registry = DeviceRegistry(db.accounts, db.devices, db.credentials, clock)
        return import_manifest(data, registry, db.licenses, clock, account="0000123456-00001")

    dm_header = syncml.SyncHdr("1", 1, "http://server/dm", "IMEI:490154203237518",
                               cred=syncml.Cred(syncml.Meta(format="b64", type="syncml:auth-md5"), "abc=="))
    dm_message = syncml.Message(dm_header, (
        syncml.Command("Alert", 1, data="1201"),
        syncml.Command("Replace", 2, items=(syncml.Item(source="./DevInfo/DevId", data="IMEI:490154203237518",
                                                         meta=syncml.Meta(format="chr", size=20)),)),
        syncml.Command("Status", 3, msg_ref=1, cmd_ref=0, cmd="SyncHdr", data="212", target_refs=("x",)),
        syncml.Command("Atomic", 4, children=(syncml.Command("Get", 5, items=(syncml.Item(target="./a"),)),)),
    ))
    header = image.build_image("Acme", "Widget", "1.0.1", 64)
    checkin = manifest.encode_checkin(manifest.CheckIn("1.0.0", make="Acme", model="Widget", serving_cell="1-2-3-4"))
    report = manifest.encode_report(manifest.StatusReport(7, manifest.ReportState.FAILURE, 5, "bad hash", "1.0",
                                                          10, 20))
    logs = b'{"logs":[{"logTime":"2026-01-02T03:04:05Z","logType":"Event","eventLog":"boot",' \
           b'"binaryLogFileBase64":"AAEC","binaryLogFilename":"a.bin"}]}'
    tlv_samples = tuple(bytes([i]) + tlv.values_to_tlv(b, v) for i, (b, v) in
                        enumerate(((p(3, 0), device), (p(4, 0), cells))))
    feedback = b'{"id":"1","status":{"execution":"closed","result":{"finished":"failure","progress":' \
               b'{"cnt":1,"of":2}},"code":5,"details":["x"]}}'
    manifest_doc = json.dumps({"format": "fota-fleet-manifest/1", "account": "0000123456-00001", "devices": [
        {"deviceId": "490154203237518", "protocol": "LWM2M", "make": "Acme", "model": "W", "license": True,
         "credentials": {"pskIdentity": "id1", "pskKey": "00112233445566778899aabbccddeeff"}},
        {"deviceId": "http-1", "protocol": "HTTP", "credentials": {"httpToken": "t" * 32}},
        {"deviceId": "dm-1", "protocol": "OMADM", "credentials": {"omadmUser": "u", "omadmSecret": "s" * 16}},
    ]}).encode()
    register_seed = b"ep=urn:imei:490154203237518&lt=300&lwm2m=1.1&b=UQ\n" \
                    b'</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</4/0>,</5>;ver=1.1,</5/0>'
    coap_seed = coap.encode_message(coap.CoapMessage(coap.CON, 2, 0x1234, b"\x01\x02", (
        (coap.URI_PATH, b"rd"), (coap.CONTENT_FORMAT, b"\x28"), (coap.URI_QUERY, b"ep=x"),
        (coap.BLOCK2, b"\x16")), b"</3/0>"))

    decode = (DecodeError,)
    targets = [
        Target("tlv", with_base(tlv.tlv_to_values), tlv_samples, decode, "OMA-TLV into typed values"),
        Target("senml_json", senml.decode_senml_json,
               (senml.encode_senml_json(p(3, 0), device), senml.encode_senml_json(p(4, 0), cells)), decode),
        Target("senml_cbor", senml.decode_senml_cbor,
               (senml.encode_senml_cbor(p(3, 0), device), senml.encode_senml_cbor(p(4, 0), cells)), decode),
        Target("lwm2m_json", with_base(decode_lwm2m_json),
               (b"\x00" + encode_lwm2m_json(p(3, 0), device), b"\x01" + encode_lwm2m_json(p(4, 0), cells)), decode),
        Target("content", content, (b"\x00\x00" + tlv_samples[0][1:], b"\x01\x04-12", b"\x0b\x05" + "²".encode(),
                                    b"\x04\x08\x1a\x00\x01\x00\x00"), decode, "decode_values, any format"),
        Target("plain_text", plain_text, tuple(bytes([i]) + t for i, t in
                                               enumerate((b"Acme", b"42", b"7", b"1.5", b"1", b"AAE=", b"3:0"))),
               decode),
        Target("link_format", linkformat.parse_links, (register_seed.partition(b"\n")[2],), decode),
        Target("object_list", linkformat.parse_object_list, (register_seed.partition(b"\n")[2],), decode),
        Target("register", register, (register_seed, b"update&lt=60&b=U\n</3/0>"), decode,
               "Uri-Query and payload of Register/Update"),
        Target("coap_datagram", coap_datagram, (coap_seed,), decode, "CoAP header, options, Block, Uri-Path"),
        Target("lwm2m_path", lambda d: LwM2MPath.parse(_text(d)), (b"/3/0/1", b"/5/0/3"), decode),
        Target("objlink", lambda d: ObjLink.parse(_text(d)), (b"3:0",), decode),
        Target("syncml_xml", syncml.decode_message, (syncml.encode_message(dm_message, syncml.Encoding.XML),),
               decode),
        Target("syncml_wbxml", syncml.decode_message,
               (syncml.encode_message(dm_message, syncml.Encoding.WBXML),), decode),
        Target("omadm_credentials", lambda d: (digests.parse_basic_credential(_text(d)),
                                               digests.decode_nonce(_text(d))), (b"dXNlcjpwYXNz",), decode),
        Target("omadm_hmac_header", lambda d: digests.parse_mac_header(_text(d)),
               (digests.mac_header("u", "p", b"n", b"body").encode(),), decode),
        Target("package0", notification.parse_notification,
               (notification.build_notification(notification.Notification("srv", 7), "pw", b"nonce"),), decode),
        Target("http_checkin", manifest.decode_checkin, (checkin,), decode),
        Target("http_status", manifest.decode_report, (report,), decode),
        Target("http_logs", manifest.decode_logs, (logs,), decode),
        Target("http_answer", manifest.decode_answer, (manifest.encode_answer(manifest.CheckInAnswer(
            60, manifest.Offer(1, "firmware", "2", "http://x/fw", 10, "a" * 64, "sig"), True, 3)),), decode),
        Target("ddi_feedback", ddi.decode_feedback, (feedback,), decode),
        Target("ddi_config_data", ddi.decode_config_data, (b'{"mode":"merge","data":{"k":"v"}}',), decode),
        Target("ddi_sleep", lambda d: ddi.parse_sleep(_text(d)), (b"00:05:00",), decode),
        Target("range_header", range_header, (b"\x02bytes=0-10", b"\x03bytes=-5", b"\x04bytes=7-"), decode),
        Target("image_header", image.parse_header, (header,), decode),
        Target("image", image.verify_image, (header,), decode),
        Target("device_manifest", device_manifest, (manifest_doc,), (InvalidRequest,),
               "the import file; its documented error is InvalidRequest (bad entries are reported, not raised)"),
    ]
    return {t.name: t for t in targets}


class UnstorableText(Exception):
    """A decoder returned text that does not encode as UTF-8: the store or the log would fail on it later."""


def _check_text(value: object, depth: int = 0) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UnstorableText(repr(value[:40])) from None
    elif depth > 50 or isinstance(value, (bytes, int, float, type(None))):
        return
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, depth + 1)
            _check_text(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_text(item, depth + 1)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _check_text(getattr(value, name), depth + 1)


def run_one(target: Target, data: bytes, tally: Tally) -> None:
    """One input; a crash is any exception but the documented ones, or text in the result that cannot be stored."""
    tally.inputs += 1
    try:
        _check_text(target.run(data))
    except target.allowed:
        pass
    except Exception as exc:  # noqa: BLE001 - a crash is exactly "any other exception"
        tally.record(data, exc)


# --- mutation engine (used when atheris is not installed, or with --engine mutation) -------------------

def _mutate(rng: random.Random, data: bytes, pool: tuple[bytes, ...]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        pos = rng.randint(0, len(out))
        if choice == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif choice == 2:
            out[pos:pos] = rng.choice(HOSTILE_TOKENS)
        elif choice == 3 and out:
            del out[pos:pos + rng.randint(1, 16)]
        elif choice == 4 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start:start + rng.randint(1, 32)]
        elif choice == 5:
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            out = out[:pos] + bytearray(other[cut:])
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out[:8192])


def fuzz_mutation(target: Target, inputs: int, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    pool = target.seeds + HOSTILE_TOKENS
    for data in target.seeds:
        run_one(target, data, tally)
    while tally.inputs < inputs:
        if rng.random() < 0.1:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            data = _mutate(rng, rng.choice(target.seeds), pool)
        run_one(target, data, tally)
    return tally


# --- atheris engine: one process per decoder --------------------------------------------------------

def _worker(name: str, inputs: int, seed: int, out: Path) -> None:
    import atheris  # type: ignore[import-untyped]  # no type hints are published for it

    with atheris.instrument_imports():
        import fota_server.device_import  # noqa: F401
        import fota_server.protocol  # noqa: F401
        import fota_server.protocol.http_fota.ddi  # noqa: F401
        import fota_server.protocol.image  # noqa: F401
        import fota_server.protocol.lwm2m.content  # noqa: F401
        import fota_server.protocol.lwm2m.registration  # noqa: F401
        import fota_server.protocol.omadm.syncml  # noqa: F401
    target = build_targets()[name]
    tally = Tally()
    work = out.parent  # the parent's temporary directory: removed when the worker is done
    corpus = work / "corpus"
    corpus.mkdir()
    for index, sample in enumerate(target.seeds):
        (corpus / f"seed{index}").write_bytes(sample)
    dictionary = work / "tokens.dict"
    dictionary.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in t) + '"\n' for t in HOSTILE_TOKENS))

    def one(data: bytes) -> None:
        run_one(target, data, tally)
        if tally.inputs >= inputs:
            out.write_text(json.dumps(tally.to_json()))
            os._exit(0)

    argv = [sys.argv[0], str(corpus), f"-dict={dictionary}", f"-seed={seed}", "-max_len=4096",
            f"-runs={inputs + 1}", "-timeout=20", "-rss_limit_mb=4096", "-print_final_stats=0"]
    atheris.Setup(argv, one)
    atheris.Fuzz()


def fuzz_atheris(target: Target, inputs: int, seed: int) -> Tally:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", target.name, "--inputs", str(inputs), "--seed", str(seed),
               "--out", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not out.exists():
            tally = Tally(crashes=1)
            tally.signatures[f"worker exited {proc.returncode}: {proc.stderr[-400:]}"] = 1
            return tally
        raw = json.loads(out.read_text())
        return Tally(raw["inputs"], raw["crashes"], raw["signatures"],
                     [(s, base64.b64decode(d)) for s, d in raw["samples"]])


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs in all, shared among the decoders")
    parser.add_argument("--only", default="", help="comma-separated decoder names")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutation"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crash-dir", type=Path, default=None)
    parser.add_argument("--list", action="store_true", help="list the decoders and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.inputs, args.seed, args.out)
        return 0
    targets = build_targets()
    if args.list:
        for t in targets.values():
            print(f"{t.name:18} {', '.join(e.__name__ for e in t.allowed):14} {t.doc}")
        return 0
    names = [n for n in args.only.split(",") if n] or list(targets)
    engine = ("atheris" if _have_atheris() else "mutation") if args.engine == "auto" else args.engine
    share = max(1, args.inputs // len(names))
    print(f"engine: {engine}" + (" (coverage-guided, libFuzzer)" if engine == "atheris"
                                 else " (our own mutations of valid samples and random bytes)"))
    total_inputs = total_crashes = 0
    started = time.monotonic()
    for index, name in enumerate(names):
        count = share + (args.inputs - share * len(names) if index == len(names) - 1 else 0)
        began = time.monotonic()
        fuzz = fuzz_atheris if engine == "atheris" else fuzz_mutation
        tally = fuzz(targets[name], count, args.seed + index)
        total_inputs += tally.inputs
        total_crashes += tally.crashes
        print(f"{name:18} {tally.inputs:>9} inputs {tally.crashes:>6} crashes  {time.monotonic() - began:7.1f} s",
              flush=True)
        for signature, hits in tally.signatures.items():
            print(f"    {hits:>7} x {signature}")
        if args.crash_dir is not None and tally.samples:
            args.crash_dir.mkdir(parents=True, exist_ok=True)
            for n, (_, data) in enumerate(tally.samples):
                (args.crash_dir / f"{name}-{n}.bin").write_bytes(data)
    print(f"{'total':18} {total_inputs:>9} inputs {total_crashes:>6} crashes  {time.monotonic() - started:7.1f} s")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
