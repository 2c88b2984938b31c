"""Finding the passages that answer a question, only ever among the asker's own uploads.

The query is embedded with the same embedder as the chunks (vectors cached in Redis) and turned
into a BM25-style sparse vector; the vector store fuses both rankings (reciprocal-rank fusion) in
one query whose filter requires the caller's ``user_id`` *and* one of the conversation's uploads.
Whether anything relevant came back is judged from the dense similarity of the best passages and
from whether the question's specific terms (numbers, years, names) occur in them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from uuid import UUID

import msgspec
import numpy as np

from pdfqa import metrics, words
from pdfqa.citations import Source
from pdfqa.context import contexts
from pdfqa.errors import UpstreamUnavailable
from pdfqa.rerank import Reranker
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from pdfqa.sparse import SparseVector, sparse_query
from pdfqa.store.vectors import Hit, SearchMode, VectorStore
from pdfqa.tracing import tracer

__all__ = [
    "Retrieval",
    "Signals",
    "Tuning",
    "embed_query",
    "invalidate",
    "retrieve",
    "standalone_query",
]

QUERY_CACHE_TTL_S = 7 * 24 * 3600
log = logging.getLogger(__name__)


DISTINCT_PAGES_OVERFETCH = 3
"""With distinct pages, this many times ``limit`` passages are fetched to de-duplicate from."""


PAGE_SUPPORT = 0.5
"""Share of a further passage's score that its page gains."""


_DEFAULTS = Settings()
"""Where :class:`Tuning` takes its defaults: the settings' own, written once."""


class Tuning(msgspec.Struct, frozen=True):
    """How a search ranks: the settings' values by default (the eval turns parts off)."""

    mode: SearchMode = "hybrid"
    prefetch: int = _DEFAULTS.retrieval_prefetch
    dense_weight: float = _DEFAULTS.dense_weight
    sparse_weight: float = _DEFAULTS.sparse_weight
    distinct_pages: bool = True
    """One source per page: the best passage of a page stands for it."""
    page_support: float = PAGE_SUPPORT
    """Share of a further passage's score that its page gains."""
    named_pages: bool = True
    """Pages the question names ("on page 14") come first (:func:`words.page_references`)."""
    rerank: bool = True
    """Re-order the candidates with the configured reranker (``PDFQA_RERANK_MODEL``), if any."""
    context_tokens: int = _DEFAULTS.context_tokens
    """The reader's text for each source: the passage and its neighbours (:mod:`pdfqa.context`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Tuning:
        return cls(
            context_tokens=settings.context_tokens,
            prefetch=settings.retrieval_prefetch,
            dense_weight=settings.dense_weight,
            sparse_weight=settings.sparse_weight,
        )


class Retrieval(msgspec.Struct, frozen=True):
    """The passages found for a query, best first, and whether they look relevant."""

    query: str
    sources: list[Source]
    relevant: bool
    best_similarity: float
    confidence: float
    """How sure retrieval is that the sources hold the answer, from 0 to 1."""
    signals: Signals


class Signals(msgspec.Struct, frozen=True):
    """What the confidence is computed from."""

    similarity: float
    """Cosine similarity of the question to the closest of the three best passages."""
    coverage: float
    """Share of the question's index terms found in the passages."""
    specific: float
    """Share of the question's specific terms (numbers, years, names) found in the passages."""
    present: float = 1.0
    """Share of the figures the question names (years, amounts, codes) found anywhere in the
    documents asked about."""

    def confidence(self) -> float:
        """A score from 0 to 1; below ``min_confidence`` the answer is "not found"."""
        value = self.similarity * (0.5 + 0.5 * self.specific) * self.present
        return round(min(1.0, max(0.0, value)), 4)


async def embed_query(res: Resources, text: str) -> list[float]:
    """The query's dense vector, from the Redis cache when this exact text was embedded before."""
    embedder = res.embedder
    key = "pdfqa:qvec:" + hashlib.sha256(f"{embedder.name}\x00{text}".encode()).hexdigest()
    cached = await res.redis.get(key)
    hit = cached is not None and len(cached) == 4 * embedder.dimensions
    metrics.cache_result("query_embedding", hit)
    if hit:
        vector: list[float] = np.frombuffer(cached, dtype=np.float32).tolist()
        return vector
    fresh = await embedder.embed_query(text)
    await res.redis.set(key, np.asarray(fresh, dtype=np.float32).tobytes(), ex=QUERY_CACHE_TTL_S)
    return fresh


async def retrieve(
    res: Resources,
    *,
    user_id: UUID,
    upload_names: Mapping[UUID, str],
    query: str,
    limit: int | None = None,
    tuning: Tuning | None = None,
    cache: bool = True,
) -> Retrieval:
    """Search the given uploads (which must all be the caller's) for ``query``.

    The result is cached in Redis for ``retrieval_cache_ttl_s`` under a key that holds each
    upload's generation (:func:`invalidate` moves it: a delete or a re-ingestion), so a cached
    result never outlives the uploads it came from. ``cache=False`` while any of the uploads is
    still being read: its next pages would make a cached result stale.
    """
    settings = res.settings
    tuning = tuning or Tuning.from_settings(settings)
    limit = limit or settings.retrieval_top_k
    with metrics.timed(metrics.RETRIEVAL), tracer.start_as_current_span("retrieve") as span:
        span.set_attribute("uploads", len(upload_names))
        key = None
        if cache and settings.retrieval_cache_ttl_s > 0:
            key = await _cache_key(res, user_id, upload_names, query, limit, tuning)
            cached = await res.redis.get(key)
            metrics.cache_result("retrieval", cached is not None)
            span.set_attribute("cache.hit", cached is not None)
            if cached is not None:
                return _retrieval_decoder.decode(cached)
        found, complete = await _retrieve(res, user_id, upload_names, query, limit, tuning)
        if key is not None and complete:  # a reranker that failed this time may answer next
            await res.redis.set(
                key, _retrieval_encoder.encode(found), ex=settings.retrieval_cache_ttl_s
            )
        return found


_retrieval_encoder = msgspec.msgpack.Encoder()
_retrieval_decoder = msgspec.msgpack.Decoder(Retrieval)
GENERATION_TTL_S = 30 * 24 * 3600
"""An upload's cache generation outlives every cached result (and then some)."""


def _generation_key(settings: Settings, upload_id: UUID | str) -> str:
    return f"{settings.queue_name}:cache-gen:{upload_id}"


async def invalidate(res: Resources, upload_id: UUID | str) -> None:
    """Make every cached retrieval that searched this upload stale (a delete, a re-ingestion)."""
    key = _generation_key(res.settings, upload_id)
    async with res.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, GENERATION_TTL_S)
        await pipe.execute()


async def _cache_key(  # noqa: PLR0917
    res: Resources,
    user_id: UUID,
    upload_names: Mapping[UUID, str],
    query: str,
    limit: int,
    tuning: Tuning,
) -> str:
    ids = sorted(str(u) for u in upload_names)
    gens = await res.redis.mget([_generation_key(res.settings, u) for u in ids]) if ids else []
    names = {str(k): v for k, v in upload_names.items()}
    parts = [
        res.embedder.name,
        str(user_id),
        query,
        str(limit),
        msgspec.json.encode(tuning).decode(),
        *(f"{u}\x00{g!r}\x00{names[u]}" for u, g in zip(ids, gens, strict=True)),
        str(res.settings.min_confidence),
        res.reranker.model if res.reranker is not None else "",
    ]
    digest = hashlib.sha256("\x01".join(parts).encode()).hexdigest()
    return f"{res.settings.queue_name}:cache:retrieval:{digest}"


async def _retrieve(  # noqa: PLR0917
    res: Resources,
    user_id: UUID,
    upload_names: Mapping[UUID, str],
    query: str,
    limit: int,
    tuning: Tuning,
) -> tuple[Retrieval, bool]:
    """The retrieval, and whether every part of it worked (a failed reranker's is not cached)."""
    settings = res.settings
    dense = await embed_query(res, query)
    sparse = sparse_query(words.asked(query))
    upload_ids = [str(u) for u in upload_names]
    reranker = res.reranker if tuning.rerank else None
    fetch = limit * DISTINCT_PAGES_OVERFETCH if tuning.distinct_pages else limit
    if reranker is not None:
        fetch = max(fetch, settings.rerank_candidates)
    found = await res.vectors.search(
        user_id=str(user_id),
        upload_ids=upload_ids,
        dense=dense,
        sparse=sparse,
        limit=fetch,
        mode=tuning.mode,
        prefetch_limit=tuning.prefetch,
        weights=(tuning.dense_weight, tuning.sparse_weight),
        with_dense=True,
    )
    support, complete = tuning.page_support, True
    if reranker is not None and found:
        # Only the asker's own passages ever leave for the endpoint (defence in depth: the
        # store's filter already scoped the search to them).
        found = _owned(found, user_id, upload_ids)
        reranked = await _reranked(reranker, query, found)
        complete = reranked is not None
        if reranked is not None:
            # The reranker's scores are its own scale (logits or probabilities): a page's best
            # passage stands for it, with no sum over its other passages.
            found, support = reranked, 0.0
    hits = _distinct_pages(found, limit, support) if tuning.distinct_pages else found[:limit]
    named = words.page_references(query) if tuning.named_pages else []
    if named:
        hits = await _named_pages_first(res, user_id, upload_ids, dense, sparse, named, hits, limit)
    names = {str(k): v for k, v in upload_names.items()}
    hits = _owned(hits, user_id, upload_ids)  # defence in depth
    with tracer.start_as_current_span("source contexts"):
        around = await contexts(res.vectors, user_id, hits, tuning.context_tokens)
    sources = [
        Source(
            n=i,
            chunk_id=hit.chunk_id,
            upload_id=hit.upload_id,
            upload_name=names.get(hit.upload_id, ""),
            page=hit.pages[0] if hit.pages else 0,
            pages=hit.pages,
            text=hit.text,
            score=round(hit.score, 6),
            context=context,
        )
        for i, (hit, context) in enumerate(zip(hits, around, strict=True), start=1)
    ]
    subjects = list(upload_names.values())
    signals = Signals(
        similarity=round(_best_similarity(dense, [h.dense for h in hits[:3]]), 4),
        coverage=round(_coverage(query, sources), 4),
        specific=round(_specific(query, sources, subjects), 4),
        present=round(await _present(res.vectors, str(user_id), upload_ids, query, subjects), 4),
    )
    confidence = signals.confidence()
    retrieval = Retrieval(
        query=query,
        sources=sources,
        relevant=bool(sources) and confidence >= settings.min_confidence,
        best_similarity=signals.similarity,
        confidence=confidence,
        signals=signals,
    )
    return retrieval, complete


def _owned(hits: Sequence[Hit], user_id: UUID, upload_ids: Sequence[str]) -> list[Hit]:
    """The hits that belong to ``user_id`` and one of ``upload_ids`` (the store's filter already
    guarantees it; checked again before anything leaves retrieval)."""
    return [h for h in hits if h.user_id == str(user_id) and h.upload_id in upload_ids]


async def _reranked(reranker: Reranker, query: str, hits: Sequence[Hit]) -> list[Hit] | None:
    """``hits`` in the reranker's order, each scored by it; None when the reranker failed (the
    caller keeps the fused order: an optional model never fails a question)."""
    with tracer.start_as_current_span("rerank") as span:
        span.set_attribute("candidates", len(hits))
        try:
            with metrics.timed(metrics.RERANK):
                scores = await reranker.scores(query, [hit.text for hit in hits])
        except UpstreamUnavailable as err:
            metrics.RERANK_FAILURES.inc()
            span.set_attribute("error", str(err))
            log.warning("rerank failed, the fused order stands: %s", err)
            return None
    order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: ties keep fused order
    return [msgspec.structs.replace(hits[i], score=scores[i]) for i in order]


async def _named_pages_first(  # noqa: PLR0917
    res: Resources,
    user_id: UUID,
    upload_ids: Sequence[str],
    dense: list[float],
    sparse: SparseVector,
    pages: Sequence[int],
    hits: Sequence[Hit],
    limit: int,
) -> list[Hit]:
    """``hits`` with the best passage of each page the question names in front ("What date is
    on page 14?" is about page 14, whatever else matches its words), in each selected upload
    that has such a page; at most ``limit`` pinned passages in all."""
    pinned: list[Hit] = []
    for page in pages:
        for upload_id in upload_ids:
            if len(pinned) >= limit:
                break
            best = await res.vectors.search(
                user_id=str(user_id),
                upload_ids=[upload_id],
                dense=dense,
                sparse=sparse,
                limit=1,
                prefetch_limit=NAMED_PAGE_PREFETCH,
                with_dense=True,
                page=page,
            )
            pinned.extend(best)
    taken = {_page_key(h) for h in pinned}
    rest = [h for h in hits if _page_key(h) not in taken]
    return [*pinned, *rest][:limit]


NAMED_PAGE_PREFETCH = 10
"""Candidates per kind of vector when finding the best passage of one named page."""


def _page_key(hit: Hit) -> tuple[str, int]:
    """The upload and page a passage stands for (the page its citation shows)."""
    return hit.upload_id, hit.pages[0] if hit.pages else 0


def _distinct_pages(hits: Sequence[Hit], limit: int, support: float = PAGE_SUPPORT) -> list[Hit]:
    """One hit per page, best pages first, up to ``limit``.

    A page's best passage stands for it; a page on which other passages matched as well ranks
    a little higher (each adds :data:`PAGE_SUPPORT` of its score), since the answer is about
    the page rather than one passage of it.
    """
    best: dict[tuple[str, int], Hit] = {}
    score: dict[tuple[str, int], float] = {}
    for hit in hits:
        key = _page_key(hit)
        if key not in best:
            best[key] = hit
            score[key] = hit.score
        else:
            score[key] += support * hit.score
    ranked = sorted(best, key=lambda k: -score[k])  # stable: ties keep the engine's order
    return [best[k] for k in ranked[:limit]]


def _best_similarity(query: list[float], passages: Sequence[list[float] | None]) -> float:
    """Cosine similarity of the query to its closest passage among the top three (the stored
    vectors are normalised, so it is their dot product)."""
    vectors = [v for v in passages if v]
    if not vectors:
        return 0.0
    return float(
        np.max(np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32))
    )


def _coverage(question: str, sources: Sequence[Source]) -> float:
    """Share of the question's index terms that occur in the passages."""
    wanted = words.terms(question)
    if not wanted:
        return 1.0
    found: set[str] = set()
    for source in sources:
        found |= words.terms(source.text) & wanted
    return len(found) / len(wanted)


async def _present(
    vectors: VectorStore,
    user_id: str,
    upload_ids: Sequence[str],
    question: str,
    subjects: Sequence[str],
) -> float:
    """Share of the figures the question names (:func:`pdfqa.words.named_numbers`) that some
    passage of the documents holds: a keyword search for each alone ("2024" in a report on
    2018 finds nothing)."""
    wanted = _not_naming(words.named_numbers(question), subjects)
    if not wanted or not upload_ids:
        return 1.0
    found = 0
    for term in sorted(wanted):
        query = sparse_query(term)
        if not query.indices:
            found += 1
            continue
        for index, value in zip(query.indices, query.values, strict=True):
            hits = await vectors.search(
                user_id=user_id,
                upload_ids=upload_ids,
                dense=[],
                sparse=SparseVector(indices=[index], values=[value]),
                limit=1,
                mode="sparse",
            )
            if not hits:
                break
        else:
            found += 1
    return found / len(wanted)


def _not_naming(terms: set[str], subjects: Sequence[str]) -> set[str]:
    """``terms`` less those that name the documents themselves ("Uber" in uber_2021.pdf)."""
    names = [_alnum(s) for s in subjects]
    return {t for t in terms if not any(_alnum(t) in n for n in names)}


def _specific(question: str, sources: Sequence[Source], subjects: Sequence[str] = ()) -> float:
    """Share of the question's specific terms (numbers, years, names) the passages mention.

    A passage that answers "What was Uber's revenue in Japan in 2021?" names Japan and 2021;
    passages about revenue that never mention Japan do not answer it, however similar they are.
    Terms that name the documents themselves ("Uber" in ``uber_2021.pdf``) are not required: a
    filing calls its company "we".
    """
    wanted = _not_naming(words.specific_terms(question), subjects)
    if not wanted:
        return 1.0
    text = " ".join(s.text.lower() for s in sources)
    digits = text.replace(",", "")
    return sum(1 for t in wanted if t in text or t.replace(",", "") in digits) / len(wanted)


_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _alnum(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def standalone_query(question: str, previous: Sequence[str]) -> str:
    """The rule used without a language model to make a follow-up stand on its own.

    If the question reads like a follow-up (:func:`pdfqa.words.is_follow_up`: it opens with
    "and", "what about", ..., or says too little of its own beside a pronoun such as "it"), the
    previous stand-alone query is put in front of it, so retrieval keeps the subject; otherwise
    the question is used as it is.
    """
    if not previous:
        return question.strip()
    q = question.strip()
    return f"{previous[-1]} {q}" if words.is_follow_up(q) else q
