"""A throwaway PostgreSQL cluster for the tests: Debian's initdb and pg_ctl, a temp folder, a free port.

`PostgresCluster.create()` runs initdb (trust authentication, UTF-8, no locale) into a fresh folder under
the system temp dir and starts the server on 127.0.0.1 at a free port, its unix socket in that folder;
`stop()` and `start()` stop and restart the same cluster on the same port (the tests of reconnection),
`new_database()` gives each test a database of its own, `destroy()` stops it and deletes the folder.

initdb and postgres refuse to run as root, and the tests (and CI) run as root: then every server command
runs as the `postgres` user (Debian's package creates it), or `nobody`, through runuser. The folder is made
with tempfile.mkdtemp in /tmp rather than pytest's tmp_path because pytest's is root-only (0700), which that
user could not enter. `binaries()` is None when the package is absent; SKIP_REASON names it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

SKIP_REASON = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql (.ci/run installs it)"
USER = "simserve"  # the cluster's superuser (initdb -U), trusted on 127.0.0.1 and the socket


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/<major>/bin, else the PATH's; None if absent."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in reversed(debian):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def _server_user() -> str | None:
    """The unprivileged account the server commands run as when we are root (None: run them as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    root: Path  # owned by the server user: data/, server.log, the socket
    bin: Path
    port: int
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls, bin: Path | None = None, start: bool = True) -> PostgresCluster:
        """initdb a new cluster in a fresh temp folder and (by default) start it; raises RuntimeError on failure."""
        folder = bin or binaries()
        if folder is None:
            raise RuntimeError(SKIP_REASON)
        run_as = _server_user()
        # /tmp rather than $TMPDIR: the server user must be able to enter every parent, and the socket path
        # (root/.s.PGSQL.<port>) must stay under the 107 bytes a unix socket address holds.
        root = Path(tempfile.mkdtemp(prefix="simserve-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
        cluster = cls(root, folder, _free_port(), run_as)
        try:
            if run_as is not None:
                entry = pwd.getpwnam(run_as)
                os.chown(root, entry.pw_uid, entry.pw_gid)
            # fsync off: a throwaway cluster; a clean stop (-m fast) still checkpoints everything committed.
            cluster._run("initdb", "-D", str(cluster.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
            if start:
                cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        # cwd: the server user may not be allowed into ours (pytest's or root's home).
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"{tool} failed ({done.returncode}): {said}{self._log_tail()}")
        return done

    def _log_tail(self) -> str:
        try:
            return "\nserver.log:\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def start(self) -> None:
        """Start the server (waits until it accepts connections): TCP on 127.0.0.1 only, the socket in root."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start", timeout=90.0)

    def stop(self) -> None:
        """Stop the server: fast mode (open sessions are ended, committed work is checkpointed)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=90.0)

    def running(self) -> bool:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, cwd=self.root, capture_output=True, timeout=30, check=False).returncode == 0

    def new_database(self, prefix: str = "t") -> str:
        """CREATE DATABASE with a fresh name; its URL. Each test its own database, on one cluster per module."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server if it runs and delete the folder."""
        try:
            if self.data.exists() and self.running():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
