"""Read each row of an append-mostly table once: a high-water mark on its integer id, so a scrape
reads only the rows added since the last one.

A mark alone would lose rows on PostgreSQL: a sequence hands out ids when rows are inserted, not
when they are committed, so a worker's epoch with id 41 can commit after another worker's 42
has been read and the mark moved past it. The ids skipped below the mark are kept as gaps and
asked for again at each read until they appear, or until GAP_SECONDS have passed (an id burnt
by a rollback or by an INSERT ... ON CONFLICT that updated never appears). SQLite has one writer,
whose ids commit in order; its gaps are deleted rows, and expire the same way."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

GAP_SECONDS = 120.0  # far longer than any transaction that inserts these rows stays open
# Only the ids this far below the newest row are taken for gaps: the holes further down at the
# first read are rows deleted long ago, not transactions still open.
GAP_WINDOW = 1_000
MAX_GAPS = 1_000  # bounds the IN (...) list asked for at each read

Row = Sequence[Any]  # (id, ...)


@dataclass
class Tail:
    mark: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # id -> when it was first missed

    def read(
        self,
        after: Callable[[int], Sequence[Row]],
        by_ids: Callable[[Collection[int]], Sequence[Row]],
        now: float,
        top: int | None = None,
    ) -> list[Row]:
        """Rows not returned before: `after(mark)` gives those past the mark in id order,
        `by_ids(ids)` those of the given ids that exist. `now`: a monotonic clock. `top`: the
        newest id, when known: none past the mark, no need to ask."""
        found: list[Row] = []
        if self.gaps:
            for row in by_ids(list(self.gaps)):
                if self.gaps.pop(row[0], None) is not None:
                    found.append(row)
            self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_SECONDS}
        new = after(self.mark) if top is None or top > self.mark else []
        if new:
            top = int(new[-1][0])
            present = {int(r[0]) for r in new}
            for i in range(max(self.mark, top - GAP_WINDOW) + 1, top):
                if i not in present:
                    self.gaps[i] = now
            self.mark = top
            if len(self.gaps) > MAX_GAPS:
                keep = sorted(self.gaps)[-MAX_GAPS:]  # the newest ids are the likeliest to come
                self.gaps = {i: self.gaps[i] for i in keep}
            found.extend(new)
        return found


def signature(ids: Collection[int]) -> tuple[int, int, int]:
    """(count, sum, sum of squares) of a set of ids: what the database computes for the set it
    holds (repository.Probe), so that comparing the two says whether the set changed
    without reading it. Different sets can share one ({1, 5, 6} and {2, 3, 7}); a caller only
    reads later what it would have read now, at the next change of the set."""
    return len(ids), sum(ids), sum(i * i for i in ids)
