"""The vector store: chunk points with a dense and a BM25 sparse vector, searched per user.

:class:`VectorStore` is the interface; :class:`QdrantVectorStore` implements it for both ways
pdfqa runs Qdrant, with one code path:

* **server** (``PDFQA_QDRANT_URL`` set): ``AsyncQdrantClient`` over HTTP;
* **local** (embedded, ``embedded_vectors="local"``): qdrant-client's local mode under
  ``data_dir/qdrant``. Local mode computes in-process (brute force, numpy) and is not
  thread-safe, so the sync ``QdrantClient`` is created and called on one dedicated thread and
  never on the event loop.
  Its folder can be opened by one process at a time; a second process gets
  :class:`~pdfqa.errors.UpstreamUnavailable` telling the operator to run a Qdrant server.

The embedded default is qdrant-edge instead (:class:`pdfqa.store.edge.EdgeVectorStore`, chosen
by :func:`open_vector_store`): the same engine as the server, in-process, ~50x faster to write
and ~100x faster to query than local mode.

Every search is scoped by ``user_id`` *and* the requested ``upload_ids`` inside the vector store
query itself, so a forged upload id never reaches another user's chunks. Point ids are uuid5 of
(upload id, chunk index): a retried ingestion job overwrites instead of duplicating.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException

from pdfqa.errors import UpstreamUnavailable
from pdfqa.settings import Settings
from pdfqa.sparse import SparseVector

__all__ = [
    "ChunkPoint",
    "Hit",
    "QdrantVectorStore",
    "VectorStore",
    "collection_name",
    "open_vector_store",
    "point_id",
]

DENSE = "dense"
"""Name of the dense vector in every collection."""
SPARSE = "bm25"
"""Name of the sparse vector in every collection (``Modifier.IDF``: Qdrant applies the IDF)."""

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


class _ChunkPayload(msgspec.Struct, frozen=True):
    """The Qdrant payload of a chunk point; ``page`` (the first page) is there for filtering."""

    upload_id: str
    user_id: str
    chunk_index: int
    pages: list[int]
    page: int | None
    text: str


class VectorStore(Protocol):
    """Chunk vectors of every upload, searchable per user.

    Implementations raise :class:`~pdfqa.errors.UpstreamUnavailable` when the backing store
    fails or cannot be opened.
    """

    async def ensure_collection(self, embedder_name: str, dimensions: int) -> None:
        """Create (if missing) and select the collection of this embedder; idempotent.

        The collection name derives from the embedder name and dimensions, so switching the
        embedding model never mixes vectors of two models.
        """
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
        mode: Literal["hybrid", "dense", "sparse"] = "hybrid",
        prefetch_limit: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        with_dense: bool = False,
    ) -> list[Hit]:
        """Best ``limit`` chunks of ``user_id``'s ``upload_ids``, best first.

        ``hybrid`` fuses a dense and a sparse candidate list (``prefetch_limit`` each) by
        reciprocal-rank fusion, weighting the two rankings by ``weights`` (dense, sparse);
        ``dense`` and ``sparse`` use one of them alone. ``with_dense`` also returns each hit's
        stored dense vector.
        """
        ...

    async def scroll(self, *, upload_id: str, limit: int = 10_000) -> list[Hit]:
        """Points of one upload ordered by ``chunk_index`` (for tests and inspection)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~pdfqa.errors.UpstreamUnavailable` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release the client (and, in local mode, the storage folder lock)."""
        ...


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


def open_vector_store(settings: Settings) -> VectorStore:
    """The vector store ``settings`` ask for; no I/O happens until the first call.

    A Qdrant server when ``qdrant_url`` is set; otherwise the embedded engine chosen by
    ``embedded_vectors``: qdrant-edge under ``data_dir/edge`` (imported only then), or
    qdrant-client's local mode under ``data_dir/qdrant``.
    """
    if settings.qdrant_url is not None:
        return QdrantVectorStore(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    if settings.embedded_vectors == "edge":
        from pdfqa.store.edge import EdgeVectorStore

        return EdgeVectorStore(settings.data_dir / "edge")
    return QdrantVectorStore(path=settings.data_dir / "qdrant")


class QdrantVectorStore:
    """:class:`VectorStore` on a Qdrant server (``url``) or qdrant-client local mode (``path``)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (server mode) or path (local mode)")
        self._url = url
        self._api_key = api_key
        self._path = path
        self._collection: str | None = None
        self._open_lock = asyncio.Lock()
        # Exactly one of these is set once open: the async client (server mode), or the sync
        # client plus the single thread that creates and calls it (local mode).
        self._async_client: AsyncQdrantClient | None = None
        self._sync_client: QdrantClient | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def local(self) -> bool:
        """Whether this store runs qdrant-client's in-process local mode."""
        return self._path is not None

    # -- the one code path -------------------------------------------------------------------

    async def _open(self) -> None:
        async with self._open_lock:
            if self._async_client is not None or self._sync_client is not None:
                return
            if self._path is None:
                # No compatibility check: it starts a thread doing blocking HTTP and only
                # warns; ping() is the health check.
                self._async_client = AsyncQdrantClient(
                    url=self._url, api_key=self._api_key, check_compatibility=False
                )
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdfqa-qdrant-local")
            try:
                loop = asyncio.get_running_loop()
                self._sync_client = await loop.run_in_executor(
                    executor, _open_local_client, self._path
                )
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor

    async def _call(self, method: str, /, **kwargs: Any) -> Any:
        """Run one qdrant-client method: awaited (server) or on the local-mode thread."""
        await self._open()
        try:
            if self._executor is not None:
                call = functools.partial(getattr(self._sync_client, method), **kwargs)
                return await asyncio.get_running_loop().run_in_executor(self._executor, call)
            return await getattr(self._async_client, method)(**kwargs)
        except (ApiException, QdrantException) as err:
            raise UpstreamUnavailable(f"vector store request failed ({method})") from err

    def _require_collection(self) -> str:
        if self._collection is None:
            raise RuntimeError("VectorStore.ensure_collection() must be called first")
        return self._collection

    # -- VectorStore -------------------------------------------------------------------------

    async def ensure_collection(self, embedder_name: str, dimensions: int) -> None:
        name = collection_name(embedder_name, dimensions)
        if not await self._call("collection_exists", collection_name=name):
            try:
                await self._call(
                    "create_collection",
                    collection_name=name,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
            except UpstreamUnavailable:
                # Another process may have created it between our check and our create.
                if not await self._call("collection_exists", collection_name=name):
                    raise
        if not self.local:
            # Local mode has no payload indexes (it filters by brute force and warns on
            # create_payload_index), so they are created on servers only.
            info = await self._call("get_collection", collection_name=name)
            existing = set(info.payload_schema or {})
            wanted = {
                "user_id": models.KeywordIndexParams(
                    type=models.KeywordIndexType.KEYWORD, is_tenant=True
                ),
                "upload_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD),
            }
            for field, schema in wanted.items():
                if field not in existing:
                    await self._call(
                        "create_payload_index",
                        collection_name=name,
                        field_name=field,
                        field_schema=schema,
                        wait=True,
                    )
        self._collection = name

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(
                id=point_id(p.upload_id, p.chunk_index),
                vector={
                    DENSE: p.dense,
                    SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=msgspec.to_builtins(
                    _ChunkPayload(
                        upload_id=p.upload_id,
                        user_id=p.user_id,
                        chunk_index=p.chunk_index,
                        pages=p.pages,
                        page=p.pages[0] if p.pages else None,
                        text=p.text,
                    )
                ),
            )
            for p in points
        ]
        await self._call(
            "upsert", collection_name=self._require_collection(), points=structs, wait=True
        )

    async def delete_upload(self, upload_id: str) -> None:
        await self._call(
            "delete",
            collection_name=self._require_collection(),
            points_selector=models.FilterSelector(filter=_match(upload_id=upload_id)),
            wait=True,
        )

    async def count(self, *, upload_id: str | None = None, user_id: str | None = None) -> int:
        flt = _match(upload_id=upload_id, user_id=user_id)
        result = await self._call(
            "count",
            collection_name=self._require_collection(),
            count_filter=flt if flt.must else None,
            exact=True,
        )
        count: int = result.count
        return count

    async def search(
        self,
        *,
        user_id: str,
        upload_ids: Sequence[str],
        dense: Sequence[float],
        sparse: SparseVector,
        limit: int,
        mode: Literal["hybrid", "dense", "sparse"] = "hybrid",
        prefetch_limit: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        with_dense: bool = False,
    ) -> list[Hit]:
        collection = self._require_collection()
        if not upload_ids or limit <= 0:
            return []
        scope = _scope(user_id, upload_ids)
        dense_query = list(dense)
        sparse_query = models.SparseVector(indices=sparse.indices, values=sparse.values)
        has_terms = bool(sparse.indices)
        if mode == "sparse" and not has_terms:
            return []

        query: Any
        prefetch: list[models.Prefetch] | None = None
        using: str | None = None
        if mode == "dense":
            query, using = dense_query, DENSE
        elif mode == "sparse":
            query, using = sparse_query, SPARSE
        else:
            # The scope goes on each prefetch as well as on the fused query: candidates are
            # drawn from the user's uploads only, however the server propagates filters.
            prefetch = [
                models.Prefetch(query=dense_query, using=DENSE, filter=scope, limit=prefetch_limit)
            ]
            if has_terms:
                prefetch.append(
                    models.Prefetch(
                        query=sparse_query, using=SPARSE, filter=scope, limit=prefetch_limit
                    )
                )
            if has_terms and weights != (1.0, 1.0):
                query = models.RrfQuery(rrf=models.Rrf(weights=list(weights)))
            else:  # plain RRF: understood by every Qdrant server version
                query = models.FusionQuery(fusion=models.Fusion.RRF)

        response = await self._call(
            "query_points",
            collection_name=collection,
            query=query,
            using=using,
            prefetch=prefetch,
            query_filter=scope,
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE] if with_dense else False,
        )
        return [_hit(p.id, p.payload, p.score, p.vector) for p in response.points]

    async def scroll(self, *, upload_id: str, limit: int = 10_000) -> list[Hit]:
        records, _next = await self._call(
            "scroll",
            collection_name=self._require_collection(),
            scroll_filter=_match(upload_id=upload_id),
            limit=limit,
            with_payload=True,
            with_vectors=False,
        )
        hits = [_hit(r.id, r.payload, 0.0) for r in records]
        hits.sort(key=lambda h: h.chunk_index)
        return hits

    async def ping(self) -> None:
        await self._call("get_collections")

    async def aclose(self) -> None:
        async_client, sync_client, executor = (
            self._async_client,
            self._sync_client,
            self._executor,
        )
        self._async_client = self._sync_client = self._executor = None
        if async_client is not None:
            await async_client.close()
        if executor is not None and sync_client is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(executor, sync_client.close)
            finally:
                # The thread is idle now and exits by itself; joining it would block the loop.
                executor.shutdown(wait=False)


def _open_local_client(path: Path) -> QdrantClient:
    """Open qdrant-client local mode at ``path`` (on the local-mode thread)."""
    path.mkdir(parents=True, exist_ok=True)
    if _locked_by_another(path / ".lock"):
        raise _locked_error(path)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as err:
        # qdrant-client's own check (portalocker); reached only if another process took the
        # lock between our probe and the client's.
        if "already accessed" in str(err):
            raise _locked_error(path) from err
        raise


def _locked_by_another(lock_file: Path) -> bool:
    """Probe the flock qdrant-client's local mode holds on ``<path>/.lock``.

    qdrant-client raises a bare ``RuntimeError("Storage folder ... is already accessed by
    another instance of Qdrant client ...")`` and leaks the lock file's handle (a
    ``ResourceWarning`` later). Probing first lets us fail cleanly. ``flock`` locks belong to
    an open file description, so this also detects a second store in the same process.
    """
    if sys.platform == "win32" or not lock_file.exists():
        return False
    import fcntl

    with lock_file.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _locked_error(path: Path) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the local vector store at {path} is already open in another process (or another "
        "client); Qdrant local mode serves one process only. To run the API and separate "
        "workers, run a Qdrant server and set PDFQA_QDRANT_URL."
    )


def _match(*, upload_id: str | None = None, user_id: str | None = None) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("upload_id", upload_id), ("user_id", user_id))
        if value is not None
    ]
    return models.Filter(must=must)


def _scope(user_id: str, upload_ids: Sequence[str]) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id)),
            models.FieldCondition(key="upload_id", match=models.MatchAny(any=list(upload_ids))),
        ]
    )


def _hit(point: object, payload: object, score: float, vectors: object = None) -> Hit:
    data = msgspec.convert(payload, _ChunkPayload)
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
