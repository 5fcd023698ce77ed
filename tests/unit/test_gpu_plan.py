"""`glidepath worker --gpus`: which worker processes a machine gets."""

from __future__ import annotations

import pytest

from worker.gpus import plan


def test_one_child_per_gpu_each_seeing_only_its_own() -> None:
    children = plan("all", available=3)
    assert [c.gpu for c in children] == [0, 1, 2]
    assert [c.env()["CUDA_VISIBLE_DEVICES"] for c in children] == ["0", "1", "2"]
    assert all(c.queues == "gpu,auto" for c in children)
    assert len({c.name for c in children}) == 3
    assert plan("1,2", available=3)[1].env()["CUDA_VISIBLE_DEVICES"] == "2"


@pytest.mark.parametrize(("gpus", "available"), [("none", 4), ("auto", 0), ("NONE", 0)])
def test_cpu_machines_and_none_run_one_worker_in_process(gpus: str, available: int) -> None:
    assert plan(gpus, available) == []


@pytest.mark.parametrize(
    ("gpus", "available", "msg"),
    [("all", 0, "no CUDA device"), ("0,0", 2, "distinct"), ("2", 2, "0..1"), ("x", 2, "ids such"),
     ("-1", 2, "0..1"), (",", 2, "distinct")],
)  # fmt: skip
def test_impossible_requests_are_refused_with_a_reason(gpus: str, available: int, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        plan(gpus, available)
