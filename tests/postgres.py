"""A throwaway PostgreSQL cluster for the store's tests: the distribution's binaries, a data directory and a Unix
socket in a temporary directory (no port to collide with), fsync off, stopped and deleted at the end.

initdb refuses to run as root: as root, the cluster runs as `nobody`, in a directory it owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "polyglott"
DATABASE = "polyglott"
MISSING = (
    "no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: "
    "install the distribution's postgresql package (.ci/run does)"
)


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest of /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent

    def version(folder: str) -> list[int]:
        return [int(part) for part in re.findall(r"\d+", Path(folder).parent.name)]

    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for folder in reversed(folders):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


@dataclass
class Cluster:
    directory: Path  # the socket's folder too: its path must stay short (108 bytes at most)
    bin: Path
    runner: tuple[str, ...]  # what runs the server's commands as its own (unprivileged) user
    _schemas: itertools.count[int]

    def url(self, schema: str | None = None) -> str:
        """A URL for the test database; with `schema`, every table goes there (a fresh store per test)."""
        url = f"postgresql://{USER}@/{DATABASE}?host={self.directory}"
        return f"{url}&search_path={schema}" if schema else url

    def next_schema(self) -> str:
        return f"test_{next(self._schemas)}"

    def run(self, command: str, *args: str) -> None:
        subprocess.run(
            [*self.runner, str(self.bin / command), *args], check=True, capture_output=True, text=True, timeout=120
        )

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def start(bin: Path) -> Cluster:
    directory = Path(tempfile.mkdtemp(prefix="pg-"))
    runner: tuple[str, ...] = ()
    if os.geteuid() == 0:
        os.chown(directory, 65534, 65534)  # nobody
        runner = ("runuser", "-u", "nobody", "--")
    cluster = Cluster(directory, bin, runner, itertools.count(1))
    data = str(directory / "data")
    try:
        cluster.run("initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        durability = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # thrown away after
        options = f"-k {directory} -c listen_addresses='' {durability}"
        cluster.run("pg_ctl", "-D", data, "-l", str(directory / "log"), "-o", options, "-w", "start")
        cluster.run("createdb", "-h", str(directory), "-U", USER, DATABASE)
    except subprocess.CalledProcessError as error:
        log = directory / "log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {error.stderr}\n{detail}") from error
    return cluster
