"""The pipeline's bookkeeping: safe checkpoints, chunker snapshots, task-group errors."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from pdfqa.chunking import Chunker, ChunkerState, TokenCounter, word_piece_counter
from pdfqa.embeddings import bundled_model_dir
from pdfqa.errors import IngestError
from pdfqa.ingest import Checkpoint, _Batch, _Tracker, unwrap


@pytest.fixture(scope="module")
def count() -> TokenCounter:
    return word_piece_counter(bundled_model_dir() / "tokenizer.json")


def page_text(page: int) -> str:
    return "\n\n".join(
        " ".join(f"Paragraph {p} sentence {i} on page {page} discusses costs." for i in range(7))
        for p in range(3)
    )


def checkpoint(pages_done: int) -> Checkpoint:
    return Checkpoint(
        fingerprint="f", pages_done=pages_done, pages_skipped=0, chunks=0, chunker=b"", pending=[]
    )


def test_a_checkpoint_is_safe_only_once_every_batch_before_it_is_stored() -> None:
    tracker = _Tracker(pages_total=10)
    tracker.offer(1, checkpoint(3))  # after page 3, batch 0 had been sent
    tracker.offer(2, checkpoint(6))
    tracker.offer(3, checkpoint(10))
    tracker.finish(_Batch(1, []))  # out of order: nothing is safe until batch 0 is stored
    assert tracker.safe is None
    assert tracker.pages_done == 0
    tracker.finish(_Batch(0, []))
    assert tracker.safe is not None
    assert tracker.pages_done == 6
    tracker.finish(_Batch(2, []))
    assert tracker.pages_done == 10


def test_a_restored_chunker_cuts_exactly_as_an_uninterrupted_one(count: TokenCounter) -> None:
    def make() -> Chunker:
        return Chunker(count, target_tokens=60, overlap_tokens=12, max_tokens=254)

    whole = make()
    expected = [c for page in range(1, 9) for c in whole.add_page(page, page_text(page))]
    expected += whole.finish()

    first = make()
    got = [c for page in range(1, 5) for c in first.add_page(page, page_text(page))]
    state = msgspec.msgpack.encode(first.snapshot())
    resumed = make()  # a new process: nothing but the bytes carries over
    resumed.restore(msgspec.msgpack.decode(state, type=ChunkerState))
    got += [c for page in range(5, 9) for c in resumed.add_page(page, page_text(page))]
    got += resumed.finish()

    assert got == expected
    assert len({c.index for c in got}) == len(got)


async def test_a_task_group_failure_is_unwrapped_to_the_error_itself() -> None:
    async def fails() -> None:
        raise IngestError("page 3 needed more than 1536 MB of memory")

    async def waits() -> None:
        await asyncio.sleep(10)

    async def run() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(waits())
            tasks.create_task(fails())

    with pytest.raises(BaseExceptionGroup) as caught:
        await run()
    error = unwrap(caught.value)
    assert isinstance(error, IngestError)
    assert "memory" in str(error)
