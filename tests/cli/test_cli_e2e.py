"""The CLI as a user runs it (`glidepath …` subprocesses) against a real API server and worker,
on the embedded stack and on PostgreSQL + Redis: exit codes and what it prints."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import GLIDEPATH, cli_env, run_cli
from tests.support.stack import Stack, free_port

pytestmark = pytest.mark.integration
# The embedded stack only: the CLI is an HTTP client, and what it prints and exits with does not
# depend on the database behind the API (every command also runs against the in-process API on
# both backends: the `cli` fixture, tests/cli/conftest.py).
EMBEDDED = pytest.mark.parametrize("stack", ["embedded"], indirect=True)

SPEC: dict[str, Any] = {
    "name": "cli-e2e",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [32]},
    "solver": {"type": "SGD", "params": {"momentum": 0.9}},
    "base_lr": 0.1,
    "epochs": 4,
    "batch_size": 64,
    "tags": {"suite": "cli-e2e"},
}


def spec_file(tmp_path: Path, filename: str, **changes: Any) -> str:
    path = tmp_path / filename
    path.write_text(json.dumps({**SPEC, **changes}))
    return str(path)


def queued_id(stdout: str) -> int:
    match = re.search(r"queued experiment (\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


@EMBEDDED
def test_submit_wait_then_show_ls_and_watch_a_finished_run(
    cli_stack: Stack, tmp_path: Path
) -> None:
    url = cli_stack.url
    done = run_cli("submit", spec_file(tmp_path, "ok.json"), "--wait", "--interval", "0.2",
                   "--url", url)  # fmt: skip
    assert done.returncode == 0, done.output + cli_stack.logs()
    exp_id = queued_id(done.stdout)
    # Piped output: a line per status change, then the summary table.
    assert f"{exp_id} cli-e2e: succeeded · 4/4 epochs" in done.stdout
    # ... and the run's final line its last epoch's LR and metrics.
    last = r" · last epoch: lr 0\.1 · train_loss \S+ · val_loss \S+ · val_accuracy [\d.]+\n"
    assert re.search(rf"{exp_id} cli-e2e: succeeded · .*{last}", done.stdout), done.stdout
    assert re.search(rf"│\s+{exp_id} │ cli-e2e\s+│ succeeded │\s+4/4 │", done.stdout), done.stdout

    shown = run_cli("show", str(exp_id), "--json", "--url", url)
    assert shown.returncode == 0
    body = json.loads(shown.stdout)
    assert body["status"] == "succeeded" and body["epochs_run"] == 4 and "decisions" in body

    listed = run_cli("ls", "--tag", "suite:cli-e2e", "--status", "succeeded", "--json",
                     "--url", url)  # fmt: skip
    assert exp_id in [e["id"] for e in json.loads(listed.stdout)["items"]]

    watched = run_cli("watch", str(exp_id), "--url", url)
    assert watched.returncode == 0
    assert [int(e) for e in re.findall(r"epoch\s+(\d+)/4", watched.stdout)] == [1, 2, 3, 4]


@EMBEDDED
def test_watch_follows_a_run_to_its_end(cli_stack: Stack, tmp_path: Path) -> None:
    url = cli_stack.url
    plateau = {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 0,
                                                     "threshold": 0.5}}  # fmt: skip
    f = spec_file(tmp_path, "watch.json", epochs=6, scheduler=plateau)
    exp_id = json.loads(run_cli("submit", f, "--json", "--url", url).stdout)["id"]
    watched = run_cli("watch", str(exp_id), "--interval", "0.2", "--url", url, "--json")
    assert watched.returncode == 0, watched.output
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    epochs = [e["epoch"] for e in events if e["type"] == "epoch"]
    assert epochs == [1, 2, 3, 4, 5, 6]  # each once, in order, across polls
    cuts = [e for e in events if e["type"] == "decision"]
    assert cuts and all(e["kind"] == "reduce_lr" and "val_loss" in e["reason"] for e in cuts)
    assert events[-1]["type"] == "final" and events[-1]["status"] == "succeeded"


@EMBEDDED
def test_a_bad_spec_exits_2_with_the_field_path(cli_stack: Stack, tmp_path: Path) -> None:
    # (A single spec's shape errors: test_cli_commands.py.) Torch-level checks, by index:
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "- {dataset: digits, epochs: 2}\n- {dataset: digits, epochs: 2, solver: {type: Sgd}}\n"
    )
    bad = run_cli("submit", str(batch), "--url", cli_stack.url)
    assert bad.returncode == 2
    assert "body.experiments.1.solver.type: unknown solver 'Sgd'" in bad.stderr


@EMBEDDED
def test_a_diverging_run_makes_wait_exit_1(cli_stack: Stack, tmp_path: Path) -> None:
    f = spec_file(tmp_path, "diverge.json", name="cli-diverge", base_lr=1e6, epochs=5)
    result = run_cli("submit", f, "--wait", "--interval", "0.2", "--url", cli_stack.url)
    assert result.returncode == 1, result.output
    assert "diverged" in result.stdout and "non-finite" in result.stdout


@EMBEDDED
def test_cancel_and_ctrl_c(cli_stack: Stack, tmp_path: Path) -> None:
    url = cli_stack.url
    f = spec_file(tmp_path, "long.json", name="cli-long", epochs=2000)
    exp_id = json.loads(run_cli("submit", f, "--json", "--url", url).stdout)["id"]
    try:
        # Ctrl-C while watching: exit 130, and the run goes on.
        proc = subprocess.Popen(
            [str(GLIDEPATH), "watch", str(exp_id), "--interval", "0.2", "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while not re.search(r"epoch\s+\d+/2000", lines.get(timeout=60)):
                assert time.monotonic() < deadline
        except (queue.Empty, AssertionError):
            proc.kill()
            pytest.fail(f"watch printed no epoch\n{cli_stack.logs()}")
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130
        assert proc.stderr is not None and "interrupted" in proc.stderr.read()

        cancelled = run_cli("cancel", str(exp_id), "--url", url)
        assert cancelled.returncode == 0
        assert f"{exp_id}: " in cancelled.stdout  # cancelled, or requested while running
        assert cli_stack.wait_final(exp_id, timeout=30)["status"] == "cancelled"
        # Following a cancelled run ends, with exit 1.
        assert run_cli("watch", str(exp_id), "--url", url).returncode == 1
    finally:
        with cli_stack.client() as c:  # never leave the shared worker busy
            c.post(f"/v1/experiments/{exp_id}/cancel")


@EMBEDDED
def test_sweep_from_stdin_and_range_test_wait(cli_stack: Stack, tmp_path: Path) -> None:
    url = cli_stack.url
    sweep = {
        "name": "cli-sweep",
        "base": {**SPEC, "epochs": 2},
        "strategy": "grid",
        "parameters": {"base_lr": [0.05, 0.2]},
    }
    result = run_cli("submit", "-", "--wait", "--interval", "0.2", "--url", url,
                     stdin=json.dumps(sweep))  # fmt: skip
    assert result.returncode == 0, result.output + cli_stack.logs()
    assert "leaderboard (val_loss, min)" in result.stdout
    assert re.search(r"best: experiment \d+ \(base_lr=0\.\d+\) val_loss", result.stdout)

    rt = tmp_path / "rt.yaml"
    rt.write_text(
        "lr_range_test:\n"
        "  spec: {dataset: digits, model: {type: mlp, hidden: [32]}, batch_size: 64}\n"
        "  min_lr: 1e-4\n  max_lr: 10\n  steps: 60\n"
    )
    result = run_cli("submit", str(rt), "--wait", "--interval", "0.2", "--url", url, "--json")
    assert result.returncode in (0, 1), result.output
    body = json.loads(result.stdout)
    assert body["status"] == "succeeded" and body["points"]
    assert (result.returncode == 0) == (body["suggested_lr"] is not None)


@EMBEDDED
def test_unknown_id_exits_4(cli_stack: Stack) -> None:
    result = run_cli("sweep", "show", "99999", "--url", cli_stack.url)
    assert result.returncode == 4, result.output
    assert "HTTP 404 from GET /v1/sweeps/99999" in result.stderr


def test_unreachable_service_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_cli("ls", "--url", url)
    assert result.returncode == 3
    assert f"cannot reach the service at {url}" in result.stderr
    assert time.monotonic() - started < 15  # a few retries with backoff, then it gives up
