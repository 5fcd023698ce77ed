"""Private Redis and PostgreSQL servers that the tests start, own and stop.

Nothing here touches the machine's shared servers: a fault test that "restarts Redis" or "stops
PostgreSQL" does it to its own process on its own port, so concurrent test runs (and a developer's
`glidepath up`) never notice.

- `RedisServer`: `redis-server --port <free> --save "" --appendonly no`, a child of the test
  process (SIGKILLed with it). A session has one for all its PostgreSQL-backend stacks, and the
  Redis fault test has its own to restart.
- `PostgresServer`: a throwaway cluster: `initdb` into a temp dir, then `postgres -D dir -p <free>
  -k <dir>` run as a child process. As root, initdb and postgres refuse to run, so both run as the
  `postgres` OS user (subprocess `user=`/`group=`; the temp dir is chowned to it) and the server
  is started directly instead of through `pg_ctl`, so that it dies with the test process too.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.stack import die_with_parent, free_port, wait_for


def spawn_logged(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """A server process in its own session, its output appended to `log`, killed with us."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            **kwargs,
        )


class RedisServer:
    """A private, memory-only redis-server on a free port. `restart()` loses every key, as a
    restart of a Redis that keeps nothing on disk does."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
               "--appendonly", "no", "--dir", str(self.log.parent)]  # fmt: skip
        self.proc = spawn_logged(cmd, self.log)
        wait_for(self.ping, 20, lambda: self.log.read_text()[-2000:])
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # nothing to save: the server keeps nothing on disk
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: under /usr/lib/postgresql/<newest>/bin, else on PATH."""

    def version(path: str) -> int:
        major = Path(path).parts[-3]
        return int(major) if major.isdigit() else 0

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    return found[-1] if found else shutil.which(name)


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that drop root to the `postgres` OS user (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PostgresServer:
    """A private PostgreSQL cluster in a temp dir (trust auth, user postgres) on a free port.
    `stop()` and `start()` may be called any number of times; `close()` removes the cluster."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="glidepath-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        if pg_bin("initdb") is None or pg_bin("postgres") is None:
            return False
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False
        return True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [str(pg_bin("initdb")), "-D", str(self.data), "-U", "postgres", "-A", "trust",
             "--no-sync", "-E", "UTF8", "--locale", "C"],
            check=True, capture_output=True, timeout=120, **_as_postgres(),
        )  # fmt: skip
        return self

    def start(self) -> None:
        cmd = [str(pg_bin("postgres")), "-D", str(self.data), "-p", str(self.port),
               "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
               "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        self.proc = spawn_logged(cmd, self.log, **_as_postgres())
        wait_for(self.ready, 60, lambda: self.log.read_text()[-2000:])

    def ready(self) -> bool:
        import psycopg

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log.read_text()[-2000:]}")
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=1):  # fmt: skip
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, as by `pg_ctl stop -m fast`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


if __name__ == "__main__":  # a quick manual check: python -m tests.support.servers
    t0 = time.monotonic()
    with PostgresServer() as pg:
        print(f"postgres up in {time.monotonic() - t0:.2f}s at {pg.url()}")
        t1 = time.monotonic()
        pg.stop()
        pg.start()
        print(f"restart {time.monotonic() - t1:.2f}s")
    t0 = time.monotonic()
    with RedisServer(Path(tempfile.mkdtemp())) as r:
        print(f"redis up in {time.monotonic() - t0:.2f}s at {r.url()}")
