"""The vector store on qdrant-client: a Qdrant server, or qdrant-client's local mode.

* **server** (``PDFQA_QDRANT_URL`` set): ``AsyncQdrantClient`` over HTTP;
* **local** (embedded, ``embedded_vectors="local"``): qdrant-client's local mode under
  ``data_dir/qdrant``. Local mode computes in-process (brute force, numpy) and is not
  thread-safe, so the sync ``QdrantClient`` is created and called on one dedicated thread and
  never on the event loop. Its folder can be opened by one process at a time; a second process
  gets :class:`~pdfqa.errors.UpstreamUnavailable` telling the operator to run a Qdrant server.

The collection is created (with its payload indexes, on a server) when the client is opened,
once per store: questions cost one request each.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException

from pdfqa.errors import UpstreamUnavailable
from pdfqa.sparse import SparseVector
from pdfqa.store.vectors.base import (
    DENSE,
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

__all__ = ["QdrantVectorStore"]


class QdrantVectorStore:
    """:class:`~pdfqa.store.vectors.base.VectorStore` on a Qdrant server (``url``) or
    qdrant-client local mode (``path``), fixed to one collection."""

    def __init__(
        self,
        collection: str,
        dimensions: int,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (server mode) or path (local mode)")
        self._collection = collection
        self._dimensions = dimensions
        self._url = url
        self._api_key = api_key
        self._path = path
        self._open_lock = asyncio.Lock()
        self._ready = False
        # Exactly one of these is set once open: the async client (server mode), or the sync
        # client plus the single thread that creates and calls it (local mode).
        self._async_client: AsyncQdrantClient | None = None
        self._sync_client: QdrantClient | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def local(self) -> bool:
        """Whether this store runs qdrant-client's in-process local mode."""
        return self._path is not None

    # -- opening -----------------------------------------------------------------------------

    async def _open(self, *, collection: bool) -> None:
        if self._ready or (not collection and self._connected):
            return
        async with self._open_lock:
            if not self._connected:
                await self._connect()
            if collection and not self._ready:
                await self._create_collection()
                self._ready = True

    @property
    def _connected(self) -> bool:
        return self._async_client is not None or self._sync_client is not None

    async def _connect(self) -> None:
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
            self._sync_client = await loop.run_in_executor(executor, _open_local_client, self._path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    async def _create_collection(self) -> None:
        name = self._collection
        if not await self._invoke("collection_exists", collection_name=name):
            try:
                await self._invoke(
                    "create_collection",
                    collection_name=name,
                    vectors_config={
                        DENSE: models.VectorParams(
                            size=self._dimensions, distance=models.Distance.COSINE
                        )
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
            except UpstreamUnavailable:
                # Another process may have created it between our check and our create.
                if not await self._invoke("collection_exists", collection_name=name):
                    raise
        if self.local:
            # Local mode has no payload indexes (it filters by brute force and warns on
            # create_payload_index), so they are created on servers only.
            return
        info = await self._invoke("get_collection", collection_name=name)
        existing = set(info.payload_schema or {})
        wanted = {
            "user_id": models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            ),
            "upload_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD),
        }
        for field, schema in wanted.items():
            if field not in existing:
                await self._invoke(
                    "create_payload_index",
                    collection_name=name,
                    field_name=field,
                    field_schema=schema,
                    wait=True,
                )

    async def _invoke(self, method: str, /, **kwargs: Any) -> Any:
        """Run one qdrant-client method: awaited (server) or on the local-mode thread."""
        try:
            if self._executor is not None:
                call = functools.partial(getattr(self._sync_client, method), **kwargs)
                return await asyncio.get_running_loop().run_in_executor(self._executor, call)
            return await getattr(self._async_client, method)(**kwargs)
        except (ApiException, QdrantException) as err:
            raise UpstreamUnavailable(f"vector store request failed ({method})") from err

    async def _call(self, method: str, /, **kwargs: Any) -> Any:
        """One request on the collection, opening the client and the collection first."""
        await self._open(collection=True)
        return await self._invoke(method, collection_name=self._collection, **kwargs)

    # -- VectorStore -------------------------------------------------------------------------

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
                payload=encode_payload(p),
            )
            for p in points
        ]
        await self._call("upsert", points=structs, wait=True)

    async def delete_upload(self, upload_id: str) -> None:
        await self._call(
            "delete",
            points_selector=models.FilterSelector(filter=_filter(Scope(upload_ids=(upload_id,)))),
            wait=True,
        )

    async def count(self, *, upload_id: str | None = None, user_id: str | None = None) -> int:
        scope = Scope(user_id=user_id, upload_ids=None if upload_id is None else (upload_id,))
        flt = _filter(scope)
        result = await self._call("count", count_filter=flt if flt.must else None, exact=True)
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
        mode: SearchMode = "hybrid",
        prefetch_limit: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        with_dense: bool = False,
        page: int | None = None,
    ) -> list[Hit]:
        if not upload_ids or limit <= 0:
            return []
        scope = _filter(Scope(user_id=user_id, upload_ids=tuple(upload_ids), page=page))
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
            # Each prefetch carries its scope (the user and one upload, or all of them) as
            # well as the fused query: candidates come from the user's uploads only.
            prefetch = []
            fusion_weights: list[float] = []
            for part in candidate_scopes(user_id, upload_ids, page):
                flt = _filter(part)
                prefetch.append(
                    models.Prefetch(
                        query=dense_query, using=DENSE, filter=flt, limit=prefetch_limit
                    )
                )
                fusion_weights.append(weights[0])
                if has_terms:
                    prefetch.append(
                        models.Prefetch(
                            query=sparse_query, using=SPARSE, filter=flt, limit=prefetch_limit
                        )
                    )
                    fusion_weights.append(weights[1])
            if has_terms and weights != (1.0, 1.0):
                query = models.RrfQuery(rrf=models.Rrf(weights=fusion_weights))
            else:  # plain RRF: understood by every Qdrant server version
                query = models.FusionQuery(fusion=models.Fusion.RRF)

        response = await self._call(
            "query_points",
            query=query,
            using=using,
            prefetch=prefetch,
            query_filter=scope,
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE] if with_dense else False,
        )
        return [decode_hit(p.id, p.payload, p.score, p.vector) for p in response.points]

    async def scroll(self, *, upload_id: str, limit: int = 10_000) -> list[Hit]:
        records, _next = await self._call(
            "scroll",
            scroll_filter=_filter(Scope(upload_ids=(upload_id,))),
            limit=limit,
            with_payload=True,
            with_vectors=False,
        )
        hits = [decode_hit(r.id, r.payload, 0.0) for r in records]
        hits.sort(key=lambda h: h.chunk_index)
        return hits

    async def chunks(self, *, user_id: str, upload_id: str, indexes: Sequence[int]) -> list[Hit]:
        if not indexes:
            return []
        records = await self._call(
            "retrieve",
            ids=[point_id(upload_id, i) for i in dict.fromkeys(indexes)],
            with_payload=True,
            with_vectors=False,
        )
        hits = [decode_hit(r.id, r.payload, 0.0) for r in records]
        return owned_in_order(hits, user_id, upload_id)

    async def ping(self) -> None:
        await self._open(collection=False)
        await self._invoke("get_collections")

    async def aclose(self) -> None:
        async_client, sync_client, executor = (
            self._async_client,
            self._sync_client,
            self._executor,
        )
        self._async_client = self._sync_client = self._executor = None
        self._ready = False
        if async_client is not None:
            await async_client.close()
        if executor is not None and sync_client is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(executor, sync_client.close)
            finally:
                # The thread is idle now and exits by itself; joining it would block the loop.
                executor.shutdown(wait=False)


def _filter(scope: Scope) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(
            key=key,
            match=models.MatchAny(any=value)
            if isinstance(value, list)
            else models.MatchValue(value=value),
        )
        for key, value in scope.conditions()
    ]
    return models.Filter(must=must)


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
