"""A throwaway PostgreSQL cluster for the tests: ``initdb`` into a temporary directory, ``pg_ctl start`` on a Unix
socket in that directory (no TCP port), trust authentication, stopped and removed at the end.

``.ci/run`` starts one with ``python -m tests.pgcluster start DIR`` and exports ``FOTA_TEST_POSTGRES_URL`` for
every test worker; a developer running pytest directly gets one per test session from ``postgres_url()`` when
Debian's ``postgresql`` package (or any ``initdb`` on PATH) is installed, and a skip naming what is missing
otherwise. As root the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["Cluster", "bindir", "ENV_URL"]

ENV_URL = "FOTA_TEST_POSTGRES_URL"
_PORT = 5432   # only names the socket file (.s.PGSQL.5432) in the cluster's own directory


def bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's newest /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.socket_dir = directory
        self.log = directory / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={_PORT}"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                               + (f"\n{self.log.read_text()[-2000:]}" if self.log.exists() else ""))

    def start(self) -> "Cluster":
        binaries = bindir()
        if binaries is None:
            raise RuntimeError("no initdb found: install Debian's postgresql package")
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.directory.chmod(0o755)
        self._run(str(binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} -p {_PORT}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")
        return self

    def stop(self) -> None:
        binaries = bindir()
        if binaries is not None and (self.data / "postmaster.pid").exists():
            try:
                self._run(str(binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``start DIR`` prints the URL of a new cluster in DIR; ``stop DIR`` stops and removes it."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pgcluster start|stop DIR", file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[1]))
    if argv[0] == "start":
        print(cluster.start().url)
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
