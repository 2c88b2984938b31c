"""Verify the retrieval evaluation question set against the PDFs it refers to.

Reads ``eval/questions.jsonl`` (or the path given as the first argument), extracts the
text of every referenced document once with pypdfium2, and checks each question:

* the record has the expected fields, a known ``kind`` and a unique ``id``;
* ``doc`` exists under the corpus directory (``/work/shared/corpus`` by default, or
  ``$PDFQA_EVAL_CORPUS``, or the second argument);
* every listed page is within the document (pages are 1-based, page 1 = first page);
* for answerable questions, the evidence (lowercased, whitespace collapsed) occurs on at
  least one listed page;
* unanswerable questions have no pages and no evidence;
* a short ``answer`` (a list of acceptable forms: "17.5 billion" or "17,455") has one form
  written, as whole words (:mod:`eval.answers`), on a listed page.

Prints a summary and exits with status 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pypdfium2 as pdfium

from eval.answers import contains, normalize

DEFAULT_QUESTIONS = Path(__file__).resolve().parent / "questions.jsonl"
DEFAULT_CORPUS = Path(os.environ.get("PDFQA_EVAL_CORPUS", "/work/shared/corpus"))
KINDS = {"fact", "table", "unanswerable", "multi"}
REQUIRED = ("id", "doc", "question", "pages", "evidence", "kind")


def normalise(text: str) -> str:
    """Lowercase and collapse all whitespace runs to single spaces."""
    return " ".join(text.lower().split())


def page_texts(path: Path) -> list[str]:
    """Return the normalised text of every page of the PDF at ``path``."""
    doc = pdfium.PdfDocument(str(path))
    try:
        texts: list[str] = []
        for index in range(len(doc)):
            page = doc[index]
            textpage = page.get_textpage()
            try:
                texts.append(normalise(textpage.get_text_range()))
            finally:
                textpage.close()
                page.close()
        return texts
    finally:
        doc.close()


def load_questions(path: Path) -> list[dict[str, object]]:
    """Parse the JSONL file, skipping blank lines."""
    records: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{line_no}: invalid JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise SystemExit(f"{path}:{line_no}: expected a JSON object")
            record["_line"] = line_no
            records.append(record)
    return records


def check(records: list[dict[str, object]], corpus: Path) -> list[str]:
    """Return a list of failure messages (empty when everything passes)."""
    failures: list[str] = []
    cache: dict[str, list[str] | None] = {}
    seen_ids: set[str] = set()

    for record in records:
        where = f"line {record['_line']} ({record.get('id', '?')})"
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            failures.append(f"{where}: missing fields {missing}")
            continue
        qid, doc, pages = str(record["id"]), str(record["doc"]), record["pages"]
        evidence, kind = str(record["evidence"]), str(record["kind"])
        if qid in seen_ids:
            failures.append(f"{where}: duplicate id")
        seen_ids.add(qid)
        if kind not in KINDS:
            failures.append(f"{where}: unknown kind {kind!r}")
        if not str(record["question"]).strip():
            failures.append(f"{where}: empty question")
        if not isinstance(pages, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in pages
        ):
            failures.append(f"{where}: pages must be a list of integers")
            continue

        if doc not in cache:
            path = corpus / doc
            if "/" in doc or not path.is_file():
                cache[doc] = None
            else:
                cache[doc] = page_texts(path)
        texts = cache[doc]
        if texts is None:
            failures.append(f"{where}: document {doc!r} not found in {corpus}")
            continue

        bad_pages = [p for p in pages if not 1 <= p <= len(texts)]
        if bad_pages:
            failures.append(f"{where}: pages {bad_pages} out of range 1..{len(texts)}")
            continue

        if kind == "unanswerable":
            if pages or evidence.strip():
                failures.append(f"{where}: unanswerable question must have no pages/evidence")
            continue
        if not pages:
            failures.append(f"{where}: answerable question lists no pages")
            continue
        needle = normalise(evidence)
        if not needle:
            failures.append(f"{where}: empty evidence")
            continue
        if not any(needle in texts[p - 1] for p in pages):
            found = [i + 1 for i, text in enumerate(texts) if needle in text]
            hint = f" (found on pages {found})" if found else " (not found anywhere)"
            failures.append(f"{where}: evidence not on listed pages {pages}{hint}")
        forms = record.get("answer")
        if forms is not None and not (
            isinstance(forms, list)
            and forms
            and any(contains(texts[p - 1], [normalize(str(f))]) for f in forms for p in pages)
        ):
            failures.append(f"{where}: no form of the answer {forms!r} on pages {pages}")
    return failures


def summarise(records: list[dict[str, object]]) -> str:
    """Counts of questions per document and per kind."""
    per_doc = Counter(str(r.get("doc")) for r in records)
    per_kind = Counter(str(r.get("kind")) for r in records)
    per_doc_kind = Counter((str(r.get("doc")), str(r.get("kind"))) for r in records)
    lines = [f"{len(records)} questions"]
    for doc, total in sorted(per_doc.items()):
        kinds = ", ".join(
            f"{kind}={per_doc_kind[(doc, kind)]}"
            for kind in sorted(KINDS)
            if per_doc_kind[(doc, kind)]
        )
        lines.append(f"  {doc:24s} {total:3d}  ({kinds})")
    lines.append("  by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(per_kind.items())))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    questions = Path(argv[1]) if len(argv) > 1 else DEFAULT_QUESTIONS
    corpus = Path(argv[2]) if len(argv) > 2 else DEFAULT_CORPUS
    records = load_questions(questions)
    failures = check(records, corpus)
    print(summarise(records))
    if failures:
        print(f"\nFAILED: {len(failures)} problem(s)")
        for message in failures:
            print("  " + message)
        return 1
    print("\nOK: all questions verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
