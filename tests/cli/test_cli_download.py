"""`glidepath download`, `glidepath delete` and the attempts in `glidepath show`, in-process
(CliRunner against the TestClient, as test_cli_commands.py), with a run trained in-process."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.artifacts import service as artifacts
from service.cli import app
from service.client import ApiError, Client
from worker.runs.lifecycle import run_experiment

IRIS: dict[str, Any] = {
    "name": "cli-download",
    "dataset": "iris",
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1},
    "model": {"type": "mlp", "hidden": [8]},
    "base_lr": 0.05,
    "epochs": 2,
    "batch_size": 16,
    "device": "cpu",
}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A folder of its own (tmp_path also holds the embedded backend's data)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def finished(client: TestClient) -> int:
    created = client.post("/v1/experiments", json=IRIS)
    assert created.status_code == 201, created.text
    exp_id = int(created.json()["id"])
    assert run_experiment(exp_id, owner="cli-host:7").status == "succeeded"
    return exp_id


def test_download_writes_the_model_and_prints_its_path_and_size(
    cli: CliRunner,
    client: TestClient,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exp_id = finished(client)
    target = out / "m.safetensors"
    got = cli.invoke(app, ["download", str(exp_id), "-o", str(target)])
    assert got.exit_code == 0, got.output
    data = target.read_bytes()
    assert got.stdout.startswith(str(target)) and f"{len(data):,} bytes" in got.stdout
    assert hashlib.sha256(data).hexdigest() == client.get(
        f"/v1/experiments/{exp_id}").json()["model"]["sha256"]  # fmt: skip
    assert safetensors.torch.load(data)  # tensors
    assert [p.name for p in out.iterdir()] == ["m.safetensors"]  # no .part left

    monkeypatch.chdir(out)  # the default name, in the current folder
    assert cli.invoke(app, ["download", str(exp_id)]).exit_code == 0
    assert (out / f"experiment-{exp_id}.safetensors").read_bytes() == data

    # -o a folder: the default name in it (it downloaded, then failed to rename onto the folder)
    folder = out / "models"
    folder.mkdir()
    got = cli.invoke(app, ["download", str(exp_id), "-o", str(folder)])
    assert got.exit_code == 0, got.output
    assert (folder / f"experiment-{exp_id}.safetensors").read_bytes() == data

    shown = cli.invoke(app, ["show", str(exp_id)])
    assert shown.exit_code == 0
    assert "attempts" in shown.stdout and "cli-host:7" in shown.stdout
    assert "succeeded" in shown.stdout and f"glidepath download {exp_id}" in shown.stdout


def test_the_client_reads_a_runs_metrics_as_csv(client: TestClient) -> None:
    """`Client.metrics_csv`: the export's text, a header then a row per epoch, the numbers
    the metrics page gives."""
    exp_id = finished(client)
    text = Client(http=client, retries=0).metrics_csv(exp_id)
    rows = list(csv.DictReader(io.StringIO(text)))
    page = client.get(f"/v1/experiments/{exp_id}/metrics").json()["epochs"]
    assert [int(r["epoch"]) for r in rows] == [p["epoch"] for p in page] == [1, 2]
    assert [float(r["val_loss"]) for r in rows] == [p["val_loss"] for p in page]


def test_a_model_already_downloaded_is_not_fetched_again(client: TestClient, out: Path) -> None:
    """The file there is sent as If-None-Match: the same bytes are kept as they are (a 304), a
    file that differs is replaced by the model."""
    exp_id = finished(client)
    gp = Client(http=client, retries=0)
    target = gp.download_model(exp_id, out)
    model, first = target.read_bytes(), target.stat()
    assert gp.download_model(exp_id, out) == target
    again = target.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # untouched
    target.write_bytes(b"an older model")
    assert gp.download_model(exp_id, target).read_bytes() == model


def test_download_of_a_run_without_a_model_says_why_and_writes_nothing(
    cli: CliRunner,
    client: TestClient,
    out: Path,
) -> None:
    queued = int(client.post("/v1/experiments", json=IRIS).json()["id"])
    target = out / "none.safetensors"
    got = cli.invoke(app, ["download", str(queued), "-o", str(target)])
    assert got.exit_code == 2 and "HTTP 409" in got.stderr and "queued" in got.stderr
    assert not target.exists() and os.listdir(out) == []
    assert cli.invoke(app, ["download", "999999", "-o", str(target)]).exit_code == 4


def test_a_transfer_that_does_not_match_its_etag_leaves_no_file(
    client: TestClient, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp_id = finished(client)
    good = artifacts.store().get_bytes(artifacts.model_key(exp_id))
    gp = Client(http=client, retries=1, sleep=lambda _s: None)
    real = client.stream

    @contextlib.contextmanager
    def garbled(*args: Any, **kwargs: Any) -> Iterator[Any]:
        """The body as sent, under an ETag it does not hash to (bytes changed on the way)."""
        with real(*args, **kwargs) as response:
            response.headers["ETag"] = f'"{"0" * 64}"'
            yield response

    monkeypatch.setattr(client, "stream", garbled)
    with pytest.raises(ApiError) as raised:
        gp.download_model(exp_id, out / "bad.safetensors")
    assert raised.value.detail[0]["type"] == "corrupt_download"
    assert os.listdir(out) == []  # retried once, then nothing written
    monkeypatch.undo()
    assert gp.download_model(exp_id, out / "ok.safetensors").read_bytes() == good


def test_delete_asks_first_refuses_live_runs_and_deletes_ended_ones(
    cli: CliRunner,
    client: TestClient,
) -> None:
    done = finished(client)
    queued = int(client.post("/v1/experiments", json=IRIS).json()["id"])

    declined = cli.invoke(app, ["delete", str(done)], input="n\n")
    assert declined.exit_code == 2 and "nothing deleted" in declined.stderr
    no_answer = cli.invoke(app, ["delete", str(done)], input="")
    assert no_answer.exit_code == 2
    assert client.get(f"/v1/experiments/{done}").status_code == 200

    got = cli.invoke(app, ["delete", str(queued), str(done)], input="y\n")
    assert got.exit_code == 2, got.output  # the queued one was refused
    assert "cancel it first" in got.stderr and f"{done}: deleted" in got.stdout
    assert client.get(f"/v1/experiments/{done}").status_code == 404
    assert not artifacts.store().exists(artifacts.model_key(done))
    assert client.get(f"/v1/experiments/{queued}").json()["status"] == "queued"

    assert cli.invoke(app, ["cancel", str(queued)]).exit_code == 0
    again = cli.invoke(app, ["delete", str(queued), "--yes"])
    assert again.exit_code == 0 and again.stdout == f"{queued}: deleted\n"
    assert cli.invoke(app, ["delete", str(queued), "--yes"]).exit_code == 4
