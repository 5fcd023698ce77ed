"""`Client`: the Glidepath HTTP API from Python, over a synchronous `httpx.Client`.

    from service.client import Client

    with Client() as gp:                       # GLIDEPATH_URL / GLIDEPATH_TOKEN, or arguments
        exp = gp.create_experiment({"dataset": "digits", "base_lr": 0.1, "epochs": 5})
        final = gp.wait([exp["id"]])[0]

Connection errors and 503s are retried with exponential backoff (a 503's `Retry-After` is
honoured); everything else that is not a 2xx raises `ApiError`. Create calls for experiments and
batches always send an `Idempotency-Key` (yours, or a random one), so a retry after a lost
response cannot queue the same work twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

import httpx

from service.client import sse
from service.client.errors import ApiError, ConnectionFailed
from service.client.sse import Event
from service.client.types import (
    FINAL_STATUSES,
    Batch,
    BatchCreated,
    Comparison,
    Dataset,
    DecisionList,
    Experiment,
    ExperimentPage,
    LRTrace,
    MetricsPage,
    RangeTest,
    RangeTestCreated,
    RangeTestSummary,
    Readiness,
    Sweep,
    SweepCreated,
    SweepDecision,
    Worker,
)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GLIDEPATH_URL"
TOKEN_ENV = "GLIDEPATH_TOKEN"
USER_AGENT = "glidepath-client/0.1"
RETRY_STATUSES = frozenset({503})
# Also retried when the request is safe to repeat (GET, or a POST with an Idempotency-Key).
RETRY_STATUSES_IF_SAFE = frozenset({502, 503, 504})
T = TypeVar("T")


def _segment(value: str | int) -> str:
    """`value` as one path segment: escaped, so that `/`, `?` or `..` in a user's id cannot
    address another resource (httpx resolves a literal `..`)."""
    escaped = quote(str(value), safe="")
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


def _not_json(response: httpx.Response, base_url: str) -> ApiError:
    """An answer that is not the API's: a redirect (an empty id: `GET /v1/batches/`), or a body
    that is no JSON (a proxy's sign-in page, a URL that is not the API)."""
    code = response.status_code
    if response.is_redirect:
        what = f"{code}, a redirect to {response.headers.get('Location', '?')}"
    else:
        what = f"{code} with {response.headers.get('Content-Type') or 'a body of no type'}"
    msg = (f"the service answered {what}, not the API's JSON: is {base_url} the Glidepath API, "
           "and every id given right?")  # fmt: skip
    return ApiError(code, [{"loc": [], "msg": msg, "type": "not_json"}],
                    method=response.request.method, url=str(response.request.url))  # fmt: skip


def _json(response: httpx.Response, base_url: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _not_json(response, base_url) from None


def _statuses(status: str | Sequence[str] | None) -> str | None:
    if status is None or isinstance(status, str):
        return status or None
    return ",".join(status) or None


class Client:
    """A typed client of the Glidepath API.

    base_url: default `$GLIDEPATH_URL`, else http://127.0.0.1:8000. token: sent as
    `Authorization: Bearer <token>`; default `$GLIDEPATH_TOKEN`. timeout: seconds per request
    (or an `httpx.Timeout`). retries: how many times a connection error or a 503 is retried,
    waiting backoff × 2^n seconds (at most max_wait; a `Retry-After` header wins).
    http: an existing `httpx.Client` to send through (e.g. FastAPI's `TestClient`); its base URL
    is used and it is not closed by `close()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_wait = max_wait
        self._sleep = sleep
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if http is not None:
            self._http = http
            self._owns_http = False
            self.base_url = str(http.base_url).rstrip("/")
        else:
            url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
            self.base_url = url.rstrip("/")
            self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
            self._owns_http = True

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_for(self, attempt: int, response: httpx.Response | None = None) -> float:
        wait = self.backoff * (2**attempt)
        if response is not None:
            header = response.headers.get("Retry-After")
            if header:
                try:
                    wait = float(header)
                except ValueError:
                    with contextlib.suppress(TypeError, ValueError):
                        wait = parsedate_to_datetime(header).timestamp() - time.time()
        return min(max(wait, 0.0), self.max_wait)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, BinaryIO]] | None = None,
    ) -> httpx.Response:
        """Send one request with retries; return the 2xx response or raise `ApiError`.
        `data` and `files` make it a multipart/form-data body (each file sent from its start,
        on every attempt)."""
        sent_headers = dict(headers or {})
        if self.token:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        # Repeating it cannot do anything twice: reads, and creates that carry a key.
        safe = method.upper() in ("GET", "HEAD") or "Idempotency-Key" in sent_headers
        attempt = 0
        while True:
            for _, fp in (files or {}).values():
                fp.seek(0)
            try:
                response = self._http.request(
                    method,
                    path,
                    params=query,
                    json=json,
                    headers=sent_headers,
                    data=data,
                    files=files,
                )
            except httpx.TransportError as exc:
                # A refused connection never reached the server: always safe to repeat.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retries and (safe or unsent):
                    self._sleep(self._wait_for(attempt))
                    attempt += 1
                    continue
                raise ConnectionFailed(
                    self.base_url, exc, method=method, url=f"{self.base_url}{path}"
                ) from exc
            retry_on = RETRY_STATUSES_IF_SAFE if safe else RETRY_STATUSES
            if response.status_code in retry_on and attempt < self.retries:
                self._sleep(self._wait_for(attempt, response))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            if response.is_redirect:  # the API never redirects its clients: not its answer
                raise _not_json(response, self.base_url)
            return response

    def _get(self, path: str, **params: Any) -> Any:
        return _json(self.request("GET", path, params=params), self.base_url)

    def _post(self, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _json(self.request("POST", path, json=body, headers=headers), self.base_url)

    # -- experiments ----------------------------------------------------------------------

    def create_experiment(
        self, spec: Mapping[str, Any], idempotency_key: str | None = None
    ) -> Experiment:
        """Queue one experiment (POST /v1/experiments). The same key with the same spec
        returns the first experiment; with another spec it is a 409."""
        key = idempotency_key or f"client-{uuid.uuid4()}"
        return cast(Experiment, self._post("/v1/experiments", dict(spec), key))

    def get_experiment(self, experiment_id: int) -> Experiment:
        return cast(Experiment, self._get(f"/v1/experiments/{experiment_id}"))

    def list_experiments(
        self,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        batch_id: str | None = None,
        sweep_id: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExperimentPage:
        """One page, newest first; pass `next_cursor` back as `cursor` for the next one.
        `tag` is `key` or `key:value`; `status` one status, a comma list or a sequence."""
        return cast(
            ExperimentPage,
            self._get(
                "/v1/experiments",
                status=_statuses(status),
                tag=tag,
                batch_id=batch_id,
                sweep_id=sweep_id,
                limit=limit,
                cursor=cursor,
            ),
        )

    def iter_experiments(
        self,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        batch_id: str | None = None,
        sweep_id: int | None = None,
        page_size: int = 200,
    ) -> Iterator[Experiment]:
        """Every matching experiment, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list_experiments(
                status=status,
                tag=tag,
                batch_id=batch_id,
                sweep_id=sweep_id,
                limit=page_size,
                cursor=cursor,
            )
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor or not page["items"]:
                return

    def metrics(
        self, experiment_id: int, after_epoch: int = 0, limit: int | None = None
    ) -> MetricsPage:
        """Epoch rows with epoch > after_epoch; poll again with `next_after_epoch`."""
        return cast(
            MetricsPage,
            self._get(
                f"/v1/experiments/{experiment_id}/metrics", after_epoch=after_epoch, limit=limit
            ),
        )

    def lr(
        self, experiment_id: int, resolution: str = "epoch", max_points: int | None = None
    ) -> LRTrace:
        """The run's LR per epoch (`lr`, `lr_min`, `lr_max`) or, `resolution="step"`, per
        optimizer step so far (`source`: recorded, or computed from the spec); `max_points`
        downsamples (the first and last points, each bucket's minimum and maximum)."""
        return cast(
            LRTrace,
            self._get(
                f"/v1/experiments/{experiment_id}/lr", resolution=resolution, max_points=max_points
            ),
        )

    def metrics_csv(self, experiment_id: int) -> str:
        """Every epoch as CSV (GET /v1/experiments/{id}/metrics.csv): a header row, then a
        row per epoch; `pandas.read_csv(io.StringIO(text))` reads it."""
        return self.request("GET", f"/v1/experiments/{experiment_id}/metrics.csv").text

    def decisions(self, experiment_id: int) -> DecisionList:
        """Every LR reduction and the stop (a sweep pruner's too, kind `pruned`), with the
        numbers and a sentence."""
        return cast(DecisionList, self._get(f"/v1/experiments/{experiment_id}/decisions"))

    def cancel(self, experiment_id: int) -> Experiment:
        """Queued: cancelled at once. Running: `cancel_requested`, stops at the next batch."""
        return cast(Experiment, self._post(f"/v1/experiments/{experiment_id}/cancel"))

    def delete_experiment(self, experiment_id: int) -> None:
        """Delete an ended run with its model and checkpoints (DELETE /v1/experiments/{id}).
        A queued or running run is a 409: `cancel` it first. A 503 (the artifact store is
        away) deleted nothing and is retried."""
        self.request("DELETE", f"/v1/experiments/{experiment_id}")

    def download_model(
        self, experiment_id: int, path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Stream an ended run's final model (safetensors) to `path` (default
        `experiment-<id>.safetensors` in the current folder, or in `path` when it is a folder)
        and return the path. The file is
        written beside it and renamed once complete and its sha256 matches the server's ETag:
        an interrupted or corrupted transfer (retried, as connection errors and 503s are)
        leaves no file. A file already there with the model's bytes is kept, not fetched again
        (its sha256 goes as If-None-Match; the server answers 304). A 409 `ApiError` while the
        run has no model."""
        name = f"experiment-{experiment_id}.safetensors"
        dest = Path(path) if path is not None else Path(name)
        if dest.is_dir():  # checked before the transfer: a folder is where, not what
            dest = dest / name
        url = f"/v1/experiments/{experiment_id}/model"
        headers = {"Accept": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if dest.is_file():
            headers["If-None-Match"] = f'"{_sha256_of(dest)}"'

        attempt = 0
        while True:
            try:
                with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code in RETRY_STATUSES_IF_SAFE and attempt < self.retries:
                        wait = self._wait_for(attempt, response)
                    elif response.status_code >= 400:
                        response.read()
                        raise ApiError.from_response(response)
                    elif response.status_code == 304:
                        return dest  # the file there is the model
                    else:
                        return _save(response, dest)
            except (httpx.TransportError, _CorruptDownload) as exc:
                if attempt >= self.retries:
                    if isinstance(exc, _CorruptDownload):
                        raise exc.error(f"{self.base_url}{url}") from None
                    raise ConnectionFailed(
                        self.base_url, exc, method="GET", url=f"{self.base_url}{url}"
                    ) from exc
                wait = self._wait_for(attempt)
            self._sleep(wait)
            attempt += 1

    def compare(self, ids: Iterable[int]) -> Comparison:
        """Several runs' per-epoch series on one epoch axis (null-padded)."""
        joined = ",".join(str(i) for i in ids)
        return cast(Comparison, self._get("/v1/experiments/compare", ids=joined))

    def events(
        self, experiment_id: int, after_epoch: int = 0, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """Follow the run live over Server-Sent Events (GET /v1/experiments/{id}/events): each
        `epoch` (data: the row as `metrics` gives it; id: its epoch), its `decision`s, `status`
        whenever it changes, until the final status. Epochs a resumed run rewrites come again.
        A stream that drops or ends early is taken up again after the last epoch received
        (Last-Event-ID), up to `retries` times in a row with backoff; a 4xx raises `ApiError`,
        a service that stays away `ConnectionFailed`. `timeout`: raise TimeoutError once the
        run has not ended after that many seconds."""

        def final(event: Event) -> bool:
            return event.event == "status" and event.json()["status"] in FINAL_STATUSES

        return self._follow(f"/v1/experiments/{experiment_id}/events", {}, str(after_epoch),
                            final, f"experiment {experiment_id}", timeout)  # fmt: skip

    def group_events(
        self, *, sweep_id: int | None = None, batch_id: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:  # fmt: skip
        """Follow many runs' status and progress (GET /v1/events): a sweep's (a later stage's
        runs as they are created) or a batch's. A `status` event per run, then one at each
        change of a run's status or progress; the last is `end` (data: {runs, counts}), once
        every run of the batch, or of the sweep once it has ended, is final. Neither: every
        run not final and each one submitted later, never ending. A dropped stream is taken up
        again and replays every run's current state; errors and `timeout` as `events`."""
        given = {"sweep_id": sweep_id, "batch_id": batch_id}
        params = {k: v for k, v in given.items() if v is not None}
        what = " ".join(f"{k.removesuffix('_id')} {v}" for k, v in params.items()) or "all runs"
        return self._follow("/v1/events", params, None, lambda e: e.event == "end", what,
                            timeout)  # fmt: skip

    def _follow(
        self, url: str, params: dict[str, Any], last: str | None,
        last_one: Callable[[Event], bool], what: str, timeout: float | None,
    ) -> Iterator[Event]:  # fmt: skip
        """An event stream until `last_one(event)`, taken up again (from `last`, the last event
        id received, where the stream has ids) when it drops or ends early."""
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        deadline = None if timeout is None else time.monotonic() + timeout

        def late() -> TimeoutError | None:
            if deadline is None or time.monotonic() < deadline:
                return None
            return TimeoutError(f"{what} not final after {timeout}s")

        attempt = 0
        while True:
            # The server sends a comment every 15 s (GLIDEPATH_EVENTS_KEEPALIVE_S): a minute of
            # silence is a dead connection. A deadline sooner cuts the wait for the next line.
            read = 60.0 if deadline is None else min(60.0, max(0.01, deadline - time.monotonic()))
            limits = httpx.Timeout(self._http.timeout.connect, read=read)
            resume = {} if last is None else {"Last-Event-ID": last}
            try:
                with self._http.stream("GET", url, params=params, timeout=limits,
                                       headers={**headers, **resume}) as response:  # fmt: skip
                    if response.status_code >= 400:
                        response.read()
                        error = ApiError.from_response(response)
                        if response.status_code not in RETRY_STATUSES_IF_SAFE:
                            raise error
                        raise _Unavailable(error)
                    for event in sse.parse(response.iter_lines()):
                        if event is not None:  # None: a keep-alive comment
                            attempt = 0  # it is flowing again
                            if event.id is not None:
                                last = event.id
                            yield event
                            if last_one(event):
                                return
                        if overdue := late():
                            raise overdue
            except (httpx.TransportError, _Unavailable) as exc:
                if overdue := late():  # the read timed out at the deadline, or a retry would
                    raise overdue from None
                if attempt >= self.retries:
                    if isinstance(exc, _Unavailable):
                        raise exc.error from None
                    raise ConnectionFailed(self.base_url, exc, method="GET",
                                           url=f"{self.base_url}{url}") from exc  # fmt: skip
            # Dropped, refused, or ended before its last event (a server stopping): again.
            if attempt >= self.retries:
                raise ConnectionFailed(self.base_url, RuntimeError("the stream ended early"),
                                       method="GET", url=f"{self.base_url}{url}")  # fmt: skip
            self._sleep(self._wait_for(attempt))
            attempt += 1

    def wait(
        self,
        ids: Iterable[int],
        *,
        poll: float | None = None,
        timeout: float | None = None,
    ) -> list[Experiment]:
        """Wait until every experiment has a final status; return them in the order given.
        Follows each run's event stream (`events`), which ends at its final status: the status
        is seen as it is committed (on the embedded database within GLIDEPATH_EVENTS_POLL_S,
        0.15 s), not up to a polling interval later, and nothing polls the API meanwhile.
        `poll`: ask every `poll` seconds instead (e.g. behind a proxy that holds streams back).
        Raises TimeoutError after `timeout` seconds."""
        pending = list(dict.fromkeys(ids))
        done: dict[int, Experiment] = {}
        deadline = None if timeout is None else time.monotonic() + timeout

        def late() -> TimeoutError:
            left = [str(i) for i in pending if i not in done]
            runs = f"experiment{'s' if len(left) > 1 else ''} {', '.join(left)}"
            return TimeoutError(f"{runs} not final after {timeout}s")

        if poll is None:
            for i in pending:
                exp = self.get_experiment(i)
                if exp["status"] not in FINAL_STATUSES:
                    left = None if deadline is None else deadline - time.monotonic()
                    # The stream from the epochs read: no replay of the run's history.
                    try:
                        for _ in self.events(i, after_epoch=exp["epochs_run"], timeout=left):
                            pass
                    except TimeoutError:
                        raise late() from None
                    exp = self.get_experiment(i)
                done[i] = exp
            return [done[i] for i in pending]
        while True:
            for i in pending:
                if i not in done:
                    exp = self.get_experiment(i)
                    if exp["status"] in FINAL_STATUSES:
                        done[i] = exp
            if len(done) == len(pending):
                return [done[i] for i in pending]
            if deadline is not None and time.monotonic() > deadline:
                raise late()
            self._sleep(poll)

    # -- batches --------------------------------------------------------------------------

    def create_batch(
        self,
        specs: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        idempotency_key: str | None = None,
        *,
        name: str | None = None,
    ) -> BatchCreated:
        """Queue many specs, all valid or none (POST /v1/batches). `specs` is a list of specs
        or a whole request body `{experiments: [...], name: ...}`. A 422's `loc` names the
        index: `["body", "experiments", 3, "base_lr"]`."""
        if isinstance(specs, Mapping):
            body: dict[str, Any] = dict(specs)
        else:
            body = {"experiments": [dict(s) for s in specs]}
        if name is not None:
            body["name"] = name
        key = idempotency_key or f"client-{uuid.uuid4()}"
        return cast(BatchCreated, self._post("/v1/batches", body, key))

    def get_batch(self, batch_id: str) -> Batch:
        return cast(Batch, self._get(f"/v1/batches/{_segment(batch_id)}"))

    def wait_batch(
        self, batch_id: str, *, poll: float | None = None, timeout: float | None = None
    ) -> Batch:
        """Wait until every run of the batch is final; return the batch (`counts` by status).
        Follows the batch's event stream (`group_events`) to its `end`; `poll`: ask every
        `poll` seconds instead. Raises TimeoutError after `timeout` seconds."""
        return self._wait_group(
            lambda left: self.group_events(batch_id=batch_id, timeout=left),
            lambda: self.get_batch(batch_id),
            lambda b: b["status"] == "finished",
            poll, timeout, f"batch {batch_id}",
        )  # fmt: skip

    # -- sweeps ---------------------------------------------------------------------------

    def create_sweep(
        self, request: Mapping[str, Any], idempotency_key: str | None = None
    ) -> SweepCreated:
        """`{base: spec, strategy: grid|random|lr_coarse_to_fine, parameters?, trials?, seed?,
        min_lr?, max_lr?, fine_points?, metric?, mode?, pruner?, name?}` (POST /v1/sweeps)."""
        return cast(SweepCreated, self._post("/v1/sweeps", dict(request), idempotency_key))

    def get_sweep(self, sweep_id: int) -> Sweep:
        """Status, stage, each experiment with its params and score, the leaderboard, best, and
        with a pruner `pruning` (its rule, rungs, runs pruned, epochs saved)."""
        return cast(Sweep, self._get(f"/v1/sweeps/{sweep_id}"))

    def sweep_decisions(self, sweep_id: int) -> list[SweepDecision]:
        """A pruned sweep's decisions in the order taken (GET /v1/sweeps/{id}/decisions): each
        run's `continue` or `stop` at an epoch, with its value, the cutoff, how many values were
        compared and the reason in a sentence. [] for a sweep without a pruner."""
        return cast(list[SweepDecision], self._get(f"/v1/sweeps/{sweep_id}/decisions"))

    def wait_sweep(
        self, sweep_id: int, *, poll: float | None = None, timeout: float | None = None
    ) -> Sweep:
        """Wait until the sweep has ended (every stage launched, every run final: succeeded,
        pruned, …; or cancelled and its runs stopped); return it as `get_sweep` does, its
        leaderboard, best and pruning final. Follows the sweep's event stream (`group_events`)
        to its `end`; `poll`: ask every `poll` seconds instead. Raises TimeoutError after
        `timeout` seconds."""
        return self._wait_group(
            lambda left: self.group_events(sweep_id=sweep_id, timeout=left),
            lambda: self.get_sweep(sweep_id),
            lambda w: w["status"] != "running"
            and not any(n for status, n in w["counts"].items() if status not in FINAL_STATUSES),
            poll, timeout, f"sweep {sweep_id}",
        )  # fmt: skip

    def _wait_group(
        self, stream: Callable[[float | None], Iterator[Event]], read: Callable[[], T],
        ended: Callable[[T], bool], poll: float | None, timeout: float | None, what: str,
    ) -> T:  # fmt: skip
        """A batch's or a sweep's wait: its stream to `end` (or `read()` every `poll` seconds
        until `ended`), then `read()`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if poll is None:
            for _ in stream(timeout):
                pass
            return read()
        while not ended(found := read()):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{what} not final after {timeout}s")
            self._sleep(poll)
        return found

    def list_sweeps(self) -> list[Sweep]:
        body = self._get("/v1/sweeps")
        return cast(list[Sweep], body["items"] if isinstance(body, dict) else body)

    def cancel_sweep(self, sweep_id: int) -> Sweep:
        return cast(Sweep, self._post(f"/v1/sweeps/{sweep_id}/cancel"))

    # -- LR range tests -------------------------------------------------------------------

    def create_range_test(
        self, request: Mapping[str, Any], idempotency_key: str | None = None
    ) -> RangeTestCreated:
        """POST /v1/lr-range-tests `{spec, min_lr, max_lr, steps, smoothing?, diverge_factor?}`."""
        return cast(
            RangeTestCreated, self._post("/v1/lr-range-tests", dict(request), idempotency_key)
        )

    def get_range_test(self, range_test_id: int, from_step: int = 0) -> RangeTest:
        """Points `{step, lr, loss, smoothed_loss}` with step >= from_step (poll again with
        `next_from_step`), and once done `suggested_lr` and `rule`."""
        return cast(
            RangeTest,
            self._get(
                f"/v1/lr-range-tests/{range_test_id}", from_step=from_step if from_step else None
            ),
        )

    def list_range_tests(
        self, status: Sequence[str] = (), limit: int = 50
    ) -> list[RangeTestSummary]:
        """GET /v1/lr-range-tests: the newest `limit` tests (1-500), in any of `status`."""
        body = self._get("/v1/lr-range-tests", status=list(status) or None, limit=limit)
        return cast(list[RangeTestSummary], body["items"])

    def cancel_range_test(self, range_test_id: int) -> RangeTest:
        return cast(RangeTest, self._post(f"/v1/lr-range-tests/{range_test_id}/cancel"))

    # -- datasets -------------------------------------------------------------------------

    def datasets(self) -> list[Dataset]:
        """Every dataset a spec may name: the built-in ones first, then uploads."""
        return cast(list[Dataset], self._get("/v1/datasets")["datasets"])

    def upload_dataset(
        self,
        path: str | Path,
        name: str,
        *,
        label_column: str | None = None,
        task: str | None = None,
    ) -> Dataset:
        """POST /v1/datasets (multipart): an `.npz` (arrays `x`, `y`) or a `.csv` with a header
        row, whose `label_column` (required for a .csv) names the label or target column.
        `task` (classification | regression) is inferred when not given."""
        fields = {"name": name}
        if label_column is not None:
            fields["label_column"] = label_column
        if task is not None:
            fields["task"] = task
        path = Path(path)
        with path.open("rb") as fp:
            response = self.request(
                "POST", "/v1/datasets", data=fields, files={"file": (path.name, fp)}
            )
        return cast(Dataset, _json(response, self.base_url))

    # -- workers --------------------------------------------------------------------------

    def preview_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/schedules/preview: {lr: [per epoch], epochs_run, decisions}."""
        return cast(dict[str, Any], self._post("/v1/schedules/preview", body))

    def workers(self) -> list[Worker]:
        """The worker registry: what each worker offers (devices, plugins), runs, last seen."""
        return cast(list[Worker], self._get("/v1/workers")["items"])

    # -- health ---------------------------------------------------------------------------

    def health(self) -> Readiness:
        """GET /readyz once, without retries: `{status: ready|unavailable, checks}` (a 503
        answer is returned, not raised). Raises `ConnectionFailed` when nothing answers."""
        try:
            response = self._http.get(
                "/readyz",
                headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed(self.base_url, exc, method="GET", url="/readyz") from exc
        if response.status_code not in (200, 503):
            raise ApiError.from_response(response)
        return cast(Readiness, _json(response, self.base_url))


class _Unavailable(Exception):
    """A 502/503/504 answered to an event stream: retried like a dropped connection."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class _CorruptDownload(Exception):
    """The bytes received do not hash to the ETag the server sent (its recorded sha256)."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected sha256 {expected}, received {got}")
        self.expected, self.got = expected, got

    def error(self, url: str) -> ApiError:
        msg = (f"the model received does not match its ETag (sha256 {self.expected}, received "
               f"{self.got}): the transfer was corrupted; nothing was written")  # fmt: skip
        return ApiError(502, [{"loc": [], "msg": msg, "type": "corrupt_download"}],
                        method="GET", url=url)  # fmt: skip


def _sha256_of(path: Path) -> str:
    # As service/artifacts/store.py's sha256_file, which the client may not import (no
    # server-side code in the client: the import-linter contract).
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _save(response: httpx.Response, dest: Path) -> Path:
    """Stream `response`'s body to `dest` atomically (a `.part` file beside it, renamed once
    complete), checking it against the ETag when that is a sha256."""
    expected = response.headers.get("ETag", "").removeprefix("W/").strip('"').lower()
    part = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    try:
        with part.open("wb") as f:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                f.write(chunk)
        if len(expected) == 64 and digest.hexdigest() != expected:
            raise _CorruptDownload(expected, digest.hexdigest())
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest
