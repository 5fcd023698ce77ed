"""The pruning rules as pure functions (service/training/pruning.py): rungs, the keep count,
ties, missing values, the median rule and hyperband's brackets."""

from __future__ import annotations

import math

from service.training import pruning


def test_rungs_are_r_times_eta_to_the_k_below_the_last_epoch() -> None:
    assert pruning.rungs(1, 3, 27) == [1, 3, 9]
    assert pruning.rungs(2, 2, 16) == [2, 4, 8]
    assert pruning.rungs(1, 3, 27, bracket=1) == [3, 9]
    assert pruning.rungs(5, 3, 5) == []
    assert pruning.brackets(1, 3, 27) == 4


def test_successive_halving_keeps_the_best_n_over_eta_ties_to_the_lower_id() -> None:
    values = [(5, 0.3), (2, 0.1), (9, 0.3), (1, None), (4, math.nan), (3, 0.2)]
    verdicts = {v.experiment_id: v for v in
                pruning.successive_halving(values, 3, "min", "val_loss", 3, 1)}  # fmt: skip
    assert {i for i, v in verdicts.items() if not v.stop} == {2, 3}  # ⌊6/3⌋ = 2
    assert verdicts[5].cutoff == 0.2 and verdicts[5].compared == 6
    assert verdicts[5].reason == ("val_loss 0.3 at epoch 3 is not among the best 2 of 6 at this "
                                  "rung (cutoff 0.2): stopped")  # fmt: skip
    one = pruning.successive_halving([(7, 0.5), (8, 0.4)], 3, "max", "val_accuracy", 1, 0)
    assert [v.stop for v in one] == [False, True]  # max(1, ⌊2/3⌋) = 1, highest first
    tie = pruning.successive_halving([(9, 0.5), (4, 0.5), (6, 0.5)], 3, "min", "m", 1, 0)
    assert [v.experiment_id for v in tie if not v.stop] == [4]


def test_asha_compares_with_what_was_recorded_before() -> None:
    first = pruning.asha(1, 0.5, [], 3, "min", "val_loss", 1, 0)
    assert not first.stop and first.compared == 1
    before = [(1, 0.5), (2, 0.4)]
    assert pruning.asha(3, 0.45, before, 3, "min", "val_loss", 1, 0).stop  # keeps 1 of 3
    assert not pruning.asha(3, 0.3, before, 3, "min", "val_loss", 1, 0).stop


def test_median_needs_min_runs_and_stops_only_when_worse() -> None:
    assert pruning.median(1, 0.9, [0.1, 0.2], 3, "min", "val_loss", 4) is None
    v = pruning.median(1, 0.5, [0.1, 0.2, 0.9], 3, "min", "val_loss", 4)
    assert v is not None and v.stop and v.cutoff == 0.2 and v.compared == 4
    kept = pruning.median(1, 0.2, [0.1, 0.2, 0.9], 3, "min", "val_loss", 4)
    assert kept is not None and not kept.stop
    assert pruning.median(1, 0.95, [0.9, 0.8, 0.7], 3, "max", "val_accuracy", 4).stop is False  # type: ignore[union-attr]


def test_hyperband_brackets_are_drawn_in_li_et_als_proportions_and_fixed() -> None:
    assert pruning.bracket_weights(4, 3) == [27, 12, 6, 4]  # s = 3, 2, 1, 0
    draws = [pruning.bracket_of(i, 0, 4, 3) for i in range(2000)]
    assert draws == [pruning.bracket_of(i, 0, 4, 3) for i in range(2000)]
    share = draws.count(0) / len(draws)
    assert abs(share - 27 / 49) < 0.05
