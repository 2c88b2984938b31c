"""Vector store benchmark: pdfqa's embedded engines, and raw qdrant-edge-py for reference.

Measures, on this machine, the upsert throughput of 20,000 chunk points (384-dim dense + BM25
sparse, written in batches like the ingestion job) and the p50/p99 latency of the filtered
hybrid query pdfqa runs (user_id + 3 upload_ids, dense and sparse prefetch of 50, RRF, top 10) at
10k and 20k points. Also reports how often each engine returns the same top-10 as the first one.

Engines (``--engines``, comma-separated, in this order by default):

* ``store``: :class:`~pdfqa.store.vectors.edge.EdgeVectorStore` through the ``VectorStore`` protocol
  (batches of 32, the default ``embed_batch_size``), with the largest event-loop stall seen
  while it upserts and searches (qdrant-edge holds the GIL during each call);
* ``edge``: qdrant-edge-py called directly (batches of 64, one flush at the end);
* ``local``: qdrant-client local mode through ``QdrantVectorStore`` (batches of 64; slow:
  about five minutes for 20k points).

    .venv/bin/python bench/vectors.py [--points 20000] [--queries 50] [--engines store,edge]
        [--optimize]

Data: 20 users x 10 uploads x 100 chunks; synthetic Zipf-distributed text so the sparse vectors
have a realistic shape. Figures on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import qdrant_edge as qe

from pdfqa.sparse import SparseVector, sparse_document, sparse_query
from pdfqa.store.vectors import ChunkPoint, point_id
from pdfqa.store.vectors.edge import EdgeVectorStore
from pdfqa.store.vectors.qdrant import QdrantVectorStore

DIMS = 384
BATCH = 64
STORE_BATCH = 32
USERS = 20
UPLOADS_PER_USER = 10
PREFETCH = 50
LIMIT = 10


def make_points(n: int, rng: random.Random) -> list[ChunkPoint]:
    vocab = [f"w{i}" for i in range(20_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    per_upload = max(1, n // (USERS * UPLOADS_PER_USER))
    points = []
    for i in range(n):
        upload = i // per_upload
        user = upload // UPLOADS_PER_USER
        words = rng.choices(vocab, weights, k=120)
        words += [f"{rng.randint(1, 99)},{rng.randint(100, 999)}" for _ in range(5)]
        text = " ".join(words)
        dense = [rng.gauss(0, 1) for _ in range(DIMS)]
        norm = sum(x * x for x in dense) ** 0.5
        points.append(
            ChunkPoint(
                upload_id=f"up-{upload}",
                user_id=f"user-{user % USERS}",
                chunk_index=i % per_upload,
                pages=[1 + (i % per_upload) // 3],
                text=text,
                dense=[x / norm for x in dense],
                sparse=sparse_document(text),
            )
        )
    return points


class Query:
    def __init__(self, rng: random.Random, points: list[ChunkPoint]) -> None:
        probe = rng.choice(points)
        uploads = sorted({p.upload_id for p in points if p.user_id == probe.user_id})
        self.user_id = probe.user_id
        self.upload_ids = [probe.upload_id, *rng.sample(uploads, min(2, len(uploads) - 1))]
        self.upload_ids = list(dict.fromkeys(self.upload_ids))
        dense = [x + rng.gauss(0, 0.5) for x in probe.dense]
        norm = sum(x * x for x in dense) ** 0.5
        self.dense = [x / norm for x in dense]
        self.sparse: SparseVector = sparse_query(" ".join(rng.sample(probe.text.split(), 5)))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- qdrant-client local mode, through pdfqa's store ------------------------------------------


class LocalBench:
    name = "qdrant-client local (path)"

    def __init__(self, root: Path) -> None:
        self.store = QdrantVectorStore("bench", DIMS, path=root / "local")

    async def setup(self) -> None:
        await self.store.count()  # creates the collection

    async def upsert(self, points: list[ChunkPoint]) -> None:
        for start in range(0, len(points), BATCH):
            await self.store.upsert(points[start : start + BATCH])

    async def query(self, q: Query) -> list[str]:
        hits = await self.store.search(
            user_id=q.user_id,
            upload_ids=q.upload_ids,
            dense=q.dense,
            sparse=q.sparse,
            limit=LIMIT,
            prefetch_limit=PREFETCH,
        )
        return [h.chunk_id for h in hits]

    async def finish_load(self) -> None:
        pass

    async def close(self) -> None:
        await self.store.aclose()


# -- EdgeVectorStore, through the VectorStore protocol ----------------------------------------


class LoopStall:
    """Largest gap between ticks of a 1 ms timer on the event loop while it is running."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    def __enter__(self) -> LoopStall:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


class StoreBench:
    name = "EdgeVectorStore (protocol)"

    def __init__(self, root: Path) -> None:
        self.store = EdgeVectorStore(root / "store", "bench", DIMS)
        self.stall = LoopStall()

    async def setup(self) -> None:
        await self.store.count()  # opens the shard
        self.stall.__enter__()

    async def upsert(self, points: list[ChunkPoint]) -> None:
        for start in range(0, len(points), STORE_BATCH):
            await self.store.upsert(points[start : start + STORE_BATCH])

    async def query(self, q: Query) -> list[str]:
        hits = await self.store.search(
            user_id=q.user_id,
            upload_ids=q.upload_ids,
            dense=q.dense,
            sparse=q.sparse,
            limit=LIMIT,
            prefetch_limit=PREFETCH,
        )
        return [h.chunk_id for h in hits]

    async def finish_load(self) -> None:
        pass

    async def close(self) -> None:
        self.stall.__exit__()
        print(f"{self.name}: worst event-loop stall {self.stall.worst * 1000:.0f} ms")
        await self.store.aclose()


# -- qdrant-edge-py ---------------------------------------------------------------------------


class EdgeBench:
    name = "qdrant-edge-py"

    def __init__(self, root: Path, optimize: bool) -> None:
        self.path = root / "edge"
        self.optimize = optimize
        self.shard: qe.EdgeShard | None = None

    async def setup(self) -> None:
        config = qe.EdgeConfig(
            vectors={"dense": qe.EdgeVectorParams(size=DIMS, distance=qe.Distance.Cosine)},
            sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        self.shard = qe.EdgeShard.create(str(self.path), config)
        for field in ("user_id", "upload_id"):
            self.shard.update(
                qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
            )

    async def upsert(self, points: list[ChunkPoint]) -> None:
        assert self.shard is not None
        for start in range(0, len(points), BATCH):
            batch = [
                qe.Point(
                    point_id(p.upload_id, p.chunk_index),
                    {"dense": p.dense, "bm25": qe.SparseVector(p.sparse.indices, p.sparse.values)},
                    {
                        "upload_id": p.upload_id,
                        "user_id": p.user_id,
                        "chunk_index": p.chunk_index,
                        "pages": p.pages,
                        "page": p.pages[0],
                        "text": p.text,
                    },
                )
                for p in points[start : start + BATCH]
            ]
            self.shard.update(qe.UpdateOperation.upsert_points(batch))
        self.shard.flush()

    async def finish_load(self) -> None:
        assert self.shard is not None
        if self.optimize:
            self.shard.optimize()

    async def query(self, q: Query) -> list[str]:
        assert self.shard is not None
        scope = qe.Filter(
            must=[
                qe.FieldCondition("user_id", match=qe.MatchValue(q.user_id)),
                qe.FieldCondition("upload_id", match=qe.MatchAny(q.upload_ids)),
            ]
        )
        request = qe.QueryRequest(
            limit=LIMIT,
            query=qe.Fusion.Rrf(k=2),  # type: ignore[arg-type]  # stubs omit Fusion.Rrf
            prefetches=[
                qe.Prefetch(
                    limit=PREFETCH, query=qe.Query.Nearest(q.dense, using="dense"), filter=scope
                ),
                qe.Prefetch(
                    limit=PREFETCH,
                    query=qe.Query.Nearest(
                        qe.SparseVector(q.sparse.indices, q.sparse.values), using="bm25"
                    ),
                    filter=scope,
                ),
            ],
            filter=scope,
            with_payload=True,
        )
        return [str(p.id) for p in self.shard.query(request)]

    async def close(self) -> None:
        if self.shard is not None:
            self.shard.close()


async def run(
    engine: StoreBench | LocalBench | EdgeBench, points: list[ChunkPoint], queries: list[Query]
) -> tuple[dict[str, object], dict[int, list[list[str]]]]:
    half = len(points) // 2
    rows: dict[str, object] = {"engine": engine.name}
    results: dict[int, list[list[str]]] = {}
    await engine.setup()
    upsert_s = 0.0
    for size, chunk in ((half, points[:half]), (len(points), points[half:])):
        start = time.perf_counter()
        await engine.upsert(chunk)
        upsert_s += time.perf_counter() - start
        start = time.perf_counter()
        await engine.finish_load()
        rows[f"optimize@{size}"] = time.perf_counter() - start
        await engine.query(queries[0])  # warm-up
        latencies: list[float] = []
        results[size] = []
        for q in queries:
            start = time.perf_counter()
            results[size].append(await engine.query(q))
            latencies.append(time.perf_counter() - start)
        rows[f"p50@{size}"] = statistics.median(latencies) * 1000
        rows[f"p99@{size}"] = percentile(latencies, 0.99) * 1000
    rows["upsert pts/s"] = len(points) / upsert_s
    await engine.close()
    return rows, results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--optimize", action="store_true", help="run EdgeShard.optimize() (HNSW)")
    parser.add_argument("--engines", default="store,edge,local", help="comma-separated")
    args = parser.parse_args()
    names = args.engines.split(",")

    rng = random.Random(42)
    start = time.perf_counter()
    points = make_points(args.points, rng)
    print(f"generated {len(points)} points in {time.perf_counter() - start:.1f}s")
    queries = [Query(rng, points[: len(points) // 2]) for _ in range(args.queries)]

    with tempfile.TemporaryDirectory(prefix="pdfqa-bench-") as tmp:
        root = Path(tmp)
        table = []
        all_results = []
        engines: dict[str, Callable[[], StoreBench | LocalBench | EdgeBench]] = {
            "store": lambda: StoreBench(root),
            "edge": lambda: EdgeBench(root, args.optimize),
            "local": lambda: LocalBench(root),
        }
        for name in names:
            rows, results = await run(engines[name](), points, queries)
            table.append(rows)
            all_results.append(results)

    half, full = len(points) // 2, len(points)
    head = f"{'engine':<28} {'upsert pts/s':>12}"
    for size in (half, full):
        head += f" {'p50 ms @' + str(size):>14} {'p99 ms @' + str(size):>14}"
    print(head)
    for rows in table:
        line = f"{rows['engine']:<28} {rows['upsert pts/s']:>12.0f}"
        for size in (half, full):
            line += f" {rows[f'p50@{size}']:>14.1f} {rows[f'p99@{size}']:>14.1f}"
        print(line)
    if args.optimize and "edge" in names:
        edge_rows = table[names.index("edge")]
        print(f"edge optimize(): {edge_rows[f'optimize@{full}']:.1f}s at {full}")
    for name, results in zip(names[1:], all_results[1:], strict=True):
        for size in (half, full):
            same = [
                len(set(a) & set(b)) / max(1, len(a))
                for a, b in zip(all_results[0][size], results[size], strict=True)
            ]
            print(
                f"top-{LIMIT} agreement {names[0]} vs {name} @{size}: {statistics.mean(same):.1%}"
            )


if __name__ == "__main__":
    asyncio.run(main())
