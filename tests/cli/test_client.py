"""`service.client.Client` against a scripted transport: headers, retries, errors, paging."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.client import ApiError, Client, ConnectionFailed

Handler = Callable[[httpx.Request], httpx.Response]


def make(handler: Handler, **kwargs: Any) -> tuple[Client, list[float]]:
    slept: list[float] = []
    http = httpx.Client(base_url="http://gp.test", transport=httpx.MockTransport(handler))
    return Client(http=http, sleep=slept.append, **kwargs), slept


def test_token_and_idempotency_key_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 7, "status": "queued"})

    client, _ = make(handler, token="s3cret")
    assert client.create_experiment({"base_lr": 0.1}, idempotency_key="k1")["id"] == 7
    client.create_experiment({"base_lr": 0.1})
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].headers["idempotency-key"] == "k1"
    # Without a key the client makes one, so its own retries cannot queue the run twice.
    assert seen[1].headers["idempotency-key"].startswith("client-")
    assert json.loads(seen[0].content) == {"base_lr": 0.1}


def test_env_gives_url_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIDEPATH_URL", "http://example.test:9000/")
    monkeypatch.setenv("GLIDEPATH_TOKEN", "tok")
    with Client() as client:
        assert client.base_url == "http://example.test:9000"
        assert client.token == "tok"


def test_503_is_retried_honouring_retry_after() -> None:
    answers = [
        httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": []}),
        httpx.Response(503, json={"detail": []}),
        httpx.Response(200, json={"items": [], "next_cursor": None}),
    ]
    client, slept = make(lambda _: answers.pop(0), backoff=0.25)
    assert client.list_experiments()["items"] == []
    assert slept == [2.0, 0.5]  # Retry-After, then backoff × 2^1


def test_503_after_the_retries_is_an_api_error() -> None:
    body = {"detail": [{"loc": [], "msg": "the database is unavailable", "type": "unavailable"}]}
    client, slept = make(lambda _: httpx.Response(503, json=body), retries=2)
    with pytest.raises(ApiError) as info:
        client.get_experiment(1)
    assert info.value.status_code == 503 and info.value.is_unavailable
    assert str(info.value) == "the database is unavailable"
    assert len(slept) == 2


def test_connection_errors_are_retried_then_reported() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    client, slept = make(handler, retries=3, backoff=0.1)
    with pytest.raises(ConnectionFailed) as info:
        client.health()  # health() itself does not retry
    assert calls == 1
    with pytest.raises(ConnectionFailed) as info:
        client.create_sweep({"base": {}, "strategy": "grid"})
    assert calls == 5 and slept == pytest.approx([0.1, 0.2, 0.4])
    assert info.value.status_code == 0 and "cannot reach the service" in str(info.value)


def test_a_read_timeout_is_not_retried_for_a_post_without_key() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("slow", request=request)

    client, _ = make(handler)
    with pytest.raises(ConnectionFailed):
        client.create_sweep({"base": {}, "strategy": "grid"})  # might have been applied
    assert calls == 1
    with pytest.raises(ConnectionFailed):
        client.get_sweep(1)  # a read is repeated
    assert calls == 5


def test_422_detail_is_kept_and_readable() -> None:
    detail = [
        {
            "loc": ["body", "experiments", 3, "base_lr"],
            "msg": "Input should be greater than 0",
            "type": "greater_than",
        },
        {"loc": ["body", "name"], "msg": "String should have at most 200 characters", "type": "x"},
    ]
    client, slept = make(lambda _: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ApiError) as info:
        client.create_batch([{"base_lr": 0}] * 4)
    err = info.value
    assert err.status_code == 422 and err.detail == detail and not slept
    assert err.messages()[0] == "body.experiments.3.base_lr: Input should be greater than 0"
    assert str(err).startswith("body.experiments.3.base_lr: Input should be greater than 0; ")


def test_errors_that_are_not_the_api_shape_still_read() -> None:
    client, _ = make(lambda _: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(ApiError) as info:
        client.get_batch("nope")
    assert info.value.is_not_found and str(info.value) == "Not Found"
    client, _ = make(lambda _: httpx.Response(502, text="<html>bad gateway</html>"), retries=0)
    with pytest.raises(ApiError) as info:
        client.get_experiment(1)
    assert info.value.status_code == 502 and "bad gateway" in str(info.value)


def test_iter_experiments_follows_the_cursor() -> None:
    pages = {
        None: {"items": [{"id": 3}, {"id": 2}], "next_cursor": "c2"},
        "c2": {"items": [{"id": 1}], "next_cursor": None},
    }
    queries: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        queries.append(q)
        return httpx.Response(200, json=pages[q.get("cursor")])

    client, _ = make(handler)
    got = [e["id"] for e in client.iter_experiments(status=["queued", "running"], tag="a:b")]
    assert got == [3, 2, 1]
    assert queries[0] == {"status": "queued,running", "tag": "a:b", "limit": "200"}
    assert queries[1]["cursor"] == "c2"


def test_paths_and_query_of_each_call() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        return httpx.Response(200, json={"items": []})

    client, _ = make(handler)
    client.metrics(4, after_epoch=7)
    client.decisions(4)
    client.metrics_csv(4)
    client.cancel(4)
    client.compare([1, 2, 3])
    client.get_sweep(2)
    client.list_sweeps()
    client.cancel_sweep(2)
    client.get_range_test(5, from_step=10)
    client.create_range_test({"spec": {}, "min_lr": 1e-5, "max_lr": 1, "steps": 20})
    client.get_batch("b1")
    assert seen == [
        "GET /v1/experiments/4/metrics?after_epoch=7",
        "GET /v1/experiments/4/decisions?",
        "GET /v1/experiments/4/metrics.csv?",
        "POST /v1/experiments/4/cancel?",
        "GET /v1/experiments/compare?ids=1%2C2%2C3",
        "GET /v1/sweeps/2?",
        "GET /v1/sweeps?",
        "POST /v1/sweeps/2/cancel?",
        "GET /v1/lr-range-tests/5?from_step=10",
        "POST /v1/lr-range-tests?",
        "GET /v1/batches/b1?",
    ]


def test_wait_follows_the_run_s_stream_to_its_final_status() -> None:
    """No polling: the run read once, its stream from the epochs read (no replay of its history),
    the final run read once the stream ends."""
    seen: list[str] = []
    details = iter([{"id": 3, "status": "running", "epochs_run": 4},
                    {"id": 3, "status": "succeeded", "epochs_run": 6}])  # fmt: skip
    stream = (b"event: status\ndata: {\"status\": \"running\"}\n\n"
              b"event: epoch\nid: 5\ndata: {\"epoch\": 5}\n\n: keep-alive\n\n"
              b"event: status\nid: 6\ndata: {\"status\": \"succeeded\"}\n\n")  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.headers.get('last-event-id', '')}".strip())
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=stream,
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        return httpx.Response(200, json=next(details))

    client, slept = make(handler)
    assert client.wait([3])[0]["status"] == "succeeded"
    assert seen == ["/v1/experiments/3", "/v1/experiments/3/events 4", "/v1/experiments/3"]
    assert slept == []


def test_wait_on_a_stream_gives_up_at_its_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):  # a stream that ends before the final status
            return httpx.Response(200, content=b": keep-alive\n\n",
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        return httpx.Response(200, json={"id": 3, "status": "running", "epochs_run": 1})

    client, _ = make(handler)
    with pytest.raises(TimeoutError, match="experiment 3 not final"):
        client.wait([3], timeout=0)


def test_wait_polls_until_final() -> None:
    statuses = iter(["queued", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": 1, "status": next(statuses)})

    client, slept = make(handler)
    assert client.wait([1], poll=0.5)[0]["status"] == "succeeded"
    assert slept == [0.5, 0.5]


def test_wait_sweep_follows_its_stream_to_the_end_taking_it_up_again_after_a_drop() -> None:
    """The sweep's stream (GET /v1/events?sweep_id=), dropped once: taken up again without a
    Last-Event-ID (it replays every run's state), ended by `end`, then the sweep read once."""
    seen: list[httpx.Request] = []
    streams = iter([
        b"event: status\ndata: {\"experiment_id\": 1, \"status\": \"waiting\"}\n\n",
        b"event: status\ndata: {\"experiment_id\": 1, \"status\": \"pruned\"}\n\n"
        b": keep-alive\n\nevent: end\ndata: {\"runs\": 1, \"counts\": {\"pruned\": 1}}\n\n",
    ])  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/events":
            return httpx.Response(200, content=next(streams),
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        return httpx.Response(200, json={"id": 4, "status": "finished", "counts": {"pruned": 1}})

    client, slept = make(handler)
    assert client.wait_sweep(4)["status"] == "finished"
    assert [(r.url.path, dict(r.url.params)) for r in seen] == [
        ("/v1/events", {"sweep_id": "4"}), ("/v1/events", {"sweep_id": "4"}), ("/v1/sweeps/4", {})
    ]  # fmt: skip
    assert all("last-event-id" not in r.headers for r in seen)
    assert len(slept) == 1  # one backoff before taking the stream up again


def test_group_events_of_a_batch_or_of_every_run_ask_for_just_that() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"event: end\ndata: {}\n\n",
                              headers={"content-type": "text/event-stream"})  # fmt: skip

    client, _ = make(handler)
    assert [e.event for e in client.group_events(batch_id="b7")] == ["end"]
    assert [e.event for e in client.group_events()] == ["end"]
    assert [str(r.url) for r in seen] == ["http://gp.test/v1/events?batch_id=b7",
                                          "http://gp.test/v1/events"]  # fmt: skip


def test_wait_batch_and_wait_sweep_poll_until_ended() -> None:
    batches = iter(["running", "running", "finished"])
    sweeps = iter([("running", {"running": 1}), ("cancelled", {"running": 1}),
                   ("cancelled", {"cancelled": 1})])  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/batches/"):
            return httpx.Response(200, json={"batch_id": "b1", "status": next(batches)})
        status, counts = next(sweeps)  # a cancelled sweep has ended once its runs stopped
        return httpx.Response(200, json={"id": 2, "status": status, "counts": counts})

    client, slept = make(handler)
    assert client.wait_batch("b1", poll=0.5)["status"] == "finished"
    assert client.wait_sweep(2, poll=0.25)["counts"] == {"cancelled": 1}
    assert slept == [0.5, 0.5, 0.25, 0.25]


def test_wait_sweep_on_a_stream_gives_up_at_its_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b": keep-alive\n\n",
                              headers={"content-type": "text/event-stream"})  # fmt: skip

    client, _ = make(handler)
    with pytest.raises(TimeoutError, match="sweep 9 not final"):
        client.wait_sweep(9, timeout=0)


@pytest.mark.parametrize(
    ("interval", "sleeps"),
    [(1.0, [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]), (0.2, [0.05, 0.1, 0.2, 0.2, 0.2, 0.2])],
)
def test_following_polls_soon_at_first_then_at_the_interval(
    monkeypatch: pytest.MonkeyPatch, interval: float, sleeps: list[float]
) -> None:
    """`submit --wait`, `watch` and the `show --wait` commands: a short run is seen ended soon
    after it ends; a long one is polled every `--interval`."""
    from service.cli import trackers

    slept: list[float] = []
    monkeypatch.setattr(trackers.time, "sleep", slept.append)
    polls = iter([False] * 6 + [True])
    trackers.poll_until(lambda: next(polls), interval)
    assert slept == pytest.approx(sleeps)


def test_a_batch_id_is_one_path_segment() -> None:
    """A batch id is the user's text: it is sent escaped, as one segment, so `..`, `/` or `?`
    in it cannot make the client read another resource (`../experiments/1` read experiment 1
    as if it were a batch: a KeyError in `batch show`)."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(404, json={"detail": "Not Found"})

    client, _ = make(handler)
    for batch_id in ("../experiments/1", "x?y=1", "..", "a b"):
        with pytest.raises(ApiError):
            client.get_batch(batch_id)
    assert seen == [
        b"/v1/batches/..%2Fexperiments%2F1",
        b"/v1/batches/x%3Fy%3D1",
        b"/v1/batches/%2E%2E",
        b"/v1/batches/a%20b",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(307, headers={"Location": "http://gp.test/v1/batches"}),
        httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"}),
    ],
)
def test_an_answer_that_is_not_the_api_s_json_is_an_api_error(answer: httpx.Response) -> None:
    """A redirect (`GET /v1/batches/` for an empty id) or a page that is not JSON (a proxy's
    sign-in page, a URL that is not the API) raised json's JSONDecodeError: a traceback in the
    CLI. It is an ApiError that says what came back."""
    client, _ = make(lambda _: answer)
    with pytest.raises(ApiError) as info:
        client.get_batch("")
    assert info.value.status_code == answer.status_code
    assert "not the API's JSON" in str(info.value)
    assert not info.value.is_unavailable and not info.value.is_not_found


def test_wait_s_timeout_names_the_runs_left_and_the_timeout_given() -> None:
    """On a stream as when polling: the timeout the caller gave, not the seconds left of it
    when the run was reached (`experiment 3 not final after 1.4938103900003625s`), and every
    run not final yet."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=b": keep-alive\n\n",
                                  headers={"content-type": "text/event-stream"})  # fmt: skip
        return httpx.Response(200, json={"id": 3, "status": "running", "epochs_run": 1})

    client, _ = make(handler)
    for poll in (None, 0.01):
        with pytest.raises(TimeoutError) as info:
            client.wait([3, 4], poll=poll, timeout=0)
        assert str(info.value) == "experiments 3, 4 not final after 0s"
