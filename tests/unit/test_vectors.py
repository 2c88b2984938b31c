import asyncio
import random
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from pdfqa.errors import UpstreamUnavailable
from pdfqa.settings import Settings
from pdfqa.sparse import sparse_document, sparse_query
from pdfqa.store.vectors import (
    ChunkPoint,
    VectorStore,
    collection_name,
    open_vector_store,
    point_id,
)
from pdfqa.store.vectors.edge import EdgeVectorStore
from pdfqa.store.vectors.qdrant import QdrantVectorStore

DIMS = 16

Mode = Literal["hybrid", "dense", "sparse"]
Engine = Literal["local", "edge"]
ENGINES = ["local", "edge"]


def unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def random_dense(rng: random.Random) -> list[float]:
    return unit([rng.gauss(0, 1) for _ in range(DIMS)])


def chunk(
    upload_id: str,
    index: int,
    *,
    user_id: str = "alice",
    text: str | None = None,
    dense: list[float] | None = None,
    pages: list[int] | None = None,
) -> ChunkPoint:
    text = text if text is not None else f"chunk {index} of {upload_id}"
    return ChunkPoint(
        upload_id=upload_id,
        user_id=user_id,
        chunk_index=index,
        pages=pages if pages is not None else [index + 1],
        text=text,
        dense=dense if dense is not None else random_dense(random.Random(f"{upload_id}/{index}")),
        sparse=sparse_document(text),
    )


EDGE_COLLECTION = collection_name("test-embedder", DIMS)


def embedded(engine: Engine, data_dir: Path, embedder: str = "test-embedder") -> VectorStore:
    """The embedded store a user running without PDFQA_QDRANT_URL gets."""
    settings = Settings(data_dir=data_dir, embedded_vectors=engine)
    return open_vector_store(settings, embedder, DIMS)


def edge_store(root: Path) -> EdgeVectorStore:
    return EdgeVectorStore(root, EDGE_COLLECTION, DIMS)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    value: Engine = request.param
    return value


@pytest.fixture
async def store(engine: Engine, tmp_path: Path) -> AsyncIterator[VectorStore]:
    """The same behaviour, checked on both embedded engines."""
    vector_store = embedded(engine, tmp_path / "data")
    await vector_store.ping()  # opened, as the app's lifespan leaves it after its health check
    yield vector_store
    await vector_store.aclose()


def test_point_id_is_deterministic_uuid() -> None:
    assert point_id("up-1", 3) == point_id("up-1", 3)
    assert uuid.UUID(point_id("up-1", 3)).version == 5
    ids = {point_id(u, i) for u in ("up-1", "up-2", "up-13") for i in range(20)}
    assert len(ids) == 60


def test_collection_name_separates_models_and_sizes() -> None:
    names = {
        collection_name("all-MiniLM-L6-v2", 384),
        collection_name("all-MiniLM-L6-v2", 768),
        collection_name("text-embedding-3-small", 384),
        collection_name("a/b", 384),
        collection_name("a-b", 384),
    }
    assert len(names) == 5
    assert collection_name("all-MiniLM-L6-v2", 384) == collection_name("all-MiniLM-L6-v2", 384)


def test_open_vector_store_picks_the_configured_engine(tmp_path: Path) -> None:
    server = open_vector_store(
        Settings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:1"), "m", DIMS
    )
    assert isinstance(server, QdrantVectorStore)
    assert not server.local
    assert server.collection == collection_name("m", DIMS)
    edge = open_vector_store(Settings(data_dir=tmp_path), "m", DIMS)
    assert isinstance(edge, EdgeVectorStore)
    assert edge.collection == collection_name("m", DIMS)
    local = open_vector_store(Settings(data_dir=tmp_path, embedded_vectors="local"), "m", DIMS)
    assert isinstance(local, QdrantVectorStore)
    assert local.local


@pytest.mark.parametrize(("engine", "folder"), [("local", "qdrant"), ("edge", "edge")])
async def test_open_vector_store_does_no_io(tmp_path: Path, engine: Engine, folder: str) -> None:
    vector_store = embedded(engine, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    await vector_store.ping()
    assert (tmp_path / "data" / folder).is_dir()
    await vector_store.aclose()


async def test_the_first_call_creates_the_collection(engine: Engine, tmp_path: Path) -> None:
    vector_store = embedded(engine, tmp_path / "data")
    assert await vector_store.count() == 0  # no "select the collection" call before it
    await vector_store.upsert([chunk("up-1", 0)])
    assert await vector_store.count(upload_id="up-1") == 1
    await vector_store.aclose()


async def test_reupsert_replaces_instead_of_duplicating(store: VectorStore) -> None:
    await store.upsert([chunk("up-1", i) for i in range(5)])
    assert await store.count(upload_id="up-1") == 5
    await store.upsert([chunk("up-1", i, text=f"retried {i}") for i in range(5)])
    assert await store.count(upload_id="up-1") == 5
    assert [h.text for h in await store.scroll(upload_id="up-1")] == [
        f"retried {i}" for i in range(5)
    ]


async def test_delete_upload_removes_exactly_that_upload(store: VectorStore) -> None:
    await store.upsert([chunk("up-1", i) for i in range(4)])
    await store.upsert([chunk("up-2", i) for i in range(3)])
    await store.upsert([chunk("up-3", i, user_id="bob") for i in range(2)])
    await store.delete_upload("up-1")
    assert await store.count(upload_id="up-1") == 0
    assert await store.count(upload_id="up-2") == 3
    assert await store.count(upload_id="up-3") == 2
    assert await store.count(user_id="alice") == 3
    assert await store.count() == 5


async def test_payload_round_trips_in_chunk_order(store: VectorStore) -> None:
    points = [
        chunk("up-1", i, text=f"Page text \u00e9 {i}: $17,455", pages=[i + 2, i + 3])
        for i in range(12)
    ]
    await store.upsert(list(reversed(points)))
    hits = await store.scroll(upload_id="up-1")
    assert [(h.chunk_id, h.upload_id, h.user_id, h.chunk_index, h.pages, h.text) for h in hits] == [
        (point_id("up-1", p.chunk_index), p.upload_id, p.user_id, p.chunk_index, p.pages, p.text)
        for p in points
    ]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_hits_carry_their_stored_dense_vector_when_asked(
    store: VectorStore, mode: Mode
) -> None:
    points = [chunk("up-1", i, text=f"revenue figure {i}") for i in range(5)]
    await store.upsert(points)
    query = points[2].dense
    args = {"user_id": "alice", "upload_ids": ["up-1"], "dense": query, "limit": 3, "mode": mode}
    hits = await store.search(sparse=sparse_query("revenue figure 2"), with_dense=True, **args)
    assert hits
    by_id = {point_id("up-1", p.chunk_index): p.dense for p in points}
    for hit in hits:
        assert hit.dense is not None
        assert max(abs(a - b) for a, b in zip(hit.dense, by_id[hit.chunk_id], strict=True)) < 1e-4
    plain = await store.search(sparse=sparse_query("revenue figure 2"), **args)
    assert all(h.dense is None for h in plain)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_user_isolation(store: VectorStore, mode: Mode) -> None:
    text = "Form 10-K revenue $17,455 million"
    points = [chunk("alice-up", i, user_id="alice", text=text) for i in range(3)]
    await store.upsert(points)

    async def search(user_id: str, upload_ids: list[str]) -> set[int]:
        hits = await store.search(
            user_id=user_id,
            upload_ids=upload_ids,
            dense=points[0].dense,
            sparse=sparse_query(text),
            limit=10,
            mode=mode,
        )
        return {h.chunk_index for h in hits}

    # Bob forges Alice's upload id, alone and next to an id of his own.
    assert await search("bob", ["alice-up"]) == set()
    assert await search("bob", ["bob-up", "alice-up"]) == set()
    # The same query as Alice does find them, so the empty answers above mean something.
    assert await search("alice", ["alice-up"]) == {0, 1, 2}


async def test_search_only_within_requested_uploads(store: VectorStore) -> None:
    await store.upsert([chunk(u, i) for u in ("up-1", "up-2", "up-3") for i in range(3)])
    hits = await store.search(
        user_id="alice",
        upload_ids=["up-1", "up-3"],
        dense=random_dense(random.Random(0)),
        sparse=sparse_query("chunk"),
        limit=20,
    )
    assert {h.upload_id for h in hits} == {"up-1", "up-3"}
    assert len(hits) == 6
    assert (
        await store.search(
            user_id="alice", upload_ids=[], dense=[1.0] * DIMS, sparse=sparse_query("x"), limit=5
        )
        == []
    )


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_search_within_one_page(store: VectorStore, mode: Mode) -> None:
    # Two uploads, three pages each, two chunks a page; every chunk says "chunk".
    await store.upsert(
        [chunk(u, i, pages=[i // 2 + 1]) for u in ("up-1", "up-2") for i in range(6)]
    )

    async def pages(upload_ids: list[str], page: int | None) -> set[tuple[str, int]]:
        hits = await store.search(
            user_id="alice",
            upload_ids=upload_ids,
            dense=random_dense(random.Random(1)),
            sparse=sparse_query("chunk"),
            limit=20,
            mode=mode,
            page=page,
        )
        return {(h.upload_id, h.pages[0]) for h in hits}

    assert await pages(["up-1", "up-2"], 2) == {("up-1", 2), ("up-2", 2)}
    assert await pages(["up-2"], 3) == {("up-2", 3)}
    assert await pages(["up-1"], 9) == set()  # no such page
    assert len(await pages(["up-1"], None)) == 3  # without it, every page


async def test_hybrid_finds_exact_figure_dense_misses(store: VectorStore) -> None:
    rng = random.Random(7)
    query_dense = random_dense(rng)
    # 60 table chunks about revenue; their embeddings sit close to the question's, except the
    # one holding the figure asked about, whose embedding points elsewhere (as dense models do
    # with digit-heavy table rows).
    points = []
    for i in range(60):
        near = unit([q + rng.gauss(0, 0.3) for q in query_dense])
        figure = f"{rng.randint(10, 99)},{rng.randint(100, 999)}"
        points.append(chunk("10k", i, text=f"Total revenue {figure} million fiscal", dense=near))
    target = chunk(
        "10k", 60, text="Total revenue 17,455 million fiscal", dense=[-x for x in query_dense]
    )
    await store.upsert([*points, target])
    question = "What was total revenue of 17,455 million?"

    async def top(mode: Mode, limit: int = 5) -> list[int]:
        hits = await store.search(
            user_id="alice",
            upload_ids=["10k"],
            dense=query_dense,
            sparse=sparse_query(question),
            limit=limit,
            mode=mode,
        )
        return [h.chunk_index for h in hits]

    assert 60 not in await top("dense")
    assert (await top("sparse"))[0] == 60
    assert 60 in await top("hybrid")


async def test_sparse_scores_apply_idf(store: VectorStore) -> None:
    # Without IDF the triple "revenue" would win on term frequency; with IDF the rare "roe" wins.
    common = [chunk("up-1", i, text=f"revenue segment {i}") for i in range(30)]
    heavy = chunk("up-1", 30, text="revenue revenue revenue")
    rare = chunk("up-1", 31, text="roe segment")
    await store.upsert([*common, heavy, rare])
    hits = await store.search(
        user_id="alice",
        upload_ids=["up-1"],
        dense=[1.0] * DIMS,
        sparse=sparse_query("revenue roe"),
        limit=2,
        mode="sparse",
    )
    assert [h.chunk_index for h in hits] == [31, 30]


async def test_collections_are_per_embedder(
    store: VectorStore, engine: Engine, tmp_path: Path
) -> None:
    await store.upsert([chunk("up-1", 0)])
    assert await store.count() == 1
    await store.aclose()
    other = embedded(engine, tmp_path / "data", embedder="other-embedder")
    assert await other.count() == 0
    await other.aclose()
    again = embedded(engine, tmp_path / "data")
    assert await again.count() == 1
    await again.aclose()


async def test_second_client_on_the_folder_is_refused(
    store: VectorStore, engine: Engine, tmp_path: Path
) -> None:
    second = embedded(engine, tmp_path / "data")
    with pytest.raises(UpstreamUnavailable, match="PDFQA_QDRANT_URL"):
        await second.ping()
    await second.aclose()
    await store.aclose()
    await second.ping()  # the lock is released with the first store
    await second.aclose()


async def test_second_process_on_the_folder_is_refused(
    store: VectorStore, engine: Engine, tmp_path: Path
) -> None:
    await store.upsert([chunk("up-1", 0)])
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib
        from pdfqa.errors import UpstreamUnavailable
        from pdfqa.settings import Settings
        from pdfqa.store.vectors import open_vector_store

        async def main():
            settings = Settings(
                data_dir=pathlib.Path({str(tmp_path / "data")!r}), embedded_vectors={engine!r}
            )
            store = open_vector_store(settings, "test-embedder", 16)
            try:
                await store.ping()
            except UpstreamUnavailable as err:
                print("refused:", err)
            else:
                print("opened")
            await store.aclose()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().startswith("refused:")
    assert "PDFQA_QDRANT_URL" in stdout.decode()
    assert stderr == b""


async def test_unreachable_server_is_upstream_unavailable() -> None:
    # Port 1 on loopback refuses connections at once; no server needed.
    vector_store = QdrantVectorStore("c", DIMS, url="http://127.0.0.1:1")
    with pytest.raises(UpstreamUnavailable):
        await vector_store.ping()
    await vector_store.aclose()


# -- qdrant-edge only --------------------------------------------------------------------------


def _above_last_tie(hits: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The hits scoring above the last one, ties among them in id order."""
    return sorted((h for h in hits if h[1] > hits[-1][1]), key=lambda h: (-h[1], h[0]))


async def test_edge_points_and_deletes_survive_close_and_reopen(tmp_path: Path) -> None:
    root = tmp_path / "edge"
    store = edge_store(root)
    points = [chunk("up-1", i, text=f"revenue segment {i}") for i in range(40)]
    await store.upsert(points[:20])
    await store.upsert(points[20:])
    await store.upsert([chunk("up-2", i) for i in range(5)])
    await store.delete_upload("up-2")

    async def search(vector_store: VectorStore) -> list[tuple[str, float]]:
        hits = await vector_store.search(
            user_id="alice",
            upload_ids=["up-1", "up-2"],
            dense=points[7].dense,
            sparse=sparse_query("segment 7"),
            limit=5,
        )
        return [(h.chunk_id, h.score) for h in hits]

    before = await search(store)
    await store.aclose()

    reopened = edge_store(root)
    assert await reopened.count() == 40
    assert await reopened.count(upload_id="up-2") == 0
    assert [h.text for h in await reopened.scroll(upload_id="up-1")] == [p.text for p in points]
    after = await search(reopened)
    # The same scores, and the same hits wherever the order is defined: Qdrant orders hits
    # of equal fused score as it finds them, so a tie (common under reciprocal-rank fusion)
    # may come back in another order, or at the limit with another of the tied points.
    assert [score for _, score in after] == [score for _, score in before]
    assert _above_last_tie(after) == _above_last_tie(before)
    assert before[0][0] == after[0][0] == point_id("up-1", 7)
    await reopened.aclose()


async def test_edge_upserts_survive_a_killed_process(tmp_path: Path) -> None:
    # The writer is killed right after upsert() returns, before any flush: the points must
    # come back from the write-ahead log.
    root = tmp_path / "edge"
    points = [chunk("up-1", i) for i in range(50)]
    script = textwrap.dedent(
        f"""
        import asyncio, os, pathlib, signal, sys
        import msgspec
        from pdfqa.store.vectors import ChunkPoint, collection_name
        from pdfqa.store.vectors.edge import EdgeVectorStore

        async def main():
            points = msgspec.json.decode(sys.stdin.buffer.read(), type=list[ChunkPoint])
            store = EdgeVectorStore(
                pathlib.Path({str(root)!r}), collection_name("test-embedder", {DIMS}), {DIMS}
            )
            await store.upsert(points[:25])
            await store.upsert(points[25:])
            print("upserted", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        script,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(
        process.communicate(msgspec.json.encode(points)), timeout=120
    )
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout == b"upserted\n"

    store = edge_store(root)
    assert await store.count(upload_id="up-1") == 50
    assert [h.text for h in await store.scroll(upload_id="up-1")] == [p.text for p in points]
    await store.aclose()


async def test_edge_shard_held_by_another_engine_user_is_refused(tmp_path: Path) -> None:
    # Someone opened the shard with qdrant-edge directly (not through our folder lock): the
    # engine's own WAL lock error is reported like ours.
    import qdrant_edge

    root = tmp_path / "edge"
    store = edge_store(root)
    await store.ping()
    await store.aclose()
    shard = qdrant_edge.EdgeShard.load(str(root / EDGE_COLLECTION))
    try:
        with pytest.raises(UpstreamUnavailable, match="PDFQA_QDRANT_URL"):
            await store.count()
    finally:
        shard.close()
        await store.aclose()


async def test_edge_engine_errors_are_upstream_unavailable(tmp_path: Path) -> None:
    store = edge_store(tmp_path / "edge")
    with pytest.raises(UpstreamUnavailable, match="upsert"):
        await store.upsert([chunk("up-1", 0, dense=[1.0] * (DIMS + 1))])
    assert await store.count() == 0
    await store.aclose()


async def test_hybrid_search_gives_every_upload_a_fair_share(store: VectorStore) -> None:
    # A large upload whose every chunk is close to the query, and a small one whose one chunk
    # is less close: the small one still gets into the top results, ahead of the large
    # upload's second-best chunk.
    rng = random.Random(7)
    query = random_dense(rng)
    near = [unit([q + 0.05 * rng.gauss(0, 1) for q in query]) for _ in range(30)]
    large = [chunk("large", i, text=f"budget line {i}", dense=v) for i, v in enumerate(near)]
    far = unit([q + 0.8 * rng.gauss(0, 1) for q in query])
    small = [chunk("small", 0, text="a budget summary", dense=far)]
    await store.upsert([*large, *small])
    hits = await store.search(
        user_id="alice",
        upload_ids=["large", "small"],
        dense=query,
        sparse=sparse_query("budget"),
        limit=2,
    )
    assert {h.upload_id for h in hits} == {"large", "small"}
    alone = await store.search(
        user_id="alice",
        upload_ids=["large", "small"],
        dense=query,
        sparse=sparse_query("x"),
        limit=2,
        mode="dense",
    )
    assert {h.upload_id for h in alone} == {"large"}  # without the fair share it is crowded out


async def test_chunks_by_index_are_the_owners_only_in_order(store: VectorStore) -> None:
    await store.upsert([chunk("up-1", i) for i in range(6)])
    await store.upsert([chunk("up-2", i, user_id="bob") for i in range(3)])
    got = await store.chunks(user_id="alice", upload_id="up-1", indexes=[4, 1, 9, 2, 1])
    assert [h.chunk_index for h in got] == [1, 2, 4]  # 9 holds nothing; 1 asked twice
    assert [h.text for h in got] == ["chunk 1 of up-1", "chunk 2 of up-1", "chunk 4 of up-1"]
    assert await store.chunks(user_id="alice", upload_id="up-2", indexes=[0, 1]) == []  # bob's
    assert await store.chunks(user_id="alice", upload_id="up-1", indexes=[]) == []
