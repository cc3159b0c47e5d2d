"""A registration storm against ``fota-server run``: N devices re-register at once, as after a cell outage.

    python tools/bench_storm.py                                   # 100,000 devices, storm offered at 10,000/s
    python tools/bench_storm.py --devices 20000 --rate 2000 --warmup-rate 1000

The server runs as a user starts it, on a fresh database with the N devices imported (``fota-server device
import``), reads after Register on (its default). The devices are first registered once in a slower wave
(``--warmup-rate``; 0 skips it, and the storm is then their first Register after import), the server is
left to finish its reads, and then (once no read has come for 3 s) every device sends a new Register at the offered ``--rate``.

The generator is raw CoAP (``tools/coapload.py``): devices share sockets bound to their own loopback
addresses, each Register is confirmable with RFC 7252 retransmission, a 5.03 is honoured by waiting its
Max-Age plus jitter and trying again (not a failure), and the server's reads of /3/0 and /4/0 are answered.
A Register with no answer after its retransmissions, or any answer other than 2.01 and 5.03, is a failure.
``--workers`` processes share the load (the machine has few cores: what they actually offered is reported).

Prints a timeline (devices registered after 10, 20, 30, 60, ... s), failures by code, retransmissions,
5.03s, reads answered, the server's resident memory (VmRSS, and VmHWM as the peak) and CPU, as JSON.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import queue
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchserver import ServerProcess, endpoint, proc_stats, provision, udp_receive_errors  # noqa: E402
from coapload import TIMEOUT, CoapLoad, ReadResponder, SocketPool, max_age_of, register_request  # noqa: E402

MARKS_S = (10, 20, 30, 45, 60, 90, 120, 180, 240, 300)


@dataclass(frozen=True)
class ShardSpec:
    index: int
    workers: int
    devices: int            # all devices; this shard takes every ``workers``-th from ``index``
    sockets: int            # this shard's sockets
    first_socket: int
    port: int
    jitter: float           # a 5.03's wait is Max-Age * (1 + uniform(0, jitter))


@dataclass
class _Phase:
    rate: float
    seconds: float
    started_at: float
    devices: list[int]
    sent_first: int = 0
    last_first_at: float = 0.0
    resent_after_503: int = 0
    got_503: int = 0
    done: int = 0

    def __post_init__(self) -> None:
        self.registered_at: list[float] = []
        self.failures: Counter[str] = Counter()
        self.waiting: list[tuple[float, int]] = []


def _shard(spec: ShardSpec, commands: Any, results: Any) -> None:
    """One generator process: waits for ``("register", rate, seconds)`` commands, answering reads meanwhile."""
    pool = SocketPool(spec.sockets, spec.first_socket)
    load = CoapLoad(("127.0.0.1", spec.port), pool, ReadResponder(), seed=spec.index + 1)
    devices = list(range(spec.index, spec.devices, spec.workers))
    rng = random.Random(spec.index)
    started = idle_report_at = time.monotonic()
    try:
        while True:
            try:
                command = commands.get_nowait()
            except queue.Empty:
                load.pump(time.monotonic() + 0.05)
                if time.monotonic() >= idle_report_at:
                    idle_report_at = time.monotonic() + 1.0
                    results.put(("idle", spec.index, {"reads": load.reads.total, "quiet_s":
                                                      time.monotonic() - max(load.last_server_request_at, started)}))
                continue
            if command[0] == "stop":
                results.put(("final", spec.index, _counters(load)))
                return
            phase = _Phase(command[1] / spec.workers, command[2], time.monotonic(), devices)
            cpu_before = time.process_time()
            _run_phase(spec, load, phase, rng, results)
            results.put(("phase", spec.index, {**_counters(load), "registered_at": phase.registered_at,
                                               "failures": dict(phase.failures), "got_503": phase.got_503,
                                               "resent_after_503": phase.resent_after_503,
                                               "sent_first": phase.sent_first,
                                               "offered_s": phase.last_first_at - phase.started_at,
                                               "cpu_s": time.process_time() - cpu_before,
                                               "unfinished": len(devices) - phase.done}))
    finally:
        pool.close()


def _counters(load: CoapLoad) -> dict[str, Any]:
    return {"sent": load.sent, "retransmits": load.retransmits, "reads": dict(load.reads.answered),
            "read_refusals": dict(load.reads.refused), "server_requests": load.server_requests, "stray": load.stray}


def _run_phase(spec: ShardSpec, load: CoapLoad, phase: _Phase, rng: random.Random, results: Any) -> None:
    total, sockets = len(phase.devices), spec.sockets
    end_at, report_at = phase.started_at + phase.seconds, phase.started_at + 1.0
    while phase.done < total:
        now = time.monotonic()
        if now >= end_at:
            break
        due = min(total, int((now - phase.started_at) * phase.rate) + 1)
        while phase.sent_first < due:
            local = phase.sent_first
            load.request(phase.devices[local], local % sockets, register_request(endpoint(phase.devices[local])), now)
            phase.sent_first += 1
            phase.last_first_at = now
        while phase.waiting and phase.waiting[0][0] <= now:
            _, local = heapq.heappop(phase.waiting)
            load.request(phase.devices[local], local % sockets, register_request(endpoint(phase.devices[local])), now)
            phase.resent_after_503 += 1
        next_at = phase.started_at + phase.sent_first / phase.rate if phase.sent_first < total else now + 0.02
        for outcome in load.pump(max(next_at, now + 0.001)):
            _settle(phase, outcome.device // spec.workers, outcome.code, outcome.reply, rng, spec.jitter)
        if now >= report_at:
            report_at += 1.0
            results.put(("progress", spec.index, {"t": now - phase.started_at, "registered": len(phase.registered_at),
                                                  "failed": sum(phase.failures.values()), "got_503": phase.got_503,
                                                  "retransmits": load.retransmits, "reads": load.reads.total}))


def _settle(phase: _Phase, local: int, code: str, reply: bytes, rng: random.Random, jitter: float) -> None:
    now = time.monotonic()
    if code == "5.03":
        phase.got_503 += 1
        wait = max_age_of(reply) * (1.0 + rng.uniform(0.0, jitter))
        heapq.heappush(phase.waiting, (now + wait, local))
        return
    phase.done += 1
    if code == "2.01":
        phase.registered_at.append(now - phase.started_at)
    else:
        phase.failures[code] += 1


class Storm:
    """The generator processes, driven phase by phase from here."""

    def __init__(self, devices: int, workers: int, per_socket: int, port: int, jitter: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.results: Any = context.Queue()
        self.commands: list[Any] = []
        self.processes = []
        sockets = max(1, -(-devices // per_socket) // workers)
        for index in range(workers):
            commands = context.Queue()
            spec = ShardSpec(index, workers, devices, sockets, index * sockets, port, jitter)
            process = context.Process(target=_shard, args=(spec, commands, self.results), daemon=True)
            process.start()
            self.commands.append(commands)
            self.processes.append(process)

    def phase(self, rate: float, seconds: float, server_pid: int, label: str) -> dict[str, Any]:
        before, started, dropped = proc_stats(server_pid), time.monotonic(), udp_receive_errors()
        for commands in self.commands:
            commands.put(("register", rate, seconds))
        shards: dict[int, dict[str, Any]] = {}
        progress: dict[int, dict[str, Any]] = {}
        rss_peak = 0
        while len(shards) < len(self.commands):
            try:
                kind, index, body = self.results.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "phase":
                shards[index] = body
            elif kind == "progress":
                progress[index] = body
                stats = proc_stats(server_pid)
                rss_peak = max(rss_peak, stats.rss_kib)
                merged = {k: sum(p[k] for p in progress.values()) for k in ("registered", "failed", "got_503",
                                                                             "retransmits", "reads")}
                if index == 0:
                    print(f"  {label} t={body['t']:5.0f}s {merged} server rss {stats.rss_kib / 1024:.0f} MiB",
                          file=sys.stderr, flush=True)
        after, elapsed = proc_stats(server_pid), time.monotonic() - started
        return {**_summary(shards, before, after, elapsed, rss_peak),
                "udp_receive_buffer_drops_machine_wide": udp_receive_errors() - dropped}

    def quiet(self, still_s: float = 3.0, limit_s: float = 300.0) -> float:
        """Wait until the server has sent no read to any device for ``still_s``; the seconds waited."""
        started = time.monotonic()
        quiet: dict[int, float] = {}
        while time.monotonic() - started < limit_s:
            try:
                kind, index, body = self.results.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "idle":
                quiet[index] = body["quiet_s"]
                if len(quiet) == len(self.commands) and min(quiet.values()) >= still_s:
                    break
        return time.monotonic() - started

    def stop(self) -> dict[str, Any]:
        for commands in self.commands:
            commands.put(("stop",))
        finals: list[dict[str, Any]] = []
        while len(finals) < len(self.commands):
            kind, _, body = self.results.get(timeout=60)
            if kind == "final":
                finals.append(body)
        for process in self.processes:
            process.join(timeout=30)
        return {"reads": dict(sum((Counter(f["reads"]) for f in finals), Counter())),
                "read_refusals": dict(sum((Counter(f["read_refusals"]) for f in finals), Counter())),
                "server_requests": sum(f["server_requests"] for f in finals)}


def _summary(shards: dict[int, dict[str, Any]], before: Any, after: Any, elapsed: float,
             rss_peak: int) -> dict[str, Any]:
    times = sorted(t for body in shards.values() for t in body["registered_at"])
    sent_first = sum(b["sent_first"] for b in shards.values())
    offered_s = max(b["offered_s"] for b in shards.values())
    timeline = {f"{mark}s": sum(1 for t in times if t <= mark) for mark in MARKS_S if mark <= elapsed + 10}
    failures = sum((Counter(b["failures"]) for b in shards.values()), Counter())
    return {
        "registered": len(times), "registered_after": timeline,
        "all_registered_at_s": round(times[-1], 1) if times else None,
        "failures": dict(failures), "failed": sum(failures.values()),
        "unfinished": sum(b["unfinished"] for b in shards.values()),
        "registers_sent": sent_first, "offered_per_s": round(sent_first / offered_s) if offered_s > 0 else None,
        "retransmits": sum(b["retransmits"] for b in shards.values()),
        "got_503": sum(b["got_503"] for b in shards.values()),
        "resent_after_503": sum(b["resent_after_503"] for b in shards.values()),
        "reads_answered_so_far": sum(sum(b["reads"].values()) for b in shards.values()),
        "elapsed_s": round(elapsed, 1),
        "generator_cpu_share": round(sum(b["cpu_s"] for b in shards.values()) / elapsed, 2),
        "server_cpu_s": round(after.cpu_since(before), 1),
        "server_cpu_share": round(after.cpu_since(before) / elapsed, 2),
        "server_rss_mib": round(after.rss_kib / 1024), "server_rss_peak_sampled_mib": round(rss_peak / 1024),
        "server_vmhwm_mib": round(after.peak_rss_kib / 1024),
        "no_answer": failures.get(TIMEOUT, 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10_000, help="Registers offered per second in the storm")
    parser.add_argument("--warmup-rate", type=float, default=2_000,
                        help="Registers per second of the first wave (0: none, the storm is the first Register)")
    parser.add_argument("--seconds", type=float, default=180, help="stop a phase after this long")
    parser.add_argument("--workers", type=int, default=2, help="generator processes")
    parser.add_argument("--devices-per-socket", type=int, default=50)
    parser.add_argument("--settle", type=float, default=300,
                        help="after a phase, wait at most this long for the server's reads to end")
    parser.add_argument("--jitter", type=float, default=0.2, help="a 5.03's wait is Max-Age * (1 + U(0, jitter))")
    args = parser.parse_args()
    report: dict[str, Any] = {"command": " ".join(["tools/bench_storm.py", *sys.argv[1:]]), "devices": args.devices,
                              "rate": args.rate, "warmup_rate": args.warmup_rate, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        db = Path(tmp) / "fota.db"
        provision(db, args.devices)
        server = ServerProcess(db).start()
        assert server.proc is not None
        pid = server.proc.pid
        storm = Storm(args.devices, args.workers, args.devices_per_socket, server.ports["coap"], args.jitter)
        try:
            report["server_rss_at_start_mib"] = round(proc_stats(pid).rss_kib / 1024)
            if args.warmup_rate > 0:
                report["first_wave"] = storm.phase(args.warmup_rate, args.seconds, pid, "first wave")
                report["first_wave_settle_s"] = round(storm.quiet(limit_s=args.settle), 1)
            report["storm"] = storm.phase(args.rate, args.seconds, pid, "storm")
            report["storm_settle_s"] = round(storm.quiet(limit_s=args.settle), 1)
            report["reads"] = storm.stop()
            report["server_vmhwm_mib"] = round(proc_stats(pid).peak_rss_kib / 1024)
            report["server_log_lines"] = len(server.output)
        finally:
            try:
                server.stop(timeout_s=120)
            except Exception:
                server.kill()
                raise
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
