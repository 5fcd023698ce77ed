"""A pruned sweep's page in a real browser, the sweep trained by the real worker: the pruner's
rung table, its decisions with their sentences, the epochs saved, and pruned runs marked."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

BASE: dict[str, Any] = {"dataset": "iris", "model": {"type": "mlp", "hidden": [8]},
                        "epochs": 9, "batch_size": 32, "seed": 0}  # fmt: skip
LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 0.02, 0.2]


# A page in a browser: the backend changes nothing, so the embedded stack alone.
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_pruned_sweep_page(stack: Stack, page: Any, shot: Any) -> None:
    with stack.client() as c:
        created = c.post("/v1/sweeps", json={
            "name": "browser-pruned", "base": BASE, "strategy": "grid",
            "parameters": {"base_lr": LRS}, "pruner": {"type": "successive_halving"},
        }).json()  # fmt: skip
        sweep_id = created["sweep_id"]
        deadline = time.monotonic() + 90
        while (sweep := c.get(f"/v1/sweeps/{sweep_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, f"{sweep['counts']}\n{stack.logs()}"
            time.sleep(0.1)
    assert sweep["status"] == "finished" and sweep["pruning"]["pruned"] == 8

    page.goto(f"{stack.url}/sweeps/{sweep_id}")
    page.locator('#title [data-status="finished"]').wait_for()
    # Rungs at epochs 1 and 3 (r 1, η 3, 9 epochs): 9 reach the first, 3 go on; then 1 of 3.
    rungs = page.locator("#rungs tbody tr")
    cells = [rungs.nth(i).locator("td").all_inner_texts()[:6] for i in range(rungs.count())]
    assert cells == [["1", "0", "1", "9", "3", "6"], ["1", "0", "3", "3", "1", "2"]]
    # The decisions in the order taken, each with its sentence.
    decisions = page.locator("#sweep-decisions tbody tr")
    assert decisions.count() == 12
    stop = page.locator('#sweep-decisions tr[data-decision="stop"]').first
    assert "is not among the best 3 of 9 at this rung" in stop.inner_text()
    assert page.locator('#sweep-decisions tr[data-decision="continue"]').count() == 4
    saved = page.locator("#epochs-saved").inner_text()
    assert "21 of 81 epochs trained, 60 saved (74% of the sweep unpruned)" in saved
    assert "successive halving" in page.locator("#pruning-rule").inner_text()
    # Pruned runs are marked in the runs table, each saying on hover why it stopped.
    pruned = page.locator("#sweep-runs tr.run-pruned")
    assert pruned.count() == 8
    assert "is not among the best" in (pruned.first.get_attribute("title") or "")
    shot("pruned-sweep")
