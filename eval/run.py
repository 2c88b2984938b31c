"""``make eval``: retrieval quality on our question set and on the mmlongbench-dev benchmark.

Every document the questions name is ingested through the real pipeline (``ingest_upload``)
once; ``--data`` keeps the store between runs, and a fingerprint of the code and settings that
shape the stored chunks (extraction, cleanup, chunking, word handling, sparse vectors, the
embedder) re-ingests everything when one of them changed. Each question is then asked through
:func:`pdfqa.retrieval.retrieve`, exactly as a conversation over its one document asks it, and
scored by the benchmark's own measure (``../shared/benchmarks/README.md``):

* **page recall@5**: one of the first five sources' ``page`` (the page its citation shows) is
  an evidence page; **page hit@1**: the first source's ``page`` is;
* **false "not found"**: answerable questions answered "not found"; **unanswerable declined**:
  unanswerable questions answered "not found".

Every question is asked twice: fresh (a conversation of its own) and in **conversation mode**
(each document's questions one after another in one conversation, in file order, each made to
stand alone by :func:`pdfqa.retrieval.standalone_query` as the product does without a model).
Questions that stand on their own should score the same in both. The **follow-up pairs**
(``followups.jsonl``: a question, then one that leans on it, and the pages that answer the
second) check that real follow-ups are still resolved: the second asked after the first against
the second asked alone.

In the same run, the usual tutorial pipeline (pypdf page text, a 1000/200-character recursive
splitter, the same MiniLM, dense top-5, each chunk from one page) answers the same questions;
its embeddings are cached under ``--data``. Ablation rows re-rank the same store with one part
of the retrieval turned off. Figures are printed over the documents that have a text layer
(those pdfqa could ingest) and over all documents (a document that failed counts as misses).
Retrieval is never served from the Redis cache here (``cache=False``): a cached result would
outlive the code that made it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
from bench.ingest import reset_database

from eval.answers import AnswerTally, Gold, answer_text, gold, holds, page_text, short_buckets
from pdfqa.answer import EXTRACTIVE_NOTE, extractive_answer, model_texts
from pdfqa.errors import IngestError
from pdfqa.lifecycle import fail, ingest_upload, ocr_upload
from pdfqa.resources import Resources, open_resources
from pdfqa.retrieval import Retrieval, Tuning, embed_query, retrieve, standalone_query
from pdfqa.settings import Settings, load_settings
from pdfqa.store import uploads, users

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
BENCHMARK = SHARED / "benchmarks" / "mmlongbench-dev"
FINGERPRINTED = (
    "extract/pages.py",
    "extract/tables.py",
    "extract/ocr.py",
    "cleanup.py",
    "chunking.py",
    "words.py",
    "sparse.py",
    "ingest.py",
)
K = 5
CONVERSATION = "pdfqa conversation"
"""The row of conversation mode."""


class Question(msgspec.Struct, frozen=True):
    set: str
    doc: str
    path: Path
    question: str
    pages: list[int]
    answerable: bool
    kind: str
    answer: str = ""
    answer_format: str = ""


def own_questions(path: Path) -> list[Question]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            q = json.loads(line)
            out.append(
                Question(
                    set="own",
                    doc=q["doc"],
                    path=CORPUS / q["doc"],
                    question=q["question"],
                    pages=q["pages"],
                    answerable=bool(q["pages"]),
                    kind=q["kind"],
                    answer=json.dumps(q["answer"]) if "answer" in q else "",
                    answer_format="Any" if "answer" in q else "",
                )
            )
    return out


class FollowUp(msgspec.Struct, frozen=True):
    doc: str
    first: str
    then: str
    pages: list[int]


def follow_ups(path: Path) -> list[FollowUp]:
    return [
        msgspec.json.decode(line, type=FollowUp)
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def benchmark_questions(root: Path) -> list[Question]:
    out = []
    for line in (root / "questions.jsonl").read_text().splitlines():
        if line.strip():
            q = json.loads(line)
            out.append(
                Question(
                    set="mmlongbench-dev",
                    doc=q["doc"],
                    path=root / "pdfs" / q["doc"],
                    question=q["question"],
                    pages=q["evidence_pages"],
                    answerable=bool(q["answerable"]),
                    kind=q["doc_type"].split("/")[0].strip(),
                    answer=str(q["answer"]),
                    answer_format=q["answer_format"],
                )
            )
    return out


# -- pdfqa ------------------------------------------------------------------------------------


def fingerprint(settings: Settings) -> str:
    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        path = ROOT / "src" / "pdfqa" / name
        if path.exists():
            digest.update(path.read_bytes())
    for field in (
        "chunk_tokens",
        "chunk_overlap_tokens",
        "extract_tables",
        "embedding_provider",
    ):
        digest.update(repr(getattr(settings, field)).encode())
    return digest.hexdigest()[:16]


async def ingest_all(
    res: Resources, docs: dict[str, Path], *, skip_missing: bool = False
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """The eval user's ready uploads by document name, ingesting the ones not there yet."""
    async with res.db.acquire() as conn:
        row = await conn.fetchrow("SELECT id FROM users WHERE email = 'eval@pdfqa.local'")
        if row is None:
            user = await users.create_user(conn, uuid.uuid4(), "eval@pdfqa.local", "-")
            user_id = user.id
        else:
            user_id = row["id"]
        have = {u.name: u for u in await uploads.list_for_user(conn, user_id, limit=10_000)}
    ids: dict[str, uuid.UUID] = {}
    for name, path in sorted(docs.items(), key=lambda item: item[1].stat().st_size):
        known = have.get(name)
        if known is not None and known.status == "ready":
            ids[name] = known.id
            continue
        if known is not None and known.status == "failed":
            continue  # nothing legible even with OCR: it counts as misses
        if skip_missing:
            continue
        if known is not None:  # an earlier run was interrupted mid-way: start it again
            async with res.db.acquire() as conn:
                await conn.execute("DELETE FROM uploads WHERE id = $1", known.id)
        upload_id = uuid.uuid4()
        writer = await res.files.writer(str(upload_id))
        await writer.write(await asyncio.to_thread(path.read_bytes))
        stored = await writer.commit()
        async with res.db.acquire() as conn:
            await uploads.insert(
                conn,
                upload_id=upload_id,
                user_id=user_id,
                name=name,
                size=stored.size,
                sha256=stored.sha256,
                job_id=f"eval:{upload_id}",
            )
        t0 = time.perf_counter()
        try:
            result = await ingest_upload(res, upload_id)
            if result.status == "processing":  # pages handed to OCR: run that job too
                result = await ocr_upload(res, upload_id)
        except IngestError as err:  # the job runner records it so; so does the eval
            result = await fail(res, upload_id, str(err))
        took = time.perf_counter() - t0
        print(
            f"  {name}: {result.status}, {result.pages_total} pages, {result.chunks} chunks, "
            f"{took:.1f} s{'' if result.error is None else ' (' + result.error[:60] + ')'}"
            + ("" if result.times is None else f" (embedding {result.times.embed:.1f} s)"),
            flush=True,
        )
        if result.status == "ready":
            ids[name] = upload_id
    return user_id, ids


# -- the tutorial pipeline --------------------------------------------------------------------


def recursive_split(text: str, size: int = 1000, overlap: int = 200) -> list[str]:
    """LangChain's RecursiveCharacterTextSplitter (separators "\\n\\n", "\\n", " ", "")."""

    def split(text: str, separators: Sequence[str]) -> list[str]:
        sep = separators[-1]
        rest: Sequence[str] = []
        for i, s in enumerate(separators):
            if s == "" or s in text:
                sep, rest = s, separators[i + 1 :]
                break
        parts = [p for p in (text.split(sep) if sep else list(text)) if p]
        chunks: list[str] = []
        good: list[str] = []
        for part in parts:
            if len(part) < size:
                good.append(part)
                continue
            if good:
                chunks.extend(merge(good, sep))
                good = []
            chunks.extend(split(part, rest) if rest else [part])
        if good:
            chunks.extend(merge(good, sep))
        return chunks

    def merge(parts: list[str], sep: str) -> list[str]:
        docs: list[str] = []
        current: list[str] = []
        total = 0
        for part in parts:
            extra = len(sep) if current else 0
            if total + len(part) + extra > size and current:
                doc = sep.join(current).strip()
                if doc:
                    docs.append(doc)
                while total > overlap or (total + len(part) + extra > size and total > 0):
                    total -= len(current[0]) + (len(sep) if len(current) > 1 else 0)
                    current.pop(0)
                    extra = len(sep) if current else 0
            current.append(part)
            total += len(part) + (len(sep) if len(current) > 1 else 0)
        doc = sep.join(current).strip()
        if doc:
            docs.append(doc)
        return docs

    return split(text, ["\n\n", "\n", " ", ""])


class Tutorial:
    """pypdf + 1000/200 splitter + MiniLM dense top-5, each chunk from one page."""

    def __init__(self, res: Resources, cache: Path) -> None:
        self.res = res
        self.cache = cache
        self.docs: dict[str, tuple[np.ndarray, list[int]]] = {}
        self.texts: dict[str, list[str]] = {}

    async def load(self, name: str, path: Path) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(await asyncio.to_thread(path.read_bytes)).hexdigest()[:16]
        file = self.cache / f"{key}.npz"
        texts_file = self.cache / f"{key}.texts.json"
        if file.exists():
            data = np.load(file)
            self.docs[name] = (data["vectors"], data["pages"].tolist())
            if not texts_file.exists():  # made before the texts were kept: no embedding needed
                texts, _ = await asyncio.to_thread(_tutorial_chunks, path)
                texts_file.write_text(json.dumps(texts))
            self.texts[name] = json.loads(texts_file.read_text())
            return
        texts, pages = await asyncio.to_thread(_tutorial_chunks, path)
        texts_file.write_text(json.dumps(texts))
        self.texts[name] = texts
        vectors = np.zeros((0, self.res.embedder.dimensions), dtype=np.float32)
        if texts:
            batches = [
                await self.res.embedder.embed_documents(texts[i : i + 64])
                for i in range(0, len(texts), 64)
            ]
            vectors = np.asarray([v for b in batches for v in b], dtype=np.float32)
        np.savez(file, vectors=vectors, pages=np.asarray(pages, dtype=np.int32))
        self.docs[name] = (vectors, pages)

    def pages(self, name: str, query: list[float]) -> list[int]:
        return [page for page, _ in self.top(name, query)]

    def top(self, name: str, query: list[float]) -> list[tuple[int, str]]:
        """The first ``K`` chunks: their pages and texts."""
        vectors, pages = self.docs.get(name, (np.zeros((0, 1)), []))
        if not pages:
            return []
        scores = vectors @ np.asarray(query, dtype=np.float32)
        texts = self.texts.get(name, [""] * len(pages))
        return [(pages[i], texts[i]) for i in np.argsort(-scores)[:K]]


def _tutorial_chunks(path: Path) -> tuple[list[str], list[int]]:
    import pypdf

    texts: list[str] = []
    pages: list[int] = []
    try:
        reader = pypdf.PdfReader(str(path))
        for number, page in enumerate(reader.pages, start=1):
            for chunk in recursive_split(page.extract_text() or ""):
                texts.append(chunk)
                pages.append(number)
    except Exception as err:  # the tutorial pipeline fails on this document: all misses
        print(f"  tutorial pipeline: {path.name}: {type(err).__name__}", flush=True)
    return texts, pages


# -- scoring ----------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.recall: dict[str, list[float]] = defaultdict(list)
        self.hit1: dict[str, list[float]] = defaultdict(list)

    def add(self, buckets: Sequence[str], evidence: Sequence[int], pages: Sequence[int]) -> None:
        top = list(pages[:K])
        for bucket in buckets:
            self.recall[bucket].append(float(bool(set(top) & set(evidence))))
            self.hit1[bucket].append(float(bool(top) and top[0] in evidence))

    def row(self, bucket: str) -> tuple[int, float, float]:
        r = self.recall.get(bucket, [])
        h = self.hit1.get(bucket, [])
        return len(r), (sum(r) / len(r) if r else 0.0), (sum(h) / len(h) if h else 0.0)


def source_pages(found: Retrieval) -> list[int]:
    return [s.page for s in found.sources]


async def evaluate(
    settings: Settings,
    questions: list[Question],
    data: Path,
    *,
    sweep: bool = False,
    with_tutorial: bool = True,
    skip_missing: bool = False,
    pairs: Sequence[FollowUp] = (),
) -> None:
    docs = {q.doc: q.path for q in questions}
    started = time.perf_counter()
    async with open_resources(settings) as res:
        print(f"ingesting what is missing of {len(docs)} documents", flush=True)
        user_id, ids = await ingest_all(res, docs, skip_missing=skip_missing)
        if skip_missing:
            async with res.db.acquire() as conn:
                rows = await conn.fetch("SELECT name FROM uploads WHERE status = 'failed'")
            kept = set(ids) | {r["name"] for r in rows}
            questions = [q for q in questions if q.doc in kept]
            docs = {q.doc: q.path for q in questions}
            print(f"--skip-missing: {len(docs)} documents, {len(questions)} questions", flush=True)
        t_ingest = time.perf_counter() - started
        tutorial = Tutorial(res, data / "tutorial")
        for name, path in sorted(docs.items(), key=lambda item: item[1].stat().st_size):
            if with_tutorial:
                await tutorial.load(name, path)

        base = Tuning.from_settings(settings)
        variants: dict[str, Tuning] = {
            "pdfqa": base,
            "- dense only": msgspec.structs.replace(base, mode="dense"),
            "- sparse only": msgspec.structs.replace(base, mode="sparse"),
            "- pages not distinct": msgspec.structs.replace(base, distinct_pages=False),
            "- page support 0": msgspec.structs.replace(base, page_support=0.0),
            "- named pages off": msgspec.structs.replace(base, named_pages=False),
        }
        if res.reranker is not None:  # PDFQA_RERANK_MODEL: what the reranker adds
            variants["- rerank off"] = msgspec.structs.replace(base, rerank=False)
        if sweep:
            for dw, sw in ((1.0, 1.5), (1.5, 1.0), (1.0, 2.0), (2.0, 1.0)):
                variants[f"weights {dw:g}:{sw:g}"] = msgspec.structs.replace(
                    base, dense_weight=dw, sparse_weight=sw
                )
            for support in (0.25, 1.0):
                variants[f"page support {support:g}"] = msgspec.structs.replace(
                    base, page_support=support
                )
            for prefetch in (10, 20, 80):
                variants[f"prefetch {prefetch}"] = msgspec.structs.replace(base, prefetch=prefetch)
        tallies = {name: Tally() for name in [*variants, CONVERSATION, "tutorial"]}
        verdicts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        confidences: list[tuple[str, bool, float]] = []
        answers = AnswerTally()
        dump: list[dict[str, object]] = []
        features: list[dict[str, object]] = []
        outcomes: list[dict[str, object]] = []
        for q in questions:
            ready = q.doc in ids
            buckets_all = [f"{q.set}|all docs", f"{q.set}|kind {q.kind}|all docs"]
            buckets = buckets_all + (
                [f"{q.set}|text docs", f"{q.set}|kind {q.kind}|text docs"] if ready else []
            )
            dense = await embed_query(res, q.question)
            outcome: dict[str, object] = {
                "set": q.set,
                "doc": q.doc,
                "kind": q.kind,
                "question": q.question,
                "evidence": q.pages,
                "ready": ready,
            }
            outcomes.append(outcome)
            items, short = answer_buckets(q)
            if q.answerable and with_tutorial:
                top = tutorial.top(q.doc, dense)
                baseline = [page for page, _ in top]
                outcome["tutorial"] = baseline
                tallies["tutorial"].add(buckets, q.pages, baseline)
                if items is not None:
                    best = top[0][1] if top else ""
                    answers.add("tutorial: best chunk", short, holds(best, items))
                    read = " ".join(text for _, text in top)
                    answers.add("tutorial: 5 chunks (context)", short, holds(read, items))
            if not ready:
                if q.answerable:
                    for name in variants:
                        tallies[name].add(buckets_all, q.pages, [])
                continue
            names = {ids[q.doc]: q.doc}
            for name, tuning in variants.items():
                if name != "pdfqa" and not q.answerable:
                    continue
                found = await retrieve(
                    res,
                    user_id=user_id,
                    upload_names=names,
                    query=q.question,
                    tuning=tuning,
                    cache=False,
                )
                if q.answerable:
                    tallies[name].add(buckets, q.pages, source_pages(found))
                if name == "pdfqa" and items is not None:
                    score_answers(answers, "pdfqa", q, found, short, items)
                if name == "pdfqa":
                    dump.append(
                        {
                            "set": q.set,
                            "doc": q.doc,
                            "question": q.question,
                            "answer": q.answer,
                            "answer_format": q.answer_format,
                            "answerable": q.answerable,
                            "evidence": q.pages,
                            "short": bool(short),
                            "extractable": f"{q.set}|extractable" in short,
                            "retrieval": msgspec.to_builtins(found),
                        }
                    )
                    outcome["pdfqa"] = source_pages(found)
                    outcome["confidence"] = found.confidence
                    key = f"{q.set}|{'answerable' if q.answerable else 'unanswerable'}"
                    verdicts[key][0 if found.relevant else 1] += 1
                    confidences.append((q.set, q.answerable, found.confidence))
                    features.append(
                        {
                            "set": q.set,
                            "answerable": q.answerable,
                            "kind": q.kind,
                            **msgspec.to_builtins(found.signals),
                        }
                    )
        await in_conversation(
            res, user_id, ids, questions, base, tallies[CONVERSATION], verdicts, answers
        )
        followed = await follow_up_pairs(res, user_id, ids, pairs, base)
        t_total = time.perf_counter() - started
    (data / "signals.jsonl").write_text("".join(json.dumps(f) + "\n" for f in features))
    (data / "retrievals.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dump))
    (data / "outcomes.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outcomes))
    report(questions, ids, tallies, verdicts, confidences)
    report_answers(questions, answers)
    if pairs:
        print(f"\n== follow-up pairs: {len(pairs)} ==")
        print(f"{'asked':<30}{'n':>6}{'R@5':>9}{'hit@1':>9}")
        for name in ("alone", "after its question"):
            n, r, h = followed.row(name)
            print(f"{name:<30}{n:>6}{r:>9.3f}{h:>9.3f}")
    print(f"\n(ingestion {t_ingest:.0f} s, whole run {t_total:.0f} s)")


async def in_conversation(
    res: Resources,
    user_id: uuid.UUID,
    ids: dict[str, uuid.UUID],
    questions: Sequence[Question],
    tuning: Tuning,
    tally: Tally,
    verdicts: dict[str, list[int]],
    answers: AnswerTally,
) -> None:
    """Conversation mode: each document's questions in one conversation, in file order."""
    by_doc: dict[tuple[str, str], list[Question]] = defaultdict(list)
    for q in questions:
        by_doc[q.set, q.doc].append(q)
    for (_set, doc), asked in by_doc.items():
        previous: list[str] = []
        for q in asked:
            buckets_all = [f"{q.set}|all docs", f"{q.set}|kind {q.kind}|all docs"]
            if doc not in ids:
                if q.answerable:
                    tally.add(buckets_all, q.pages, [])
                continue
            query = standalone_query(q.question, previous)
            previous.append(query)
            found = await retrieve(
                res,
                user_id=user_id,
                upload_names={ids[doc]: doc},
                query=query,
                tuning=tuning,
                cache=False,
            )
            buckets = [*buckets_all, f"{q.set}|text docs", f"{q.set}|kind {q.kind}|text docs"]
            if q.answerable:
                tally.add(buckets, q.pages, source_pages(found))
            items, short = answer_buckets(q)
            if items is not None:
                score_answers(answers, "pdfqa conversation", q, found, short, items)
            key = f"{q.set}|{'answerable' if q.answerable else 'unanswerable'}|conversation"
            verdicts[key][0 if found.relevant else 1] += 1


async def follow_up_pairs(
    res: Resources,
    user_id: uuid.UUID,
    ids: dict[str, uuid.UUID],
    pairs: Sequence[FollowUp],
    tuning: Tuning,
) -> Tally:
    """Each pair's second question asked alone, and after its first (conversation mode)."""
    tally = Tally()
    for pair in pairs:
        if pair.doc not in ids:
            continue
        names = {ids[pair.doc]: pair.doc}
        alone = await retrieve(
            res, user_id=user_id, upload_names=names, query=pair.then, tuning=tuning, cache=False
        )
        tally.add(["alone"], pair.pages, source_pages(alone))
        query = standalone_query(pair.then, [standalone_query(pair.first, [])])
        after = await retrieve(
            res, user_id=user_id, upload_names=names, query=query, tuning=tuning, cache=False
        )
        tally.add(["after its question"], pair.pages, source_pages(after))
    return tally


def answer_buckets(q: Question) -> tuple[Gold | None, list[str]]:
    """The question's acceptable answers and the rows it counts in (none without a short
    answer)."""
    items = gold(q.answer, q.answer_format) if q.answerable else None
    if items is None:
        return None, []
    extractable = any(holds(page_text(q.path, p), items) for p in q.pages)
    return items, short_buckets(q.set, q.answer_format, extractable)


def score_answers(
    answers: AnswerTally,
    row: str,
    q: Question,
    found: Retrieval,
    buckets: list[str],
    items: Gold,
) -> None:
    """What the reader received (passages, contexts) and what the extractive answer says."""
    top = found.sources[:K]
    answers.add(f"{row}: 5 passages", buckets, holds(" ".join(s.text for s in top), items))
    context = " ".join(s.context or s.text for s in top)
    answers.add(f"{row}: 5 contexts", buckets, holds(context, items))
    budget = Settings().chat_context_tokens  # what a language model gets of them, by default
    received = " ".join(model_texts(found.sources, budget)[:K])
    answers.add(f"{row}: what a model gets", buckets, holds(received, items))
    extracted = extractive_answer(found.query, found.sources, found.confidence, 0.0)
    said = answer_text(extracted, EXTRACTIVE_NOTE)
    answers.add(f"{row}: extractive answer", buckets, holds(said, items))
    first = said.split("\n\n", 1)[0]
    answers.add(f"{row}: extractive, first block", buckets, holds(first, items))
    if row == "pdfqa":  # what the answer said before the reader got contexts
        bare = [msgspec.structs.replace(s, context="") for s in found.sources]
        before = extractive_answer(found.query, bare, found.confidence, 0.0)
        hit = holds(answer_text(before, EXTRACTIVE_NOTE), items)
        answers.add(f"{row}: extractive from passages", buckets, hit)


def report_answers(questions: list[Question], answers: AnswerTally) -> None:
    """Answer hit and context recall, per set: all short answers, extractable, per format."""
    for qset in dict.fromkeys(q.set for q in questions):
        formats = sorted({q.answer_format for q in questions if q.set == qset and q.answer})
        columns = ["short", "extractable", *(f"extractable {f}" for f in formats)]
        if not any(answers.cell(row, f"{qset}|short")[0] for row in answers.rows()):
            continue
        print(f"\n== {qset}: answers (share holding the reference answer) ==")
        print(f"{'':38}" + "".join(f"{c[:16]:>18}" for c in columns))
        for row in answers.rows():
            cells = [answers.cell(row, f"{qset}|{c}") for c in columns]
            print(f"{row:<38}" + "".join(f"{n:>7} {v:>9.3f} " for n, v in cells))


def report(
    questions: list[Question],
    ids: dict[str, uuid.UUID],
    tallies: dict[str, Tally],
    verdicts: dict[str, list[int]],
    confidences: list[tuple[str, bool, float]],
) -> None:
    for qset in dict.fromkeys(q.set for q in questions):
        docs = {q.doc for q in questions if q.set == qset}
        ready = len(docs & set(ids))
        print(f"\n== {qset}: {len(docs)} documents, {ready} with a text layer (ingested) ==")
        kinds = sorted({q.kind for q in questions if q.set == qset and q.answerable})
        print(f"{'':34}{'text-layer docs':>24}{'all docs':>24}")
        print(f"{'ranking':<22}{'questions':<12}" + f"{'n':>6}{'R@5':>9}{'hit@1':>9}" * 2)
        for name, tally in tallies.items():
            for kind in ["all", *kinds]:
                if kind != "all" and name not in ("pdfqa", "tutorial"):
                    continue
                prefix = f"{qset}|" + ("" if kind == "all" else f"kind {kind}|")
                cells = "".join(
                    f"{n:>6}{r:>9.3f}{h:>9.3f}"
                    for n, r, h in (tally.row(prefix + "text docs"), tally.row(prefix + "all docs"))
                )
                print(f"{name:<22}{kind[:11]:<12}{cells}")
        for mode in ("", "|conversation"):
            a = verdicts[f"{qset}|answerable{mode}"]
            u = verdicts[f"{qset}|unanswerable{mode}"]
            print(
                f'"not found"{" (conversation)" if mode else ""}: answerable declined'
                f" {a[1]}/{sum(a)} ({a[1] / max(1, sum(a)):.1%}), unanswerable declined"
                f" {u[1]}/{sum(u)} ({u[1] / max(1, sum(u)):.1%})  [text-layer docs]"
            )
    print("\nconfidence quantiles (answerable | unanswerable), all sets:")
    for answerable in (True, False):
        values = sorted(c for _s, a, c in confidences if a == answerable)
        if values:
            qs = [values[int(p * (len(values) - 1))] for p in (0.05, 0.1, 0.25, 0.5, 0.75)]
            print(
                f"  {'answerable' if answerable else 'unanswerable':<13}"
                + " ".join(f"{x:.3f}" for x in qs)
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--benchmark", type=Path, default=BENCHMARK)
    parser.add_argument("--followups", type=Path, default=HERE / "followups.jsonl")
    parser.add_argument("--only", choices=("own", "mmlongbench-dev"), help="one set only")
    parser.add_argument("--data", type=Path, default=Path("./data/eval"), help="kept between runs")
    parser.add_argument("--db", default="pdfqa_eval", help="PostgreSQL database of the eval")
    parser.add_argument("--fresh", action="store_true", help="re-ingest everything")
    parser.add_argument("--sweep", action="store_true", help="also try other weights, prefetch")
    parser.add_argument(
        "--no-tutorial", action="store_true", help="skip the tutorial pipeline (saves embedding)"
    )
    parser.add_argument(
        "--max-pages", type=int, default=0, help="leave out documents longer than this (0: none)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the stored chunks even if the code changed"
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="ingest nothing: ask only about the documents already stored (or failed)",
    )
    parser.add_argument(
        "--docs", type=Path, help="a file of document names, one a line: only their questions"
    )
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k.startswith("PDFQA_")}
    loaded = load_settings(env)
    settings = msgspec.structs.replace(
        loaded,
        database_url=f"postgresql://postgres@127.0.0.1:5432/{args.db}",
        data_dir=args.data / "store",
        embedded_worker=False,
    )
    mark = args.data / "fingerprint"
    wanted = fingerprint(settings)
    stale = not mark.exists() or (mark.read_text() != wanted and not args.reuse)
    if args.fresh or stale:
        asyncio.run(reset_database(args.db))
        for folder in ("edge", "qdrant", "files"):  # models/ stays: exporting takes a while
            if (args.data / "store" / folder).exists():
                shutil.rmtree(args.data / "store" / folder)
        args.data.mkdir(parents=True, exist_ok=True)
        mark.write_text(wanted)
    questions: list[Question] = []
    pairs: list[FollowUp] = []
    if args.only in (None, "own"):
        questions += own_questions(args.questions)
        pairs = follow_ups(args.followups)
    if args.only in (None, "mmlongbench-dev"):
        questions += benchmark_questions(args.benchmark)
    if args.docs is not None:
        listed = set(args.docs.read_text().split())
        questions = [q for q in questions if q.doc in listed]
    if args.max_pages:
        import pypdfium2

        longer = {
            q.doc for q in questions if len(pypdfium2.PdfDocument(str(q.path))) > args.max_pages
        }
        questions = [q for q in questions if q.doc not in longer]
        print(f"left out (over {args.max_pages} pages): {', '.join(sorted(longer))}")
    print(f"pdfqa retrieval eval: {len(questions)} questions, data in {args.data}", flush=True)
    asyncio.run(
        evaluate(
            settings,
            questions,
            args.data,
            sweep=args.sweep,
            with_tutorial=not args.no_tutorial,
            skip_missing=args.skip_missing,
            pairs=[p for p in pairs if p.doc in {q.doc for q in questions}],
        )
    )


if __name__ == "__main__":
    main()
