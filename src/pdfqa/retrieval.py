"""Finding the passages that answer a question, only ever among the asker's own uploads.

The query is embedded with the same embedder as the chunks (vectors cached in Redis) and turned
into a BM25-style sparse vector; the vector store fuses both rankings (reciprocal-rank fusion) in
one query whose filter requires the caller's ``user_id`` *and* one of the conversation's uploads.
Whether anything relevant came back is judged from the dense similarity of the best passages and
from whether the question's specific terms (numbers, years, names) occur in them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from uuid import UUID

import msgspec
import numpy as np

from pdfqa.citations import Source
from pdfqa.resources import Resources
from pdfqa.sparse import sparse_query
from pdfqa.words import is_follow_up, specific_terms

__all__ = ["Retrieval", "embed_query", "retrieve", "standalone_query"]

QUERY_CACHE_TTL_S = 7 * 24 * 3600

COVER_PASSAGES = 3
"""How many of the best passages are searched for the question's specific terms."""


class Retrieval(msgspec.Struct, frozen=True):
    """The passages found for a query, best first, and whether they look relevant."""

    query: str
    sources: list[Source]
    relevant: bool
    best_similarity: float


async def embed_query(res: Resources, text: str) -> list[float]:
    """The query's dense vector, from the Redis cache when this exact text was embedded before."""
    embedder = res.embedder
    key = "pdfqa:qvec:" + hashlib.sha256(f"{embedder.name}\x00{text}".encode()).hexdigest()
    cached = await res.redis.get(key)
    if cached is not None and len(cached) == 4 * embedder.dimensions:
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
) -> Retrieval:
    """Search the given uploads (which must all be the caller's) for ``query``."""
    settings = res.settings
    limit = limit or settings.retrieval_top_k
    dense = await embed_query(res, query)
    upload_ids = [str(u) for u in upload_names]
    hits = await res.vectors.search(
        user_id=str(user_id),
        upload_ids=upload_ids,
        dense=dense,
        sparse=sparse_query(query),
        limit=limit,
        mode="hybrid",
        prefetch_limit=settings.retrieval_prefetch,
        weights=(settings.dense_weight, settings.sparse_weight),
        with_dense=True,
    )
    names = {str(k): v for k, v in upload_names.items()}
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
        )
        for i, hit in enumerate(hits, start=1)
        if hit.user_id == str(user_id) and hit.upload_id in names  # defence in depth
    ]
    similarity = _best_similarity(dense, [h.dense for h in hits[:3]])
    relevant = (
        bool(sources)
        and similarity >= settings.min_similarity
        and _covers(query, sources, list(upload_names.values()))
    )
    return Retrieval(
        query=query, sources=sources, relevant=relevant, best_similarity=round(similarity, 4)
    )


def _best_similarity(query: list[float], passages: Sequence[list[float] | None]) -> float:
    """Cosine similarity of the query to its closest passage among the top three (the stored
    vectors are normalised, so it is their dot product)."""
    vectors = [v for v in passages if v]
    if not vectors:
        return 0.0
    return float(
        np.max(np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32))
    )


def _covers(question: str, sources: Sequence[Source], subjects: Sequence[str] = ()) -> bool:
    """Whether one of the best passages mentions every specific term of the question.

    A passage that answers "What was Uber's revenue in Japan in 2021?" names Japan and 2021
    together; passages about revenue that never mention Japan do not answer it, however
    similar they are. Terms that name the documents themselves ("Uber" in ``uber_2021.pdf``)
    are not required: a filing calls its company "we".
    """
    names = [_alnum(s) for s in subjects]
    terms = {t for t in specific_terms(question) if not any(_alnum(t) in n for n in names)}
    if not terms:
        return True
    for source in sources[:COVER_PASSAGES]:
        text = source.text.lower()
        digits = text.replace(",", "")
        if all(_mentions(t, text, digits) for t in terms):
            return True
    return False


def _mentions(term: str, text: str, digits: str) -> bool:
    return term in text or term.replace(",", "") in digits


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def standalone_query(question: str, previous: Sequence[str]) -> str:
    """The rule used without a language model to make a follow-up stand on its own.

    If the question reads like a follow-up (it is short, opens with "and", "what about", ...,
    or leans on a pronoun such as "it" or "they"), the previous stand-alone query is put in front
    of it, so retrieval keeps the subject; otherwise the question is used as it is.
    """
    if not previous:
        return question.strip()
    q = question.strip()
    return f"{previous[-1]} {q}" if is_follow_up(q) else q
