"""``make eval``: retrieval quality on a question set over ../shared/corpus.

Ingests every document the questions name (once; ``--data`` keeps it between runs) through the
real pipeline, then asks each question through :func:`pdfqa.retrieval.retrieve`'s search with
dense-only, sparse-only and hybrid ranking, and prints hit@1, hit@5 and MRR (a hit: a retrieved
chunk's pages include one of the question's answer pages), per kind of question, plus how the
"not found" rule does on answerable and unanswerable questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.ingest import reset_database

from pdfqa.lifecycle import ingest_upload
from pdfqa.resources import Resources, open_resources
from pdfqa.retrieval import embed_query, retrieve
from pdfqa.settings import Settings, load_settings
from pdfqa.sparse import sparse_query
from pdfqa.store import uploads, users

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"
DB = "pdfqa_eval"
MODES = ("dense", "sparse", "hybrid")


def load_questions(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def ingest_corpus(res: Resources, docs: list[str]) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """The eval user's uploads by document name, ingesting the ones not there yet."""
    async with res.db.acquire() as conn:
        row = await conn.fetchrow("SELECT id FROM users WHERE email = 'eval@pdfqa.local'")
        if row is None:
            user = await users.create_user(conn, uuid.uuid4(), "eval@pdfqa.local", "-")
            user_id = user.id
        else:
            user_id = row["id"]
        have = {
            u.name: u for u in await uploads.list_for_user(conn, user_id) if u.status == "ready"
        }
    ids: dict[str, uuid.UUID] = {}
    for name in docs:
        if name in have:
            ids[name] = have[name].id
            continue
        upload_id = uuid.uuid4()
        data = (CORPUS / name).read_bytes()
        writer = await res.files.writer(str(upload_id))
        await writer.write(data)
        stored = await writer.commit()
        async with res.db.acquire() as conn:
            await uploads.insert(
                conn,
                upload_id=upload_id,
                user_id=user_id,
                name=name,
                size=stored.size,
                sha256=stored.sha256,
                job_id=f"eval:{upload_id}",
            )
        result = await ingest_upload(res, upload_id)
        print(f"  ingested {name}: {result.pages_total} pages, {result.chunks} chunks", flush=True)
        ids[name] = upload_id
    return user_id, ids


async def evaluate(settings: Settings, questions: list[dict[str, Any]], k: int) -> None:
    docs = sorted({q["doc"] for q in questions})
    async with open_resources(settings) as res:
        user_id, ids = await ingest_corpus(res, docs)
        await res.vectors.ensure_collection(res.embedder.name, res.embedder.dimensions)
        stats: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in MODES}
        misses: list[str] = []
        verdicts = {"answerable": [0, 0], "unanswerable": [0, 0]}
        for q in questions:
            answerable = bool(q["pages"])
            dense = await embed_query(res, q["question"])
            sparse = sparse_query(q["question"])
            for mode in MODES:
                hits = await res.vectors.search(
                    user_id=str(user_id),
                    upload_ids=[str(ids[q["doc"]])],
                    dense=dense,
                    sparse=sparse,
                    limit=k,
                    mode=mode,
                    prefetch_limit=settings.retrieval_prefetch,
                    weights=(settings.dense_weight, settings.sparse_weight),
                )
                if not answerable:
                    continue
                rank = next(
                    (i for i, h in enumerate(hits, 1) if set(h.pages) & set(q["pages"])), None
                )
                for bucket in ("all", q["kind"]):
                    stats[mode][bucket].append(0.0 if rank is None else 1.0 / rank)
                    stats[mode][bucket + "@1"].append(float(rank == 1))
                    stats[mode][bucket + "@5"].append(float(rank is not None and rank <= 5))
                if mode == "hybrid" and (rank is None or rank > 5):
                    misses.append(
                        f"  {q['id']} ({q['kind']}): {q['question']}  pages {q['pages']}, got {[h.pages for h in hits[:5]]}"
                    )
            found = await retrieve(
                res, user_id=user_id, upload_names={ids[q["doc"]]: q["doc"]}, query=q["question"]
            )
            key = "answerable" if answerable else "unanswerable"
            verdicts[key][0 if found.relevant else 1] += 1
    print()
    kinds = ["all"] + sorted({q["kind"] for q in questions if q["pages"]})
    print(f"{'ranking':<8}{'questions':<14}{'n':>4}{'hit@1':>8}{'hit@5':>8}{'MRR':>8}")
    for mode in MODES:
        for kind in kinds:
            rr = stats[mode][kind]
            if not rr:
                continue
            print(
                f"{mode:<8}{kind:<14}{len(rr):>4}{sum(stats[mode][kind + '@1']) / len(rr):>8.3f}"
                f"{sum(stats[mode][kind + '@5']) / len(rr):>8.3f}{sum(rr) / len(rr):>8.3f}"
            )
    a, u = verdicts["answerable"], verdicts["unanswerable"]
    print(
        f'\n"not found" rule: answerable questions answered {a[0]}/{sum(a)}, '
        f"unanswerable questions declared not found {u[1]}/{sum(u)}"
    )
    if misses:
        print("\nhybrid misses (not in the top 5):")
        print("\n".join(misses))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--data", type=Path, default=Path("./data/eval"), help="kept between runs")
    parser.add_argument("--fresh", action="store_true", help="re-ingest everything")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k.startswith("PDFQA_")}
    settings = load_settings(env)
    settings = Settings(
        **{
            f: getattr(settings, f)
            for f in Settings.__struct_fields__
            if f not in ("database_url", "data_dir")
        },
        database_url=f"postgresql://postgres@127.0.0.1:5432/{DB}",
        data_dir=args.data,
    )
    if args.fresh or not args.data.exists():
        asyncio.run(reset_database(DB))
        if args.data.exists():
            import shutil

            shutil.rmtree(args.data)
    print(f"pdfqa retrieval eval: {args.questions.name}, data in {args.data}", flush=True)
    asyncio.run(evaluate(settings, load_questions(args.questions), args.k))


if __name__ == "__main__":
    sys.exit(main())
