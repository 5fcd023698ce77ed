"""The client commands in-process (Typer's CliRunner) against the API in-process (TestClient):
what they print and their exit codes, without a worker. test_cli_e2e.py runs them for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app

SPEC: dict[str, Any] = {
    "name": "cli-digits",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [16]},
    "base_lr": 0.1,
    "epochs": 3,
    "tags": {"suite": "cli"},
}


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_submit_a_spec_prints_its_id_and_show_ls_cancel_find_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["submit", write(tmp_path, "one.json", SPEC)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("queued experiment ")
    exp_id = int(result.stdout.split()[2])

    shown = cli.invoke(app, ["show", str(exp_id), "--json"])
    assert shown.exit_code == 0
    body = json.loads(shown.stdout)
    assert body["id"] == exp_id and body["status"] == "queued" and body["decisions"] == []
    human = cli.invoke(app, ["show", str(exp_id)])
    assert "cli-digits" in human.stdout and "base_lr: 0.1" in human.stdout  # the spec as YAML

    listed = cli.invoke(app, ["ls", "--tag", "suite:cli", "--status", "queued", "--json"])
    assert [e["id"] for e in json.loads(listed.stdout)["items"]] == [exp_id]
    table = cli.invoke(app, ["ls", "--tag", "suite:cli"])
    assert "cli-digits" in table.stdout and "0/3" in table.stdout

    cancelled = cli.invoke(app, ["cancel", str(exp_id)])
    assert cancelled.exit_code == 0 and cancelled.stdout == f"{exp_id}: cancelled\n"
    assert cli.invoke(app, ["cancel", str(exp_id)]).exit_code == 0  # again: still fine


def test_submit_json_and_idempotency_key(cli: CliRunner, tmp_path: Path) -> None:
    f = write(tmp_path, "one.json", SPEC)
    first = cli.invoke(app, ["submit", f, "--json", "--idempotency-key", "k-1"])
    second = cli.invoke(app, ["submit", f, "--json", "--idempotency-key", "k-1"])
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout)["id"] == json.loads(second.stdout)["id"]


def test_a_batch_from_stdin_and_its_422_paths(cli: CliRunner) -> None:
    ok = cli.invoke(app, ["submit", "-", "--json"], input=json.dumps([SPEC, SPEC]))
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.stdout)["ids"]) == 2

    bad = [SPEC, {**SPEC, "base_lr": -1}, {**SPEC, "epochs": 0}]
    yaml_text = "experiments:\n" + "".join(f"  - {json.dumps(s)}\n" for s in bad)
    result = cli.invoke(app, ["submit", "-"], input=yaml_text)
    assert result.exit_code == 2
    assert "HTTP 422 from POST /v1/batches" in result.stderr
    assert "body.experiments.1.base_lr: Input should be greater than 0" in result.stderr
    assert "body.experiments.2.epochs: Input should be greater than or equal to 1" in result.stderr


def test_bad_files_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    missing = cli.invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    (tmp_path / "broken.yaml").write_text("base_lr: [0.1\n")
    broken = cli.invoke(app, ["submit", str(tmp_path / "broken.yaml")])
    assert broken.exit_code == 2 and "invalid YAML at line" in broken.stderr
    unknown = cli.invoke(app, ["submit", write(tmp_path, "x.json", {**SPEC, "lr": 0.1})])
    assert unknown.exit_code == 2 and "body.lr: unknown field" in unknown.stderr


def refused(result: Any, message: str) -> None:
    """Exit 2 with `message`, and no traceback (CliRunner keeps an escaped exception)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("nan.json", '{"dataset": "digits", "base_lr": NaN}', "nan.json: base_lr: NaN is not"),
        ("big.json", '[{"base_lr": 0.1}, {"base_lr": 1e999}]', "1.base_lr: Infinity is not"),
        ("inf.yaml", "experiments:\n  - {base_lr: 0.1}\n  - {base_lr: -.inf}\n",
         "experiments.1.base_lr: -Infinity is not a number the API accepts"),
        ("sweep.yaml", "base: {dataset: digits}\nstrategy: grid\nparameters: {base_lr: [.NaN]}\n",
         "parameters.base_lr.0: NaN is not"),
        ("rt.yaml", "lr_range_test: {spec: {dataset: digits}, min_lr: .nan, max_lr: 1}\n",
         "lr_range_test.min_lr: NaN is not"),
    ],
)  # fmt: skip
def test_non_finite_numbers_in_a_file_exit_2_naming_the_field(
    cli: CliRunner, tmp_path: Path, name: str, text: str, message: str
) -> None:
    """JSON has no NaN or Infinity (httpx refused to send them: a traceback), and no spec field
    takes one; what the user wrote is named by its path in the file."""
    (tmp_path / name).write_text(text)
    refused(cli.invoke(app, ["submit", str(tmp_path / name)]), message)
    if name == "nan.json":
        refused(cli.invoke(app, ["preview", str(tmp_path / name)]), "base_lr: NaN is not")
        refused(cli.invoke(app, ["submit", "-"], input=text), "<stdin>: base_lr: NaN is not")


def test_yaml_dates_are_sent_as_the_text_written(cli: CliRunner, tmp_path: Path) -> None:
    """YAML 1.1 made `2024-01-01` a date, which JSON cannot carry (a traceback): it is the
    string written, as in YAML 1.2; an explicit `!!timestamp` is sent in ISO form."""
    f = tmp_path / "dated.yaml"
    f.write_text(
        "name: 2024-01-01\ndataset: digits\nepochs: 1\n"
        "tags: {day: 2024-01-01 10:00:00, at: !!timestamp 2024-01-02 03:04:05}\n"
    )
    result = cli.invoke(app, ["submit", str(f), "--json"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["spec"]
    assert spec["name"] == "2024-01-01"
    assert spec["tags"] == {"day": "2024-01-01 10:00:00", "at": "2024-01-02T03:04:05"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "x.yaml: 0: expected a spec (a mapping)"),
        ("3", "got a number"),
        ("'just text'", "got a string"),
        ("a: !!binary aGVsbG8=", "x.yaml: a: binary data (!!binary) is not a JSON value"),
        ("a: !!set {b, c}", "a: a set (!!set) is not a JSON value; write a list"),
        ("a: &x [1, *x]", "a.1: refers to itself"),
        ("[" * 50_000 + "]" * 50_000, "x.yaml: nested too deeply to read"),
    ],
)
def test_files_that_are_not_a_spec_exit_2(
    cli: CliRunner, tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "x.yaml").write_text(text)
    refused(cli.invoke(app, ["submit", str(tmp_path / "x.yaml")]), message)


def test_unreadable_files_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    refused(
        cli.invoke(app, ["submit", str(tmp_path / "latin1.yaml")]),
        "latin1.yaml: cannot read: not UTF-8 text (byte 0xe9 at offset 9)",
    )
    (tmp_path / "dir.yaml").mkdir()
    refused(cli.invoke(app, ["preview", str(tmp_path / "dir.yaml")]), "cannot read: Is a directory")
    refused(cli.invoke(app, ["preview", str(tmp_path / "no.yaml")]), "cannot read: No such file")
    refused(cli.invoke(app, ["submit", "-"], input=b"name: caf\xe9\n"), "<stdin>: cannot read")


def test_unknown_ids_exit_4(cli: CliRunner) -> None:
    for args in (["show", "987654"], ["watch", "987654"], ["cancel", "987654"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 4, (args, result.output)
        assert "HTTP 404" in result.stderr


def test_sweep_and_range_test_submit_and_show(cli: CliRunner, tmp_path: Path) -> None:
    sweep = {
        "name": "cli-grid",
        "base": SPEC,
        "strategy": "grid",
        "parameters": {"base_lr": [0.05, 0.1]},
    }
    created = cli.invoke(app, ["submit", write(tmp_path, "sweep.json", sweep)])
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("queued sweep ")
    sweep_id = created.stdout.split()[2].rstrip(":")
    shown = cli.invoke(app, ["sweep", "show", sweep_id])
    assert shown.exit_code == 0, shown.output
    assert "grid" in shown.stdout and "base_lr=0.05" in shown.stdout
    assert json.loads(cli.invoke(app, ["sweep", "show", sweep_id, "--json"]).stdout)["id"] == int(
        sweep_id
    )
    assert "cli-grid" in cli.invoke(app, ["sweep", "ls"]).stdout

    rt = {"lr_range_test": {"spec": SPEC, "min_lr": 1e-5, "max_lr": 1.0, "steps": 20}}
    created = cli.invoke(app, ["submit", write(tmp_path, "rt.json", rt), "--json"])
    assert created.exit_code == 0, created.output
    rt_id = json.loads(created.stdout)["id"]
    shown = cli.invoke(app, ["range-test", "show", str(rt_id)])
    assert shown.exit_code == 0 and "0/20" in shown.stdout and "suggested lr" in shown.stdout


def test_token_from_option_or_environment(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import settings

    monkeypatch.setattr(settings, "api_tokens", "alpha, beta")
    denied = cli.invoke(app, ["ls"])
    assert denied.exit_code == 2
    assert "HTTP 401" in denied.stderr
    assert "a valid token: --token or GLIDEPATH_TOKEN" in denied.stderr
    assert cli.invoke(app, ["ls", "--token", "alpha"]).exit_code == 0
    assert cli.invoke(app, ["ls"], env={"GLIDEPATH_TOKEN": "beta"}).exit_code == 0


def test_workers_lists_the_registry_with_plugin_versions(cli: CliRunner, plugin_path: Path) -> None:
    from tests.support.plugins import offered_here

    with offered_here(plugin_path) as me:
        human = cli.invoke(app, ["workers"])
        assert human.exit_code == 0, human.output
        assert me.id in human.stdout and "alive" in human.stdout
        assert "model tiny_resnet (glidepath-example-plugin 0.1.0)" in human.stdout
        as_json = json.loads(cli.invoke(app, ["workers", "--json"]).stdout)
        assert [w["plugins"]["datasets"]["shapes"]["version"] for w in as_json] == ["0.1.0"]


def test_preview_draws_a_composed_schedule_and_its_plateau_decisions(cli: CliRunner) -> None:
    """`glidepath preview FILE`: the example's LR per epoch without training, equal to plain
    torch; --monitor values drive the plateau; a sweep file is exit code 2."""
    from service.client import load_submission
    from tests.cli.test_examples import EXAMPLES
    from tests.support.torch_reference import composed_torch_lrs

    wsd = str(EXAMPLES / "warmup-stable-decay.yaml")
    out = cli.invoke(app, ["preview", wsd, "--json"])
    assert out.exit_code == 0, out.output
    expected = composed_torch_lrs(load_submission(wsd).body, 1)
    assert json.loads(out.stdout)["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    human = cli.invoke(app, ["preview", wsd])
    assert "0.01" in human.stdout and "lr ▁" in human.stdout  # the table and a sparkline

    plateau = str(EXAMPLES / "step-then-plateau.yaml")
    values = ",".join(["1.0"] * 14)
    decided = cli.invoke(app, ["preview", plateau, "--monitor", values, "--json"])
    assert decided.exit_code == 0, decided.output
    body = json.loads(decided.stdout)
    assert [d["epoch"] for d in body["decisions"]] == [9, 11, 13]  # patience 1 after epoch 6
    sweep = cli.invoke(app, ["preview", str(EXAMPLES / "sweep-grid.yaml")])
    assert sweep.exit_code == 2 and "one experiment spec" in sweep.output


def test_preview_monitor_non_finite_values_are_null(cli: CliRunner) -> None:
    """--monitor's nan, inf, -inf, 1e999 and null go as null, the API's non-finite metric (JSON
    has no NaN: httpx refused to send it, a traceback); a word that is no number is exit 2."""
    from tests.cli.test_examples import EXAMPLES

    plateau = str(EXAMPLES / "step-then-plateau.yaml")
    for word in ("nan", "inf", "-Infinity", "1e999", "null"):
        out = cli.invoke(app, ["preview", plateau, "--monitor", f"1.0,0.9,{word}", "--json"])
        assert out.exit_code == 0, (word, out.output)
        assert json.loads(out.stdout)["decisions"][-1]["kind"] == "diverged"
        assert json.loads(out.stdout)["decisions"][-1]["epoch"] == 3
    first = cli.invoke(app, ["preview", plateau, "--monitor", "nan"])  # the table and sparkline
    assert first.exit_code == 0, first.output
    refused(
        cli.invoke(app, ["preview", plateau, "--monitor", "1.0,abc"]),
        "--monitor: value 2, 'abc', is not a number",
    )


def test_preview_prints_a_name_that_looks_like_rich_markup(cli: CliRunner, tmp_path: Path) -> None:
    """The table's title is the spec's name as text (`[/x]` raised Rich's MarkupError)."""
    f = write(tmp_path, "odd.json", {"name": "[/x] [bold]odd", "epochs": 2})
    result = cli.invoke(app, ["preview", f])
    assert result.exit_code == 0, result.output
    assert "[/x] [bold]odd" in result.stdout


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "0"])
def test_an_interval_out_of_range_is_a_usage_error(cli: CliRunner, value: str) -> None:
    """inf or 1e300 s overflowed the waits' clock (a traceback) once the run was followed."""
    result = cli.invoke(app, ["watch", "1", "--interval", value])
    assert result.exit_code == 2 and "--interval" in result.output


def test_following_a_batch_whose_run_is_deleted_meanwhile(client: TestClient) -> None:
    """`submit --wait` and `batch show --wait` of a batch: a run that ends and is deleted
    between two polls has left the batch (as its event stream and `GET /v1/batches/{id}` say);
    it was read again by id, a 404 that ended the command with exit 4 while the batch ran on.
    A batch whose runs are all deleted has ended."""
    from service.cli.trackers import ExperimentsTracker
    from service.client import Client

    gp = Client(http=client, retries=0)
    created = gp.create_batch([SPEC, SPEC, SPEC])
    gone, kept, last = created["ids"]
    tracker = ExperimentsTracker(gp, created["ids"], batch_id=created["batch_id"])
    assert [r.status for r in tracker.poll().rows] == ["queued"] * 3

    gp.cancel(gone)
    gp.delete_experiment(gone)
    view = tracker.poll()
    assert [r.id for r in view.rows] == [kept, last] and not view.final

    gp.cancel(kept)
    gp.cancel(last)
    gp.delete_experiment(last)
    view = tracker.poll()
    assert [(r.id, r.status) for r in view.rows] == [(kept, "cancelled")] and view.final
    assert tracker.result()["experiments"][0]["id"] == kept

    gp.delete_experiment(kept)
    assert tracker.poll().final and tracker.result()["experiments"] == []
