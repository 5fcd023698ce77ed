"""The polls cache's keeper (service/experiments/polls.py `Stamped`): what it keeps is bounded by
a budget (the tails' rows) as well as by a number of runs, the oldest read going first."""

from __future__ import annotations

import asyncio

from service.experiments.polls import Stamped


def test_the_oldest_reads_go_first_once_the_budget_is_spent() -> None:
    async def scenario() -> tuple[list[int], int, str | None]:
        kept: Stamped[str] = Stamped(len, 5)
        for run, value in [(1, "abc"), (2, "de"), (3, "fgh")]:
            await kept.begin(run, (run, 0), 0, lambda v=value: v).task
            await asyncio.sleep(0)  # the read lands (a done callback)
        return list(kept.kept), kept.weight, kept.fresh(3, (3, 0))

    # 3 + 2 fit in 5; the third read's 3 more evict run 1, the oldest.
    assert asyncio.run(scenario()) == ([2, 3], 5, "fgh")


def test_a_read_that_gives_nothing_drops_what_was_kept() -> None:
    async def scenario() -> tuple[list[int], int]:
        kept: Stamped[str] = Stamped(len, 100)
        await kept.begin(1, (0, 0), 0, lambda: "abc").task
        await asyncio.sleep(0)
        await kept.begin(1, (1, 0), 0, lambda: None).task  # e.g. too far behind to keep
        await asyncio.sleep(0)
        return list(kept.kept), kept.weight

    assert asyncio.run(scenario()) == ([], 0)
