"""What every vector store engine shares: point and hit types, the payload codec, point ids,
the scope filter and the :class:`VectorStore` protocol.

A store is opened on one collection (one embedder at one size) and keeps it: there is no
"select the collection" call before the others. The engines (:mod:`.qdrant`, :mod:`.edge`)
create the collection on their first call and translate :class:`Scope` into their own filter
type; nothing else differs between them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from pdfqa.sparse import SparseVector

__all__ = [
    "DENSE",
    "FAIR_SHARE_MAX_UPLOADS",
    "RRF_K",
    "SPARSE",
    "ChunkPayload",
    "ChunkPoint",
    "Hit",
    "Scope",
    "SearchMode",
    "VectorStore",
    "collection_name",
    "decode_hit",
    "encode_payload",
    "owned_in_order",
    "point_id",
]

DENSE = "dense"
"""Name of the dense vector in every collection."""
SPARSE = "bm25"
"""Name of the sparse vector in every collection (``Modifier.IDF``: the engine applies the IDF)."""
RRF_K = 2
"""Reciprocal-rank-fusion constant (Qdrant's default), the same on every engine."""
FAIR_SHARE_MAX_UPLOADS = 8
"""Up to this many uploads, a hybrid search draws its candidates per upload (a fair share each)."""

SearchMode = Literal["hybrid", "dense", "sparse"]

_POINT_NAMESPACE = uuid.UUID("9b0f6c1e-3d4a-5e8b-a7c2-0d1e2f3a4b5c")


class ChunkPoint(msgspec.Struct, frozen=True):
    """One chunk to store: where it comes from, its text, and both of its vectors."""

    upload_id: str
    user_id: str
    chunk_index: int
    pages: list[int]
    text: str
    dense: list[float]
    sparse: SparseVector


class Hit(msgspec.Struct, frozen=True):
    """One stored chunk as returned by a search (``score``) or a scroll (``score`` is 0)."""

    chunk_id: str
    upload_id: str
    user_id: str
    chunk_index: int
    pages: list[int]
    text: str
    score: float
    dense: list[float] | None = None
    """The stored dense vector, when the search asked for it (``with_dense``)."""


class ChunkPayload(msgspec.Struct, frozen=True):
    """The payload of a chunk point; ``page`` (the first page) is there for filtering."""

    upload_id: str
    user_id: str
    chunk_index: int
    pages: list[int]
    page: int | None
    text: str


class Scope(msgspec.Struct, frozen=True):
    """Which points a call concerns: all the given conditions must hold (none: every point)."""

    user_id: str | None = None
    upload_ids: tuple[str, ...] | None = None
    """Any of these uploads (one id for "this upload")."""
    page: int | None = None
    """Only chunks on this page (1-based)."""

    def conditions(self) -> list[tuple[str, str | int | list[str]]]:
        """``(payload key, value)`` pairs; a list value means "any of"."""
        out: list[tuple[str, str | int | list[str]]] = []
        if self.user_id is not None:
            out.append(("user_id", self.user_id))
        if self.upload_ids is not None:
            ids = list(self.upload_ids)
            out.append(("upload_id", ids[0] if len(ids) == 1 else ids))
        if self.page is not None:
            out.append(("page", self.page))
        return out


def encode_payload(point: ChunkPoint) -> dict[str, object]:
    """The stored payload of ``point`` (builtins, for any engine)."""
    payload: dict[str, object] = msgspec.to_builtins(
        ChunkPayload(
            upload_id=point.upload_id,
            user_id=point.user_id,
            chunk_index=point.chunk_index,
            pages=point.pages,
            page=point.pages[0] if point.pages else None,
            text=point.text,
        )
    )
    return payload


def decode_hit(point: object, payload: object, score: float, vectors: object = None) -> Hit:
    """A :class:`Hit` from an engine's point id, payload, score and (optional) vectors."""
    data = msgspec.convert(payload, ChunkPayload)
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    return Hit(
        chunk_id=str(point),
        upload_id=data.upload_id,
        user_id=data.user_id,
        chunk_index=data.chunk_index,
        pages=data.pages,
        text=data.text,
        score=float(score),
        dense=[float(x) for x in dense] if isinstance(dense, list) else None,
    )


def owned_in_order(hits: Sequence[Hit], user_id: str, upload_id: str) -> list[Hit]:
    """``hits`` of ``user_id``'s ``upload_id`` only, by chunk index (points fetched by id carry
    no filter: the owner is checked on their payload)."""
    mine = [h for h in hits if h.user_id == user_id and h.upload_id == upload_id]
    return sorted(mine, key=lambda h: h.chunk_index)


def point_id(upload_id: str, chunk_index: int) -> str:
    """Deterministic id of a chunk point, so a retried job overwrites rather than duplicates."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{upload_id}/{chunk_index}"))


def collection_name(embedder_name: str, dimensions: int) -> str:
    """The collection holding vectors of one embedder at one size.

    A readable slug plus a short digest of the exact name, so two names that slug alike
    ("a/b", "a-b") still get different collections.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", embedder_name.lower()).strip("-")[:48] or "model"
    digest = hashlib.sha256(embedder_name.encode()).hexdigest()[:8]
    return f"chunks-{slug}-{dimensions}d-{digest}"


def candidate_scopes(
    user_id: str, upload_ids: Sequence[str], page: int | None = None
) -> list[Scope]:
    """The scopes a hybrid search draws candidates from: one per upload (a fair share each,
    so a large document cannot crowd a small one out before fusion), or one for all of them
    when there are more than :data:`FAIR_SHARE_MAX_UPLOADS`."""
    ids = list(dict.fromkeys(upload_ids))
    if 1 < len(ids) <= FAIR_SHARE_MAX_UPLOADS:
        return [Scope(user_id=user_id, upload_ids=(u,), page=page) for u in ids]
    return [Scope(user_id=user_id, upload_ids=tuple(ids), page=page)]


class VectorStore(Protocol):
    """Chunk vectors of every upload in one collection, searchable per user.

    The collection (one embedder at one size, :func:`collection_name`) is fixed when the store
    is opened and created by the first call that needs it. Implementations raise
    :class:`~pdfqa.errors.UpstreamUnavailable` when the backing store fails or cannot be opened.
    """

    @property
    def collection(self) -> str:
        """The collection this store reads and writes."""
        ...

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Write ``points`` in one request; re-writing a point replaces it."""
        ...

    async def delete_upload(self, upload_id: str) -> None:
        """Delete every point of the upload."""
        ...

    async def count(self, *, upload_id: str | None = None, user_id: str | None = None) -> int:
        """Exact number of points, optionally of one upload and/or one user."""
        ...

    async def search(
        self,
        *,
        user_id: str,
        upload_ids: Sequence[str],
        dense: Sequence[float],
        sparse: SparseVector,
        limit: int,
        mode: SearchMode = "hybrid",
        prefetch_limit: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        with_dense: bool = False,
        page: int | None = None,
    ) -> list[Hit]:
        """Best ``limit`` chunks of ``user_id``'s ``upload_ids``, best first.

        ``hybrid`` fuses dense and sparse candidate lists (``prefetch_limit`` each, drawn per
        upload: :func:`candidate_scopes`) by reciprocal-rank fusion, weighting the two rankings
        by ``weights`` (dense, sparse); ``dense`` and ``sparse`` use one of them alone.
        ``with_dense`` also returns each hit's stored dense vector; ``page`` keeps only the
        chunks on that page.
        """
        ...

    async def scroll(self, *, upload_id: str, limit: int = 10_000) -> list[Hit]:
        """Points of one upload ordered by ``chunk_index`` (for tests and inspection)."""
        ...

    async def chunks(self, *, user_id: str, upload_id: str, indexes: Sequence[int]) -> list[Hit]:
        """The stored chunks ``indexes`` of ``user_id``'s upload, in ``chunk_index`` order;
        indexes that hold no chunk (or another user's) are left out. ``score`` is 0."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~pdfqa.errors.UpstreamUnavailable` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release the client (and, embedded, the storage folder lock); a later call reopens."""
        ...
