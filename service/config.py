"""Settings, read once from the environment (prefix ``GLIDEPATH_``).

The defaults are the embedded mode: SQLite and a file-system broker under ``DATA_DIR``, so
``glidepath up`` needs no server. Point ``DATABASE_URL``/``BROKER_URL`` at PostgreSQL and Redis
and the same code is the production stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLIDEPATH_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".glidepath"),
        description="Where the embedded database, broker files, uploads and checkpoints live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://root@127.0.0.1:5432/glidepath. "
        "Empty: SQLite at DATA_DIR/glidepath.db.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL, e.g. redis://127.0.0.1:6379/0. "
        "Empty: kombu's file-system transport under DATA_DIR/broker (no server).",
    )
    api_tokens: str = Field(
        default="",
        description="Comma-separated bearer tokens accepted as admins (named env:1, env:2, ...) "
        "beside the tokens table's (`glidepath token create`); with neither, the API is open.",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker's claim on a run lasts between heartbeats.",
    )
    checkpoint_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Checkpoint a run at least this often (seconds) unless its spec sets "
        "checkpoint_every (epochs).",
    )
    # 0.2 s, not 0.05: with 8 ms epochs polled every 10 ms, every write is a transaction in the
    # writer and the database and a fresh read of the run for every poller after it (the API's
    # cache only holds while the run is unchanged). On a 2-core box the API, the writer and
    # PostgreSQL then spent CPU equal to ~31 % of the worker's at 0.05 s, ~21 % at 0.2 s (all of
    # it contending with the training), and POST → final went
    # 1.17/1.26 → 1.03/1.15× embedded, 1.22/1.11 → 1.07/1.08× PostgreSQL (alternating runs,
    # benchmarks/run_overhead.py). A watcher sees an epoch up to this long (or one epoch, if
    # longer) after it was decided.
    epoch_write_seconds: float = Field(
        default=0.2,
        ge=0,
        le=3600,
        description="Epoch rows decided within this long of the last write are stored together "
        "in the next transaction (short epochs; nothing waits on them but readers, and every "
        "checkpoint, pause and final status waits for them). 0: one transaction per epoch.",
    )
    max_attempts: int = Field(
        default=5, ge=1, description="A run whose worker is lost this many times ends `failed`."
    )
    resend_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Re-send the task of a run still queued this long after its last send "
        "(a broker that lost it, e.g. Redis restarted); doubles per re-send.",
    )
    worker_queues: str = Field(
        default="auto,cpu",
        description="Comma-separated Celery queues a worker consumes (gpu workers add `gpu`).",
    )
    max_upload_mb: int = Field(
        default=50,
        ge=1,
        description="Largest dataset accepted by POST /v1/datasets, in MB (2**20 bytes): the "
        "uploaded file, the arrays it unpacks to, and a generated dataset's float32 features.",
    )
    artifact_url: str = Field(
        default="",
        description="Where datasets, checkpoints and final models are kept, shared by the API and "
        "every worker: a folder URL or s3://bucket/prefix (endpoint and credentials from "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). Empty: "
        "DATA_DIR/artifacts.",
    )
    keep_checkpoints: bool = Field(
        default=False,
        description="Keep a run's checkpoints when it ends (by default they are deleted; the "
        "final model stays).",
    )
    device_data_mb: int | None = Field(
        default=None,
        ge=1,
        description="A run's dataset goes to the device whole when its split parts (x and y) "
        "take at most this many MB (2**20 bytes); a larger one stays in host memory and is "
        "streamed batch by batch. Unset: a quarter of the device's memory (a GPU's total "
        "memory, or the host's RAM on CPU).",
    )

    # -- the API processes (glidepath api; docs/deploy.md "API processes") --------------------
    api_workers: int = Field(
        default=1,
        ge=1,
        description="API processes `glidepath api` starts on its one port (uvicorn workers); "
        "housekeeping runs in exactly one of them.",
    )
    api_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="How long an idle keep-alive connection stays open (uvicorn "
        "timeout_keep_alive): longer than a load balancer's idle timeout (60 s on most), so the "
        "server never closes a connection the balancer is about to reuse. Open streams are not "
        "idle.",
    )
    api_limit_concurrency: int = Field(
        default=4096,
        ge=1,
        description="Connections (open event streams included) one API process serves at once; "
        "past it, new requests get a 503 in the error shape with Retry-After (uvicorn's "
        "limit_concurrency, answered by cli/http_protocol.py). `glidepath api` "
        "raises the open-files limit to fit.",
    )
    api_backlog: int = Field(
        default=2048,
        ge=1,
        description="Connections the kernel queues for the API processes before they accept them.",
    )
    api_max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers the API reads (uvicorn "
        "h11_max_incomplete_event_size, or counted as httptools parses them); larger is "
        "refused before the app sees it.",
    )
    api_graceful_shutdown_s: int = Field(
        default=10,
        ge=0,
        description="On stop, how long an API process waits for requests in flight before it "
        "cancels them (event streams end by themselves at a stop).",
    )
    housekeeping_retry_s: float = Field(
        default=3.0,
        gt=0,
        description="How often an API process that does not run housekeeping asks for its lock "
        "(the holder died: another takes over within this long).",
    )
    max_json_bytes: int = Field(
        default=8 * 2**20,
        ge=1024,
        description="Largest request body, in bytes, the API reads for anything but a dataset "
        "upload (JSON: a 10,000-spec batch of typical specs is ~3 MB); larger is a 413 before "
        "it is parsed. Uploads have GLIDEPATH_MAX_UPLOAD_MB.",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request whose response has not begun this long after its body arrived "
        "is answered 504 (the handler still runs to its end: a POST may take effect). Streams "
        "(events, downloads) are not cut once they begin, nor uploads while their bytes arrive.",
    )

    log_format: Literal["console", "json"] = Field(
        default="console",
        description="`json`: one JSON object per log line (for a log shipper); `console`: "
        "readable lines. Every event carries its fields (experiment_id, attempt, worker, "
        "request_id, ...).",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")

    # -- live events (GET /v1/experiments/{id}/events, /v1/events; docs/events.md) -------------
    events_keepalive_s: float = Field(
        default=15.0,
        gt=0,
        description="An event stream that has sent nothing for this long sends a comment line "
        "(`: keep-alive`), so proxies keep it open.",
    )
    events_poll_s: float = Field(
        default=0.15,
        gt=0,
        description="Embedded (SQLite): how often each API process's one listener asks the "
        "database whether anything was committed (PRAGMA data_version, no table read). "
        "PostgreSQL uses LISTEN/NOTIFY instead.",
    )
    events_resync_s: float = Field(
        default=5.0,
        gt=0,
        description="PostgreSQL: the listener re-reads every followed run this often even "
        "without a notification (one read for all; a safety net, e.g. across a reconnect).",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glidepath.db').resolve()}"

    @property
    def effective_artifact_url(self) -> str:
        if self.artifact_url:
            return self.artifact_url
        return (self.data_dir / "artifacts").resolve().as_uri()

    @property
    def cache_dir(self) -> Path:
        """Local copies of artifacts from a remote store (datasets a worker memory-maps)."""
        return (self.data_dir / "cache").resolve()

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def is_embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()


def get_settings() -> Settings:
    """A fresh read of the environment (tests and the CLI change it between calls)."""
    return Settings()


settings = Settings()
