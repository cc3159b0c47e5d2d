"""Run the real ``fota-server`` as a child process on OS-assigned ports, as a user would."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fota_server.__main__ import main as fota_main

__all__ = ["ServerProcess", "cli", "cli_process", "create_account", "session_headers", "import_fleet"]

_READY = re.compile(r"listening on (\S+): (.*)")
_IN_PROCESS = threading.Lock()   # stdout and stderr are redirected for the whole process: one command at a time


def cli(*args: str, db: Path | str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``fota-server ARGS --db DB`` and return the finished process (``DB``: a SQLite file, or a
    ``postgresql://`` URL; then ``FOTA_DATA_DIR`` in the environment names the data directory).

    A command that must succeed (``check``, no ``env``, not ``run`` or ``demo``) runs through the same entry
    point in this process, which spares a Python start-up per call: test set-ups make hundreds of them. A
    command whose failure the test examines, or that needs an environment, runs as a child process
    (``cli_process``), as do the command line's own tests."""
    if not check or env or args[0] in ("run", "demo"):
        return cli_process(*args, db=db, env=env, check=check)
    argv = [*args, "--db", str(db)]
    out, err = io.StringIO(), io.StringIO()
    with _IN_PROCESS, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = fota_main(argv)
        except SystemExit as exc:   # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 2
    proc = subprocess.CompletedProcess(["fota-server", *argv], code, out.getvalue(), err.getvalue())
    if code != 0:
        raise AssertionError(f"fota-server {' '.join(args)} failed ({code}): {proc.stderr}")
    return proc


def cli_process(*args: str, db: Path | str, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """``cli`` as a child process, always: exit codes and stderr exactly as a user sees them."""
    proc = subprocess.run(
        [sys.executable, "-m", "fota_server", *args, "--db", str(db)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fota-server {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def create_account(db: Path | str, name: str, licenses: int = 100) -> dict[str, Any]:
    creds: dict[str, Any] = json.loads(cli("account", "create", name, "--licenses", str(licenses), "--json", db=db).stdout)
    return creds


def session_headers(base: str, creds: dict[str, Any]) -> dict[str, str]:
    """An OAuth token and a session for the account's user: the two headers every SMS API call carries."""
    import httpx

    token = httpx.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                       data={"grant_type": "client_credentials"}).json()["access_token"]
    session = httpx.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                         json={"username": creds["username"], "password": creds["password"]}).json()["sessionToken"]
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session}


def import_fleet(db: Path | str, manifest: Path, images: dict[str, tuple[str, bytes]], make: str, model: str,
                 version_from: str, version_to: str) -> None:
    """``fota-server device import`` of a fleet manifest, then ``firmware add`` of one image per protocol
    (``images``: protocol -> (firmware name, image bytes))."""
    imported = json.loads(cli("device", "import", str(manifest), db=db).stdout)
    assert imported["errors"] == [], imported["errors"][:3]
    for protocol, (name, image) in images.items():
        path = manifest.parent / f"{name}.bin"
        path.write_bytes(image)
        cli("firmware", "add", str(path), "--name", name, "--make", make, "--model", model, "--from", version_from,
            "--to", version_to, "--protocol", protocol, db=db)


@dataclass
class ServerProcess:
    db: Path | str
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 30) -> "ServerProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fota_server", "run", "--db", str(self.db), "--http-port", "0",
             "--coap-port", "0", "--coaps-port", "0", "--bootstrap-port", "0", "--bootstrap-coaps-port", "0",
             *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout_s
        lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self._reader.start()
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                break
            match = _READY.search(line)
            if match and "port" in match.group(2) and "fota-server" in line:
                self.ports = {m[0]: int(m[1]) for m in re.findall(r"(\w+) port (\d+)", match.group(2))}
                return self
        self.kill()
        raise AssertionError("server did not become ready:\n" + "".join(self.output))

    def _pump(self, lines: "queue.Queue[str]") -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            lines.put(line)
        lines.put("")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._close()
        return code

    def _close(self) -> None:
        assert self.proc is not None
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        if self.proc is not None:
            self._close()
