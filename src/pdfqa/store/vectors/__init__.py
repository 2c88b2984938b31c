"""The vector store: chunk points with a dense and a BM25 sparse vector, searched per user.

One protocol (:class:`~pdfqa.store.vectors.base.VectorStore`, in :mod:`.base` with the types,
the payload codec, point ids and the scope filter) and one module per engine:

* :mod:`.qdrant`: a Qdrant **server** (``PDFQA_QDRANT_URL``) or qdrant-client's **local** mode
  (``embedded_vectors="local"``);
* :mod:`.edge`: **qdrant-edge**, Qdrant's engine in-process (the embedded default).

Every search is scoped by ``user_id`` *and* the requested ``upload_ids`` inside the engine's
query itself, so a forged upload id never reaches another user's chunks. Point ids are uuid5 of
(upload id, chunk index): a retried ingestion job overwrites instead of duplicating.
"""

from __future__ import annotations

from pdfqa.settings import Settings
from pdfqa.store.vectors.base import (
    ChunkPoint,
    Hit,
    Scope,
    SearchMode,
    VectorStore,
    collection_name,
    point_id,
)

__all__ = [
    "ChunkPoint",
    "Hit",
    "Scope",
    "SearchMode",
    "VectorStore",
    "collection_name",
    "open_vector_store",
    "point_id",
]


def open_vector_store(settings: Settings, embedder_name: str, dimensions: int) -> VectorStore:
    """The vector store ``settings`` ask for, on the collection of this embedder and size.

    A Qdrant server when ``qdrant_url`` is set; otherwise the embedded engine chosen by
    ``embedded_vectors``: qdrant-edge under ``data_dir/edge`` (imported only then), or
    qdrant-client's local mode under ``data_dir/qdrant``. No I/O happens until the first call.
    """
    collection = collection_name(embedder_name, dimensions)
    if settings.embedded_vectors == "edge" and settings.qdrant_url is None:
        from pdfqa.store.vectors.edge import EdgeVectorStore

        return EdgeVectorStore(settings.data_dir / "edge", collection, dimensions)
    from pdfqa.store.vectors.qdrant import QdrantVectorStore

    if settings.qdrant_url is not None:
        return QdrantVectorStore(
            collection, dimensions, url=settings.qdrant_url, api_key=settings.qdrant_api_key
        )
    return QdrantVectorStore(collection, dimensions, path=settings.data_dir / "qdrant")
