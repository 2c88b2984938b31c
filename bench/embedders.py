"""Compare the local embedding backends: speed, agreement with PyTorch, retrieval quality.

    .venv/bin/python bench/embedders.py            # backends at their defaults (~1-2 min)
    .venv/bin/python bench/embedders.py --sweep    # also batch sizes, micro-batches, ORT options

Chunks are ~200 word pieces cut from the first pages of uber_2021.pdf and lyft_2021.pdf (32
overlapping), as ingestion cuts them. Retrieval: hand-written questions, each with a phrase that
only the answering passage contains; a hit is a top-k chunk containing the phrase. Timings on a
shared machine are noisy: compare runs, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pypdfium2
from tokenizers import Tokenizer

from pdfqa.embeddings import (
    LocalEmbedder,
    _OnnxRunner,
    _TorchRunner,
    bundled_model_dir,
    ensure_onnx_export,
)
from pdfqa.settings import Settings

CORPUS = Path("/work/shared/corpus")
PAGES = 40
TIMING_CHUNKS = 300

QUESTIONS: list[tuple[str, str]] = [
    ("In how many countries is Uber's technology available?", "approximately 72 countries"),
    ("What are Uber's reportable segments?", "three operating and reportable segments"),
    ("Which logistics company did Uber acquire in 2021 to grow Freight?", "Tupelo Parent"),
    ("In how many cities does Uber's network operate?", "approximately 10,500 cities"),
    ("Who does Uber compete with in food delivery?", "DoorDash, Deliveroo"),
    ("Why did Transport for London refuse Uber a license?", "fit and proper"),
    ("What happened to Uber's ridesharing in Barcelona?", "Mobility products in Barcelona"),
    ("How does Uber measure employee engagement?", "employee engagement surveys"),
    ("Where can investors find Uber's SEC filings online?", "investor.uber.com"),
    ("What is Uber's risk around self-driving cars?", "fail to offer autonomous vehicle"),
    ("When did Lyft launch its ridesharing marketplace?", "In 2012, we launched our peer"),
    ("What is Lyft's Express Drive program?", "flexible car rentals program"),
    ("How many U.S. patents does Lyft hold?", "343 issued U.S. patents"),
    ("Who are Lyft's competitors in bike and scooter sharing?", "Lime and Bird"),
    ("How many employees did Lyft have at the end of 2021?", "4,453 employees"),
    ("Who developed the safety education that Lyft drivers must complete?", "RAINN"),
    ("What is the gender split of Lyft's workforce?", "59% male and 39% female"),
    ("Which self-driving car companies could compete with Lyft?", "Alphabet (Waymo)"),
    ("Who helps Lyft riders in an emergency during a ride?", "supported by ADT"),
    ("What shift away from car ownership does Lyft expect?", "Transportation-as-a-Service"),
]


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def load_chunks(tokenizer: Tokenizer, size: int = 200, overlap: int = 32) -> list[str]:
    chunks: list[str] = []
    for name in ("uber_2021", "lyft_2021"):
        pdf = pypdfium2.PdfDocument(CORPUS / f"{name}.pdf")
        try:
            text = squash(" ".join(pdf[i].get_textpage().get_text_range() for i in range(PAGES)))
        finally:
            pdf.close()
        offsets = tokenizer.encode(text, add_special_tokens=False).offsets
        for start in range(0, len(offsets), size - overlap):
            window = offsets[start : start + size]
            chunks.append(text[window[0][0] : window[-1][1]])
    return chunks


def time_it(encode: object, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    assert callable(encode)
    encode(texts[:8])  # warm-up
    t0 = time.perf_counter()
    parts = [encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    return np.concatenate(parts), len(texts) / (time.perf_counter() - t0)


def retrieval(chunks: list[str], vectors: np.ndarray, queries: np.ndarray) -> tuple[int, int]:
    top1 = top5 = 0
    for (_, phrase), query in zip(QUESTIONS, queries, strict=True):
        ranked = np.argsort(-(vectors @ query))[:5]
        hits = [phrase in chunks[i] for i in ranked]
        top1 += hits[0]
        top5 += any(hits)
    return top1, top5


async def main(sweep: bool, data_dir: Path, threads: int) -> None:
    model_dir = bundled_model_dir()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    chunks = load_chunks(tokenizer)
    for _, phrase in QUESTIONS:
        assert any(phrase in c for c in chunks), phrase
    lengths = [len(tokenizer.encode(c).ids) for c in chunks[:TIMING_CHUNKS]]
    print(
        f"{len(chunks)} chunks, timing on {TIMING_CHUNKS} (mean {np.mean(lengths):.0f} word "
        f"pieces), {len(QUESTIONS)} questions, {threads} threads"
    )

    settings = Settings(data_dir=data_dir, inference_threads=threads)
    for backend in ("onnx", "onnx-int8"):
        t0 = time.perf_counter()
        ensure_onnx_export(settings, backend, model_dir)
        print(f"first-start export {backend}: {time.perf_counter() - t0:.1f} s (0 if cached)")

    questions = [q for q, _ in QUESTIONS]
    results: dict[str, np.ndarray] = {}
    print("\nbackend     chunks/s  cos mean  cos min  top1  top5  top5-overlap-with-torch")
    reference_top5: list[set[int]] = []
    for backend in ("torch", "onnx", "onnx-int8"):
        embedder = LocalEmbedder(msgspec_replace(settings, backend))
        t0 = time.perf_counter()
        await embedder.start()
        load_s = time.perf_counter() - t0
        await embedder.embed_documents(chunks[:8])
        t0 = time.perf_counter()
        vectors: list[list[float]] = []
        for i in range(0, TIMING_CHUNKS, settings.embed_batch_size):
            end = min(i + settings.embed_batch_size, TIMING_CHUNKS)
            vectors += await embedder.embed_documents(chunks[i:end])
        rate = TIMING_CHUNKS / (time.perf_counter() - t0)
        for i in range(TIMING_CHUNKS, len(chunks), settings.embed_batch_size):
            vectors += await embedder.embed_documents(chunks[i : i + settings.embed_batch_size])
        queries = np.asarray([await embedder.embed_query(q) for q in questions])
        await embedder.aclose()
        matrix = np.asarray(vectors)
        results[backend] = matrix
        cos = (matrix * results["torch"]).sum(axis=1)
        top1, top5 = retrieval(chunks, matrix, queries)
        tops = [set(np.argsort(-(matrix @ q))[:5].tolist()) for q in queries]
        if backend == "torch":
            reference_top5 = tops
        overlap = np.mean([len(a & b) / 5 for a, b in zip(tops, reference_top5, strict=True)])
        print(
            f"{backend:<10} {rate:8.1f}  {cos.mean():8.4f} {cos.min():8.4f}  {top1:4d}  "
            f"{top5:4d}  {overlap:.2f}   (start {load_s:.1f} s)"
        )

    if sweep:
        await asyncio.to_thread(run_sweep, settings, model_dir, chunks[:TIMING_CHUNKS], results)


def msgspec_replace(settings: Settings, backend: str) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, local_embedding_backend=backend)  # type: ignore[arg-type]


def run_sweep(
    settings: Settings, model_dir: Path, texts: list[str], results: dict[str, np.ndarray]
) -> None:
    reference = results["torch"][: len(texts)]
    tokenizer = model_dir / "tokenizer.json"
    threads = settings.inference_threads
    print("\nsweep (chunks/s over", len(texts), "chunks; cos = mean agreement with torch)")
    torch_runner = _TorchRunner(model_dir, threads, 32)
    for batch in (32, 64, 128):
        torch_runner._batch_size = batch
        _, rate = time_it(torch_runner.encode, texts, batch)
        print(f"  torch      batch {batch:3d}: {rate:6.1f}")
    del torch_runner
    for backend in ("onnx", "onnx-int8"):
        path = ensure_onnx_export(settings, backend, model_dir)
        for batch in (32, 64, 128):
            runner = _OnnxRunner(path, tokenizer, threads)
            _, rate = time_it(runner.encode, texts, batch)
            print(f"  {backend:<10} batch {batch:3d} micro 16 sorted: {rate:6.1f}")
        for micro, sort in ((64, False), (64, True), (32, True), (8, True), (4, True)):
            runner = _OnnxRunner(path, tokenizer, threads, micro_batch=micro, sort_by_length=sort)
            _, rate = time_it(runner.encode, texts, 64)
            label = "sorted" if sort else "unsorted"
            print(f"  {backend:<10} batch  64 micro {micro:2d} {label}: {rate:6.1f}")
        for level in ("basic", "extended"):
            runner = _OnnxRunner(path, tokenizer, threads, graph_optimization=level)
            vectors, rate = time_it(runner.encode, texts, 64)
            cos = float((vectors * reference).sum(axis=1).mean())
            print(f"  {backend:<10} batch  64 graph {level:<8}: {rate:6.1f}  cos {cos:.4f}")
        if threads != 1:
            runner = _OnnxRunner(path, tokenizer, 1)
            _, rate = time_it(runner.encode, texts, 64)
            print(f"  {backend:<10} batch  64 1 thread: {rate:6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also sweep batch and ORT options")
    parser.add_argument("--data-dir", type=Path, help="reuse an export cache (default: temp)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: cores)")
    args = parser.parse_args()
    import os

    threads = args.threads or os.cpu_count() or 1
    if args.data_dir:
        asyncio.run(main(args.sweep, args.data_dir, threads))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(args.sweep, Path(tmp), threads))
