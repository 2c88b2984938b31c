"""Choose the "not found" threshold from the signals ``make eval`` wrote (``signals.jsonl``).

For each rule it prints the highest threshold that declines at most 5% of the answerable
questions, and how many unanswerable ones that threshold declines:

* ``confidence``: :meth:`pdfqa.retrieval.Signals.confidence` below the threshold;
* ``similarity``: the best passage's cosine similarity alone below the threshold.

    python -m eval.calibrate data/eval/signals.jsonl [--set mmlongbench-dev]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from pdfqa.retrieval import Signals

MAX_ANSWERABLE_DECLINED = 0.05

Rule = Callable[[Signals], float]


RULES: dict[str, Rule] = {
    "similarity": lambda s: s.similarity,
    "confidence": lambda s: s.confidence(),
}


def choose(answerable: Sequence[float], unanswerable: Sequence[float]) -> tuple[float, int, int]:
    """The highest threshold declining at most 5% of ``answerable``: (t, declined a, declined u)."""
    best = (0.0, 0, 0)
    for t in sorted({0.0, *answerable, *unanswerable}):
        a = sum(1 for x in answerable if x < t)
        if a > MAX_ANSWERABLE_DECLINED * len(answerable):
            break
        best = (t, a, sum(1 for x in unanswerable if x < t))
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("signals", type=Path)
    parser.add_argument("--set", default="mmlongbench-dev")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.signals.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["set"] == args.set]
    fields = set(Signals.__struct_fields__)
    pairs = [
        (
            bool(r["answerable"]),
            msgspec.convert({k: v for k, v in r.items() if k in fields}, Signals),
        )
        for r in rows
    ]
    n_a = sum(1 for a, _ in pairs if a)
    n_u = len(pairs) - n_a
    print(f"{args.set}: {n_a} answerable, {n_u} unanswerable")
    for name, rule in RULES.items():
        t, a, u = choose([rule(s) for ok, s in pairs if ok], [rule(s) for ok, s in pairs if not ok])
        print(
            f"  {name:<36} threshold {t:.4f}: answerable declined {a}/{n_a} ({a / n_a:.1%}),"
            f" unanswerable declined {u}/{n_u} ({u / max(1, n_u):.1%})"
        )


if __name__ == "__main__":
    main()
