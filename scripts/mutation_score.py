"""Print the mutation score of `make mutation` from mutmut's results under mutants/.

Usage: python scripts/mutation_score.py PATTERN... (the mutant-name globs `mutmut run` was given).
Killed: a test failed or timed out on the mutant. Survived: every test passed. Not covered: no
fast test runs the mutated function. The score is killed / (killed + survived + not covered)."""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # mutmut's exit codes for "killed" and "timeout"


def main(patterns: list[str]) -> int:
    counts: Counter[str] = Counter()
    survivors: list[str] = []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if code in KILLED:
                counts["killed"] += 1
            elif code == 0:
                counts["survived"] += 1
                survivors.append(name)
            elif code in (5, 33):
                counts["not covered"] += 1
                survivors.append(name)
            else:
                counts["not checked"] += 1
    total = counts["killed"] + counts["survived"] + counts["not covered"]
    for name in survivors:
        print(f"  alive: {name}")
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    score = counts["killed"] / total if total else 0.0
    print(f"mutation score: {counts['killed']}/{total} killed = {100 * score:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
