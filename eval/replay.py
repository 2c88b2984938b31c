"""Replay retrieval's ranking offline, to try other rankings in seconds instead of re-ingesting.

``collect`` reads, once, everything a ranking can depend on from a store that ``make eval`` built:
every question's complete dense and sparse rankings within its document (as the vector store
returns them), the pages named in it, every chunk's page, text and dense vector, the question
without its format sentences, and the sentence vectors of its best candidates. ``run`` then
replays the product's ranking (reciprocal-rank fusion as Qdrant computes it, one source per page
with page support, named pages first) and a set of general variants, and prints page recall@5 and
hit@1 as ``make eval`` does::

    python -m eval.replay collect --data data/eval --db pdfqa_eval --set mmlongbench-dev
    python -m eval.replay run --data data/eval --set mmlongbench-dev

The replay gives the product's first five pages for all but the questions whose fused scores tie
(Qdrant leaves their order open). The README's "tried offline" table comes from here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from eval.run import BENCHMARK, HERE, K, benchmark_questions, own_questions
from pdfqa import words
from pdfqa.resources import open_resources
from pdfqa.retrieval import (
    DISTINCT_PAGES_OVERFETCH,
    NAMED_PAGE_PREFETCH,
    PAGE_SUPPORT,
    embed_query,
)
from pdfqa.settings import Settings, load_settings
from pdfqa.sparse import AVG_DOC_LEN, K1, B, sparse_query
from pdfqa.store import uploads
from pdfqa.store.vectors import Hit
from pdfqa.store.vectors.base import RRF_K as STORE_RRF_K

DEFAULTS = Settings()
TOP_K = DEFAULTS.retrieval_top_k
WEIGHTS = (DEFAULTS.dense_weight, DEFAULTS.sparse_weight)
RRF_K = float(STORE_RRF_K)
SENTENCE_CANDIDATES = 30
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


class Chunk(msgspec.Struct, array_like=True):
    id: str
    page: int
    index: int
    text: str
    vector: bytes  # float32


class Ranked(msgspec.Struct, array_like=True):
    id: str
    page: int
    score: float


class Record(msgspec.Struct):
    doc: str
    kind: str
    question: str
    evidence: list[int]
    answerable: bool
    query: bytes  # float32
    query_stripped: bytes  # float32, the question without what follows its last "?"
    dense: list[Ranked]
    sparse: list[Ranked]
    named: list[int]  # the page of the best passage of each page the question names


class Rankings(msgspec.Struct):
    records: list[Record]
    chunks: dict[str, list[Chunk]]
    sentences: dict[str, bytes]  # sentence -> float32 vector


def sentences(text: str) -> list[str]:
    parts = [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 15]
    return parts or [text]


def strip_format(question: str) -> str:
    """The question up to its last "?", when instructions ("Round to two decimals.") follow."""
    end = question.rfind("?")
    return question[: end + 1] if 0 < end < len(question) - 3 else question


def _first_page(hit: Hit) -> int:
    """The page a passage's citation shows."""
    return hit.pages[0] if hit.pages else 0


def _f32(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _vec(raw: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(raw, dtype=np.float32)


# -- collect ----------------------------------------------------------------------------------


async def collect(settings: Settings, qset: str) -> Rankings:
    questions = (
        own_questions(HERE / "questions.jsonl") if qset == "own" else benchmark_questions(BENCHMARK)
    )
    async with open_resources(settings) as res:
        async with res.db.acquire() as conn:
            row = await conn.fetchrow("SELECT id FROM users WHERE email = 'eval@pdfqa.local'")
            if row is None:
                raise SystemExit("no eval store here: run make eval first")
            user_id = str(row["id"])
            have = await uploads.list_for_user(conn, row["id"], limit=10_000)
        ids = {u.name: str(u.id) for u in have if u.status == "ready"}
        chunks: dict[str, list[Chunk]] = {}
        records: list[Record] = []
        for q in questions:
            if q.doc not in ids:
                continue
            dense = await embed_query(res, q.question)
            stripped = strip_format(q.question)
            dense_stripped = dense if stripped == q.question else await embed_query(res, stripped)
            common: dict[str, Any] = {
                "user_id": user_id,
                "upload_ids": [ids[q.doc]],
                "dense": dense,
                "sparse": sparse_query(q.question),
                "limit": 100_000,
            }
            by_dense = await res.vectors.search(
                **common, mode="dense", with_dense=q.doc not in chunks
            )
            by_sparse = await res.vectors.search(**common, mode="sparse")
            if q.doc not in chunks:
                index = {
                    h.chunk_id: h.chunk_index
                    for h in await res.vectors.scroll(upload_id=ids[q.doc], limit=100_000)
                }
                chunks[q.doc] = [
                    Chunk(
                        h.chunk_id,
                        _first_page(h),
                        index.get(h.chunk_id, 0),
                        h.text,
                        _f32(h.dense or []),
                    )
                    for h in by_dense
                ]
            named = []
            for page in words.page_references(q.question):
                best = await res.vectors.search(
                    **{**common, "limit": 1}, prefetch_limit=NAMED_PAGE_PREFETCH, page=page
                )
                named += [h.pages[0] for h in best if h.pages]
            records.append(
                Record(
                    doc=q.doc,
                    kind=q.kind,
                    question=q.question,
                    evidence=q.pages,
                    answerable=q.answerable,
                    query=_f32(dense),
                    query_stripped=_f32(dense_stripped),
                    dense=[Ranked(h.chunk_id, _first_page(h), h.score) for h in by_dense],
                    sparse=[Ranked(h.chunk_id, _first_page(h), h.score) for h in by_sparse],
                    named=named,
                )
            )
        text = {c.id: c.text for doc in chunks.values() for c in doc}
        wanted: set[str] = set()
        for record in records:
            for item in fuse(record.dense, record.sparse)[0][:SENTENCE_CANDIDATES]:
                wanted.update(sentences(text[item]))
        ordered = sorted(wanted)
        vectors: list[list[float]] = []
        for start in range(0, len(ordered), 256):
            vectors += await res.embedder.embed_documents(ordered[start : start + 256])
    return Rankings(records, chunks, {s: _f32(v) for s, v in zip(ordered, vectors, strict=True)})


# -- the ranking, replayed --------------------------------------------------------------------


def fuse(
    *lists: Sequence[Ranked] | Sequence[int],
    weights: Sequence[float] = WEIGHTS,
    k: float = RRF_K,
    prefetch: int = DEFAULTS.retrieval_prefetch,
) -> tuple[list[Any], dict[Any, float]]:
    """Weighted reciprocal-rank fusion as Qdrant computes it; ties keep first-seen order."""
    scores: dict[Any, float] = defaultdict(float)
    order: dict[Any, int] = {}
    for items, weight in zip(lists, weights, strict=False):
        for i, item in enumerate(items[:prefetch]):
            key = item.id if isinstance(item, Ranked) else item
            scores[key] += 1.0 / ((i + 1.0) / weight + k - 1.0)
            order.setdefault(key, len(order))
    return sorted(scores, key=lambda c: (-scores[c], order[c])), scores


def page_scores(
    ranked: Sequence[str],
    scores: dict[str, float],
    page_of: dict[str, int],
    *,
    overfetch: int = DISTINCT_PAGES_OVERFETCH,
    support: float = PAGE_SUPPORT,
) -> dict[int, float]:
    """One score per page from its passages among the first ``TOP_K * overfetch``."""
    out: dict[int, float] = {}
    for chunk in ranked[: TOP_K * overfetch]:
        page = page_of[chunk]
        out[page] = out.get(page, 0.0) + (support if page in out else 1.0) * scores[chunk]
    return out


def pages_of(record: Record, by_page: dict[int, float]) -> list[int]:
    pages = sorted(by_page, key=lambda p: -by_page[p])[:K]
    if record.named:
        pages = [*record.named, *(p for p in pages if p not in record.named)][:K]
    return pages


Ranking = Callable[[Record], list[int]]


class Replay:
    """The collected rankings and the derived indexes the variants use."""

    def __init__(self, data: Rankings) -> None:
        self.data = data
        self.page_of = {c.id: c.page for doc in data.chunks.values() for c in doc}
        self.text = {c.id: c.text for doc in data.chunks.values() for c in doc}
        self.ids = {doc: [c.id for c in chunks] for doc, chunks in data.chunks.items()}
        self.vectors = {
            doc: np.stack([_vec(c.vector) for c in chunks]) for doc, chunks in data.chunks.items()
        }

    def default(self, record: Record, **options: Any) -> list[int]:
        ranked, scores = fuse(record.dense, record.sparse, **options)
        return pages_of(record, page_scores(ranked, scores, self.page_of))

    def dense_from(
        self, record: Record, query: np.ndarray[Any, Any], matrix: Any = None
    ) -> list[Ranked]:
        matrix = self.vectors[record.doc] if matrix is None else matrix
        sims = matrix @ query
        ids = self.ids[record.doc]
        return [Ranked(ids[i], self.page_of[ids[i]], float(sims[i])) for i in np.argsort(-sims)]

    def score(self, ranking: Ranking) -> tuple[int, float, float]:
        n = recall = hit = 0
        for record in self.data.records:
            if not record.answerable:
                continue
            pages = ranking(record)
            n += 1
            recall += bool(set(pages[:K]) & set(record.evidence))
            hit += bool(pages) and pages[0] in record.evidence
        return n, recall / max(1, n), hit / max(1, n)


class Bm25:
    """pdfqa's BM25 (``pdfqa.sparse``) over chunks or whole pages, with its knobs exposed."""

    def __init__(
        self,
        chunks: dict[str, list[Chunk]],
        *,
        unit: str = "chunk",
        k1: float = K1,
        b: float = B,
        tokenize: Callable[[str], Iterable[str]] = words.tokenize,
        idf_within_document: bool = False,
    ) -> None:
        self.tokenize = tokenize
        self.units: dict[str, list[tuple[str | int, dict[str, float]]]] = {}
        df: Counter[str] = Counter()
        self.doc_idf: dict[str, dict[str, float]] = {}
        total = 0
        for doc, items in chunks.items():
            texts: dict[str | int, list[str]] = defaultdict(list)
            for c in items:
                texts[c.id if unit == "chunk" else c.page].append(c.text)
            vectors = []
            doc_df: Counter[str] = Counter()
            for key, parts in texts.items():
                tf = Counter(tokenize(" ".join(parts)))
                norm = k1 * (1 - b + b * sum(tf.values()) / AVG_DOC_LEN)
                vectors.append((key, {t: n * (k1 + 1) / (n + norm) for t, n in tf.items()}))
                df.update(tf.keys())
                doc_df.update(tf.keys())
            total += len(vectors)
            self.units[doc] = vectors
            self.doc_idf[doc] = _idf(doc_df, len(vectors)) if idf_within_document else {}
        self.idf = _idf(df, total)
        self.within = idf_within_document

    def search(self, doc: str, query: str) -> list[tuple[str | int, float]]:
        terms = set(self.tokenize(query))
        doc_idf = self.doc_idf[doc]
        found = []
        for key, vector in self.units[doc]:
            score = sum(
                self.idf.get(t, 0.0) * (doc_idf.get(t, 0.0) if self.within else 1.0) * vector[t]
                for t in terms
                if t in vector
            )
            if score > 0:
                found.append((key, score))
        return sorted(found, key=lambda item: -item[1])


def _idf(df: Counter[str], n: int) -> dict[str, float]:
    return {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}


_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_QUANTITY = re.compile(
    r"\b(how many|how much|round|percentage|percent|ratio|number of|in millions|in thousands)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\$?\(?\d[\d,.]*%?\)?")


def split_letters_and_digits(text: str) -> Iterable[str]:
    for token in words.tokenize(text):
        yield token
        if (
            "." not in token
            and any(ch.isdigit() for ch in token)
            and any(ch.isalpha() for ch in token)
        ):
            for part in _LETTER_DIGIT.split(token):
                if part != token and len(part) > 1:
                    yield words.stem(part) if part.isalpha() else part


def variants(replay: Replay) -> dict[str, Ranking]:
    data = replay.data
    out: dict[str, Ranking] = {"baseline (the defaults, replayed)": replay.default}
    for k in (1.0, 5.0, 10.0, 60.0):
        out[f"RRF k={k:g}"] = partial(replay.default, k=k)

    def paged(r: Record, overfetch: int, support: float) -> list[int]:
        ranked, scores = fuse(r.dense, r.sparse)
        return pages_of(
            r, page_scores(ranked, scores, replay.page_of, overfetch=overfetch, support=support)
        )

    for overfetch in (2, 5, 8):
        for support in (0.25, 1.0):
            out[f"passages {overfetch}x, page support {support:g}"] = partial(
                paged, overfetch=overfetch, support=support
            )

    def with_sparse(index: Bm25) -> Ranking:
        def rank(r: Record) -> list[int]:
            sparse = [
                Ranked(str(c), replay.page_of[str(c)], s)
                for c, s in index.search(r.doc, r.question)
            ]
            ranked, scores = fuse(r.dense, sparse)
            return pages_of(r, page_scores(ranked, scores, replay.page_of))

        return rank

    out["BM25 replayed (pdfqa.sparse)"] = with_sparse(Bm25(data.chunks))
    for k1 in (0.9, 2.0):
        out[f"BM25 k1={k1:g}"] = with_sparse(Bm25(data.chunks, k1=k1))
    for b in (0.4, 1.0):
        out[f"BM25 b={b:g}"] = with_sparse(Bm25(data.chunks, b=b))
    out["letter-digit split"] = with_sparse(Bm25(data.chunks, tokenize=split_letters_and_digits))
    out["IDF within the document"] = with_sparse(Bm25(data.chunks, idf_within_document=True))

    pages_bm25 = Bm25(data.chunks, unit="page", idf_within_document=True)

    def whole_pages(r: Record, weight: float, k: float, overfetch: int) -> list[int]:
        ranked, scores = fuse(r.dense, r.sparse)
        base = page_scores(ranked, scores, replay.page_of, overfetch=overfetch)
        by_page = [int(p) for p, _ in pages_bm25.search(r.doc, r.question)]
        _, page_score = fuse(
            sorted(base, key=lambda p: -base[p]), by_page, weights=(1.0, weight), k=k
        )
        return pages_of(r, page_score)

    out["whole-page BM25 (w 1, k 2, 6x)"] = lambda r: whole_pages(r, 1.0, 2.0, 6)
    out["whole-page BM25 (w 0.5, k 5, 3x)"] = lambda r: whole_pages(r, 0.5, 5.0, 3)

    def page_vectors(r: Record, weight: float) -> list[int]:
        ranked, scores = fuse(r.dense, r.sparse)
        base = page_scores(ranked, scores, replay.page_of)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, chunk in enumerate(replay.ids[r.doc]):
            groups[replay.page_of[chunk]].append(i)
        pages = sorted(groups)
        matrix = np.stack([replay.vectors[r.doc][groups[p]].mean(axis=0) for p in pages])
        sims = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ _vec(r.query)
        by_vector = [pages[i] for i in np.argsort(-sims)]
        _, page_score = fuse(sorted(base, key=lambda p: -base[p]), by_vector, weights=(1.0, weight))
        return pages_of(r, page_score)

    for weight in (0.25, 1.0):
        out[f"page vectors fused, w {weight:g}"] = partial(page_vectors, weight=weight)

    mixed: dict[tuple[str, float], Any] = {}

    def page_mixed(r: Record, alpha: float) -> list[int]:
        if (r.doc, alpha) not in mixed:
            matrix = replay.vectors[r.doc].copy()
            groups: dict[int, list[int]] = defaultdict(list)
            for i, chunk in enumerate(replay.ids[r.doc]):
                groups[replay.page_of[chunk]].append(i)
            for rows in groups.values():
                matrix[rows] += alpha * replay.vectors[r.doc][rows].mean(axis=0)
            mixed[(r.doc, alpha)] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        dense = replay.dense_from(r, _vec(r.query), mixed[(r.doc, alpha)])
        ranked, scores = fuse(dense, r.sparse)
        return pages_of(r, page_scores(ranked, scores, replay.page_of))

    for alpha in (0.25, 1.0):
        out[f"passage vectors + {alpha:g} x their page's"] = partial(page_mixed, alpha=alpha)

    stripped_sparse = Bm25(data.chunks)

    def stripped(r: Record, dense_side: bool, sparse_side: bool) -> list[int]:
        dense = replay.dense_from(r, _vec(r.query_stripped)) if dense_side else r.dense
        sparse = (
            [
                Ranked(str(c), replay.page_of[str(c)], s)
                for c, s in stripped_sparse.search(r.doc, strip_format(r.question))
            ]
            if sparse_side
            else r.sparse
        )
        ranked, scores = fuse(dense, sparse)
        return pages_of(r, page_scores(ranked, scores, replay.page_of))

    out["format sentences out of the dense query"] = lambda r: stripped(r, True, False)
    out["format sentences out of the sparse query"] = lambda r: stripped(r, False, True)
    out["format sentences out of both"] = lambda r: stripped(r, True, True)

    def sentence_maxsim(r: Record, n: int, weight: float) -> list[int]:
        ranked, _ = fuse(r.dense, r.sparse)
        query = _vec(r.query)
        best = {
            c: max(float(_vec(data.sentences[s]) @ query) for s in sentences(replay.text[c]))
            for c in ranked[:n]
        }
        by_sentence = sorted(best, key=lambda c: -best[c])
        reranked, rescored = fuse(ranked[:n], by_sentence, weights=(1.0, weight), prefetch=n)
        return pages_of(r, page_scores(reranked, rescored, replay.page_of))

    for n in (15, 30):
        out[f"MiniLM sentence max-sim re-ranks top {n}"] = partial(sentence_maxsim, n=n, weight=1.0)

    def feedback(r: Record, beta: float, top: int) -> list[int]:
        ranked, _ = fuse(r.dense, r.sparse)
        ids = replay.ids[r.doc]
        rows = [ids.index(c) for c in ranked[:top]]
        query = _vec(r.query) + beta * replay.vectors[r.doc][rows].mean(axis=0)
        dense = replay.dense_from(r, query / np.linalg.norm(query))
        ranked, scores = fuse(dense, r.sparse)
        return pages_of(r, page_scores(ranked, scores, replay.page_of))

    for beta in (0.3, 1.0):
        out[f"pseudo-relevance feedback, top 3, beta {beta:g}"] = partial(
            feedback, beta=beta, top=3
        )

    density: dict[tuple[str, int], float] = {}
    for doc, chunks in data.chunks.items():
        texts: dict[int, list[str]] = defaultdict(list)
        for c in chunks:
            texts[c.page].append(c.text)
        for page, parts in texts.items():
            tokens = " ".join(parts).split()
            density[(doc, page)] = sum(bool(_NUMBER.fullmatch(t)) for t in tokens) / max(
                1, len(tokens)
            )

    def numbers_first(r: Record, beta: float) -> list[int]:
        ranked, scores = fuse(r.dense, r.sparse)
        base = page_scores(ranked, scores, replay.page_of)
        if _QUANTITY.search(r.question):
            for chunk in ranked[TOP_K * DISTINCT_PAGES_OVERFETCH : 60]:
                base.setdefault(replay.page_of[chunk], scores[chunk])
            base = {p: s * (1 + beta * density[(r.doc, p)]) for p, s in base.items()}
        return pages_of(r, base)

    for beta in (1.0, 4.0):
        out[f"number-dense pages first for quantity questions, {beta:g}"] = partial(
            numbers_first, beta=beta
        )
    return out


def ceiling(replay: Replay, prefetch: int = DEFAULTS.retrieval_prefetch) -> float:
    n = found = 0
    for r in replay.data.records:
        if r.answerable:
            pages = {x.page for x in r.dense[:prefetch]} | {x.page for x in r.sparse[:prefetch]}
            n += 1
            found += bool(pages & set(r.evidence))
    return found / max(1, n)


def run(path: Path) -> None:
    replay = Replay(msgspec.msgpack.decode(path.read_bytes(), type=Rankings))
    print(f"{'ranking':<58}{'n':>5}{'R@5':>8}{'hit@1':>8}")
    for name, ranking in variants(replay).items():
        n, recall, hit = replay.score(ranking)
        print(f"{name:<58}{n:>5}{recall:>8.3f}{hit:>8.3f}", flush=True)
    print(
        f"{'ceiling: evidence page among top 40 dense + top 40 sparse':<63}{ceiling(replay):>8.3f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("collect", "run"))
    parser.add_argument("--data", type=Path, default=Path("./data/eval"))
    parser.add_argument("--db", default="pdfqa_eval")
    parser.add_argument(
        "--set", dest="qset", choices=("own", "mmlongbench-dev"), default="mmlongbench-dev"
    )
    args = parser.parse_args(argv)
    path = args.data / f"rankings-{args.qset}.msgpack"
    if args.step == "collect":
        settings = msgspec.structs.replace(
            load_settings({}),
            database_url=f"postgresql://postgres@127.0.0.1:5432/{args.db}",
            data_dir=args.data / "store",
            embedded_worker=False,
        )
        rankings = asyncio.run(collect(settings, args.qset))
        path.write_bytes(msgspec.msgpack.encode(rankings))
        chunks = sum(len(c) for c in rankings.chunks.values())
        print(f"{len(rankings.records)} questions, {chunks} chunks -> {path}")
    else:
        run(path)


if __name__ == "__main__":
    main()
