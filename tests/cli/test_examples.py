"""Every file in examples/ parses, is classified as its README says, and is accepted by the API
(each spec by POST /v1/experiments, each whole file by the endpoint `glidepath submit` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.client import ApiError, Client, load_submission

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))
SWEEPS = {"sweep-grid.yaml", "sweep-random.yaml", "sweep-coarse-to-fine.yaml", "sweep-pruned.yaml"}
KINDS = {"batch.yaml": "batch", "lr-range-test.yaml": "range_test"} | dict.fromkeys(SWEEPS, "sweep")
# How many experiments each multi-run file queues (coarse-to-fine: stage 1, one per decade).
RUNS = {
    "batch.yaml": 3,
    "sweep-grid.yaml": 6,
    "sweep-random.yaml": 6,
    "sweep-coarse-to-fine.yaml": 6,
    "sweep-pruned.yaml": 9,
}


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_the_examples_cover_every_kind_and_scheduler_family() -> None:
    assert len(FILES) >= 12
    readme = (EXAMPLES / "README.md").read_text()
    for f in FILES:
        assert f"examples/{f.name}" in readme, f"{f.name} is not listed in examples/README.md"
    schedulers = set()
    for f in FILES:
        for spec in load_submission(f).specs():
            schedulers.add((spec.get("scheduler") or {}).get("type"))
    assert {
        "MultiStepLR",
        "ExponentialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "OneCycleLR",
        "ReduceLROnPlateau",
        "SequentialLR",
        "LambdaLR",
    } <= schedulers


@pytest.mark.parametrize("path", FILES, ids=ids(FILES))
def test_example_parses_and_is_classified(path: Path) -> None:
    sub = load_submission(path)
    assert sub.kind == KINDS.get(path.name, "experiment")
    specs = sub.specs()
    assert specs, "holds no spec"
    for spec in specs:
        assert spec.get("dataset", "digits") == "digits"
        assert spec.get("epochs", 20) <= 30
        assert spec.get("model", {}).get("hidden", [64]) == [64]


def test_every_spec_in_the_examples_validates(client: TestClient) -> None:
    """Each spec a file holds (a batch's, a sweep's base, a range test's) through
    POST /v1/experiments: one app per backend for all files keeps this quick."""
    failures = []
    for path in FILES:
        for i, spec in enumerate(load_submission(path).specs()):
            r = client.post("/v1/experiments", json=spec)
            if r.status_code != 201:
                failures.append(f"{path.name} spec {i}: {r.status_code} {r.text}")
    assert not failures, "\n".join(failures)


def test_each_endpoint_accepts_its_examples(client: TestClient) -> None:
    """Each whole file through the endpoint `glidepath submit` sends it to."""
    gp = Client(http=client, retries=0)
    failures = []
    for path in FILES:
        sub = load_submission(path)
        try:
            if sub.kind == "experiment":
                assert gp.create_experiment(sub.body)["status"] == "queued"
            elif sub.kind == "batch":
                assert len(gp.create_batch(sub.body)["ids"]) == RUNS[path.name]
            elif sub.kind == "sweep":
                created = gp.create_sweep(sub.body)
                assert len(created["ids"]) == RUNS[path.name], created
                sweep = gp.get_sweep(created["sweep_id"])
                assert sweep["status"] == "running" and sweep["strategy"] == sub.body["strategy"]
            else:
                test = gp.create_range_test(sub.body)
                assert test["status"] == "queued"
                assert gp.get_range_test(test["id"])["steps"] == sub.body["steps"]
        except (ApiError, AssertionError) as exc:
            failures.append(f"{path.name} ({sub.endpoint}): {exc!r}")
    assert not failures, "\n".join(failures)


SCHEDULES = ["warmup-stable-decay.yaml", "step-then-plateau.yaml", "cosine-warmup-per-step.yaml",
             "lambda.yaml", "schedule-free.yaml"]  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # the schedule, not the store
def test_the_schedule_examples_train_as_the_preview_says(client: TestClient) -> None:
    """Each schedule example trains to the end (in-process, digits) and records, epoch by epoch,
    the LR the preview gives for its schedule (and, for the plateau, its recorded val_loss)."""
    from worker.runs.lifecycle import run_experiment

    for name in SCHEDULES:
        spec = load_submission(EXAMPLES / name).body
        exp = client.post("/v1/experiments", json=spec).json()
        assert run_experiment(exp["id"]).status == "succeeded", name
        done = client.get(f"/v1/experiments/{exp['id']}").json()
        rows = client.get(f"/v1/experiments/{exp['id']}/metrics").json()["epochs"]
        assert done["best_value"] is not None and done["best_value"] < 0.5, name  # it learnt
        if spec["solver"]["type"].endswith("ScheduleFree"):  # its LR is its own: a warmup
            lrs = [r["lr"] for r in rows]
            assert lrs[:5] == sorted(lrs[:5]) and lrs[0] < lrs[4] < lrs[-1]
            assert lrs[-1] == pytest.approx(spec["base_lr"], rel=1e-9)
            continue
        body = {k: spec[k] for k in ("base_lr", "scheduler", "warmup", "solver") if k in spec}
        body |= {"epochs": spec["epochs"], "steps_per_epoch": done["steps_per_epoch"]}
        if "ReduceLROnPlateau" in str(spec):
            body["monitor_values"] = [r["val_loss"] for r in rows]
        preview = client.post("/v1/schedules/preview", json=body).json()
        assert [r["lr"] for r in rows] == preview["lr"], name
