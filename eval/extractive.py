"""Replay the extractive answerer over the retrievals ``make eval`` stored, in seconds.

``make eval`` writes every question's retrieval (sources with their contexts) to
``<data>/retrievals.jsonl``; this scores :func:`pdfqa.answer.extractive_answer` on them again
with the code as it is now (no ingestion, no search), by the measures of :mod:`eval.answers`::

    python -m eval.extractive [--data ./data/eval] [--misses] [--set mmlongbench-dev]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from eval.answers import answer_text, gold, holds, short_buckets
from pdfqa.answer import EXTRACTIVE_NOTE, extractive_answer
from pdfqa.retrieval import Retrieval


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("./data/eval"))
    parser.add_argument("--set", default=None, help="one question set only")
    parser.add_argument("--misses", action="store_true", help="print the extractable misses")
    args = parser.parse_args(argv)
    rows: dict[str, list[float]] = defaultdict(list)
    for line in (args.data / "retrievals.jsonl").read_text().splitlines():
        record = json.loads(line)
        if not record["short"] or (args.set and record["set"] != args.set):
            continue
        items = gold(record["answer"], record["answer_format"])
        if items is None:
            continue
        found = msgspec.convert(record["retrieval"], Retrieval)
        said = answer_text(
            extractive_answer(found.query, found.sources, found.confidence, 0.0), EXTRACTIVE_NOTE
        )
        first = said.split("\n\n", 1)[0]
        for bucket in short_buckets(record["set"], record["answer_format"], record["extractable"]):
            rows[f"{bucket}|answer"].append(float(holds(said, items)))
            rows[f"{bucket}|first block"].append(float(holds(first, items)))
        if args.misses and record["extractable"] and not holds(said, items):
            context = " ".join(s.context or s.text for s in found.sources[:5])
            print(f"\n--- {record['question']}\n    gold: {record['answer']!r}")
            print(f"    in the contexts: {holds(context, items)}")
            print("    " + said.strip().replace("\n", "\n    ")[:700])
    for key in sorted(rows):
        values = rows[key]
        print(f"{key:<55}{len(values):>6}{sum(values) / len(values):>9.3f}")


if __name__ == "__main__":
    main()
