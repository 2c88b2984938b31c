"""The embedded vector store on qdrant-edge: Qdrant's engine in-process, no server.

:class:`EdgeVectorStore` implements :class:`~pdfqa.store.vectors.base.VectorStore` with the same
semantics as :class:`~pdfqa.store.vectors.qdrant.QdrantVectorStore` (same point ids, payloads,
scopes and RRF constant), on the ``EdgeShard`` of its collection under
``data_dir/edge/<collection>``.

Threading. qdrant-edge is synchronous and its calls hold the GIL while they run (measured: an
upsert, flush or optimize on another thread stalls every Python thread for its whole duration).
So every call runs on one dedicated thread, which keeps the shard single-threaded, but calls
must also stay *short*, because the event loop cannot run while one is in progress.

Durability. An upsert or delete returns once the operation is in the shard's write-ahead log,
which lives in memory-mapped files: it survives the process being killed (the WAL is replayed
on the next open). ``flush()`` writes the segments and syncs them to disk; it costs ~5-15 ms
(p99 ~120 ms) per call on a small machine, ten times an upsert of 32 points, so it is not run
per batch but at most once per :data:`FLUSH_DELAY_S` after writes, and on :meth:`aclose`.

Optimisation. Shards are created with HNSW indexing disabled (``indexing_threshold=0``). pdfqa
always filters by user and uploads, and with keyword indexes on both the engine scores only the
matching points: ~1 ms at 20k points, ~30 ms when one user's scope is 60k points. Building HNSW
took 12 s at 20k points with the GIL held, freezing the whole process, and made filtered queries
no faster. ``optimize()`` then only vacuums deleted points (when a segment is >= 20% deleted);
it runs once when a shard is opened, before the store serves it, and costs nothing otherwise.

One process per folder: the store holds a ``flock`` on ``data_dir/edge/.lock`` while open, so a
second process (or a second store) gets :class:`~pdfqa.errors.UpstreamUnavailable` at its first
call, ``ping()`` included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import qdrant_edge as qe

from pdfqa.errors import UpstreamUnavailable
from pdfqa.sparse import SparseVector
from pdfqa.store.vectors.base import (
    DENSE,
    RRF_K,
    SPARSE,
    ChunkPoint,
    Hit,
    Scope,
    SearchMode,
    candidate_scopes,
    decode_hit,
    encode_payload,
    owned_in_order,
    point_id,
)

if TYPE_CHECKING:
    from qdrant_edge import ConditionType

__all__ = ["FLUSH_DELAY_S", "EdgeVectorStore"]

log = logging.getLogger(__name__)

FLUSH_DELAY_S = 1.0
"""Longest time written points stay only in the WAL (page cache) before a flush syncs them."""

_T = TypeVar("_T")


class EdgeVectorStore:
    """:class:`~pdfqa.store.vectors.base.VectorStore` on the qdrant-edge shard of
    ``collection`` under ``root``.

    Construction does no I/O; the folder lock is taken and the shard opened by the first call.
    """

    def __init__(self, root: Path, collection: str, dimensions: int) -> None:
        self._root = root
        self._collection = collection
        self._dimensions = dimensions
        self._open_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        # Used on the store thread only: the folder lock and the open shard.
        self._lock_file: IO[bytes] | None = None
        self._open_shard: qe.EdgeShard | None = None
        # Loop side: whether the shard was written since its last flush, and the task that
        # will flush it.
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None

    @property
    def collection(self) -> str:
        return self._collection

    # -- the store thread --------------------------------------------------------------------

    async def _open(self) -> ThreadPoolExecutor:
        async with self._open_lock:
            if self._executor is not None:
                return self._executor
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdfqa-qdrant-edge")
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self._lock_folder)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor
            return executor

    async def _run(self, what: str, call: Callable[[], _T]) -> _T:
        """Run ``call`` on the store thread, opening the store first."""
        return await self._submit(await self._open(), what, call)

    async def _submit(self, executor: ThreadPoolExecutor, what: str, call: Callable[[], _T]) -> _T:
        """Run ``call`` on ``executor``; engine failures become ``UpstreamUnavailable``."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except Exception as err:
            # qdrant-edge raises bare ``Exception``s; anything more specific is our own bug.
            if type(err) is not Exception:
                raise
            if "WouldBlock" in str(err):
                raise _locked_error(self._root) from err
            raise UpstreamUnavailable(f"vector store request failed ({what}): {err}") from err

    def _lock_folder(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        handle = (self._root / ".lock").open("ab")
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise _locked_error(self._root) from None
        self._lock_file = handle

    def _shard(self) -> qe.EdgeShard:
        """The open shard of the collection, loading or creating it (store thread)."""
        shard = self._open_shard
        if shard is not None:
            return shard
        path = self._root / self._collection
        config = qe.EdgeConfig(
            vectors={
                DENSE: qe.EdgeVectorParams(size=self._dimensions, distance=qe.Distance.Cosine)
            },
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=0),
        )
        if (path / "edge_config.json").exists():
            shard = qe.EdgeShard.load(str(path), config)
        else:
            shard = qe.EdgeShard.create(str(path), config)
        try:
            existing = set(shard.info().payload_schema)
            for field in ("user_id", "upload_id"):
                if field not in existing:
                    shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
            # Vacuums deleted points if a segment is >= 20% deleted; instant otherwise.
            if shard.optimize():
                shard.flush()
        except BaseException:
            shard.close()
            raise
        self._open_shard = shard
        return shard

    def _flush(self) -> None:
        if self._open_shard is not None:  # closed meanwhile: closing flushed it
            self._open_shard.flush()

    def _close_all(self) -> None:
        try:
            shard, self._open_shard = self._open_shard, None
            if shard is not None:
                try:
                    shard.flush()
                finally:
                    shard.close()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    # -- flushing ----------------------------------------------------------------------------

    def _written(self) -> None:
        self._dirty = True
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_S)
        # Reset before flushing: a write landing from now on schedules the next flush.
        self._flusher = None
        self._dirty = False
        try:
            await self._run("flush", self._flush)
        except Exception:
            # Nothing is lost: the points are in the WAL; the next flush or close retries.
            log.warning("flushing the embedded vector store failed", exc_info=True)
            self._dirty = True

    # -- VectorStore -------------------------------------------------------------------------

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        batch = list(points)

        def call() -> None:
            self._shard().update(qe.UpdateOperation.upsert_points(_edge_points(batch)))

        await self._run("upsert", call)
        self._written()

    async def delete_upload(self, upload_id: str) -> None:
        upload = _must(Scope(upload_ids=(upload_id,)))
        operation = qe.UpdateOperation.delete_points_by_filter(upload)
        await self._run("delete", lambda: self._shard().update(operation))
        self._written()

    async def count(self, *, upload_id: str | None = None, user_id: str | None = None) -> int:
        scope = Scope(user_id=user_id, upload_ids=None if upload_id is None else (upload_id,))
        request = qe.CountRequest(exact=True, filter=_filter(scope))
        return await self._run("count", lambda: self._shard().count(request))

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
        if not upload_ids or limit <= 0:
            return []
        has_terms = bool(sparse.indices)
        if mode == "sparse" and not has_terms:
            return []
        dense_query = list(dense)
        wanted = [DENSE] if with_dense else False
        parts = candidate_scopes(user_id, upload_ids, page)

        def call() -> list[Hit]:
            scope = _must(Scope(user_id=user_id, upload_ids=tuple(upload_ids), page=page))
            dense_nearest = qe.Query.Nearest(dense_query, using=DENSE)
            sparse_nearest = qe.Query.Nearest(
                qe.SparseVector(sparse.indices, sparse.values), using=SPARSE
            )
            if mode in ("dense", "sparse"):
                request = qe.QueryRequest(
                    limit=limit,
                    query=dense_nearest if mode == "dense" else sparse_nearest,
                    filter=scope,
                    with_payload=True,
                    with_vector=wanted,
                )
            else:
                # Each prefetch carries its scope (the user and one upload, or all of them)
                # as in QdrantVectorStore; a stop-word-only question fuses dense lists alone.
                prefetches = []
                fusion_weights: list[float] = []
                for part in parts:
                    flt = _must(part)
                    prefetches.append(
                        qe.Prefetch(limit=prefetch_limit, query=dense_nearest, filter=flt)
                    )
                    fusion_weights.append(weights[0])
                    if has_terms:
                        prefetches.append(
                            qe.Prefetch(limit=prefetch_limit, query=sparse_nearest, filter=flt)
                        )
                        fusion_weights.append(weights[1])
                request = qe.QueryRequest(
                    limit=limit,
                    # The stubs list ``Fusion`` but the binding takes ``Fusion.Rrf(...)``.
                    query=qe.Fusion.Rrf(  # type: ignore[arg-type]
                        k=RRF_K, weights=fusion_weights if has_terms else None
                    ),
                    prefetches=prefetches,
                    filter=scope,
                    with_payload=True,
                    with_vector=wanted,
                )
            points = self._shard().query(request)
            return [decode_hit(p.id, p.payload, p.score, p.vector) for p in points]

        return await self._run("search", call)

    async def scroll(self, *, upload_id: str, limit: int = 10_000) -> list[Hit]:
        def call() -> list[Hit]:
            request = qe.ScrollRequest(
                limit=limit, filter=_filter(Scope(upload_ids=(upload_id,))), with_payload=True
            )
            records, _next = self._shard().scroll(request)
            hits = [decode_hit(r.id, r.payload, 0.0) for r in records]
            hits.sort(key=lambda h: h.chunk_index)
            return hits

        return await self._run("scroll", call)

    async def chunks(self, *, user_id: str, upload_id: str, indexes: Sequence[int]) -> list[Hit]:
        if not indexes:
            return []
        ids: list[int | uuid.UUID | str] = [point_id(upload_id, i) for i in dict.fromkeys(indexes)]

        def call() -> list[Hit]:
            records = self._shard().retrieve(ids, with_payload=True, with_vector=False)
            return [decode_hit(r.id, r.payload, 0.0) for r in records]

        return owned_in_order(await self._run("retrieve", call), user_id, upload_id)

    async def ping(self) -> None:
        await self._run("ping", lambda: self._shard().info())

    async def aclose(self) -> None:
        """Flush and close every shard and release the folder lock; a later call reopens."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        self._dirty = False
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await self._submit(executor, "close", self._close_all)
        finally:
            # The thread is idle now and exits by itself; joining it would block the loop.
            executor.shutdown(wait=False)


def _edge_points(points: list[ChunkPoint]) -> list[qe.Point]:
    return [
        qe.Point(
            point_id(p.upload_id, p.chunk_index),
            {DENSE: p.dense, SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values)},
            encode_payload(p),
        )
        for p in points
    ]


def _must(scope: Scope) -> qe.Filter:
    must: list[ConditionType] = [
        qe.FieldCondition(
            key, match=qe.MatchAny(value) if isinstance(value, list) else qe.MatchValue(value)
        )
        for key, value in scope.conditions()
    ]
    return qe.Filter(must=must)


def _filter(scope: Scope) -> qe.Filter | None:
    """The engine filter of ``scope``; None (every point) when it has no condition."""
    return _must(scope) if scope.conditions() else None


def _locked_error(path: Path) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the embedded vector store at {path} is already open in another process (or another "
        "store); the embedded engine (qdrant-edge) serves one process only. To run the API and "
        "separate workers, run a Qdrant server and set PDFQA_QDRANT_URL."
    )
