"""The text a reader gets for each source: the passage and its neighbours on the same page.

A passage is cut to fit the embedder (about 200 word pieces), so the figure or name a question
asks for is often in the sentence before or after the one that matched. The reader (a language
model, or the extractive answerer) gets each source's passage widened by the chunks next to it
on the same page, up to a budget (``PDFQA_CONTEXT_TOKENS``), the chunks after the passage
taken first: the citation still points at the passage and its page, and a chunk from another
page is never added, so everything a source's context says is on the page it cites.

Consecutive chunks of a page overlap (the next one repeats the previous one's last sentences,
:mod:`pdfqa.chunking`); the repeated text is given once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from pdfqa.store.vectors import Hit, VectorStore

__all__ = ["CHARS_PER_TOKEN", "NEIGHBOURS", "around", "contexts", "join_overlapping"]

CHARS_PER_TOKEN = 4
"""Characters per word piece, to turn the token budget into characters (English averages 4)."""
NEIGHBOURS = 4
"""Chunks fetched on each side of a passage (more than a budget of ~1,000 word pieces fills)."""
MAX_OVERLAP_CHARS = 2_000
"""No overlap between two chunks is longer than this (32 word pieces of sentences)."""


async def contexts(
    vectors: VectorStore, user_id: UUID, hits: Sequence[Hit], budget_tokens: int
) -> list[str]:
    """The context of each hit, in order (one fetch per upload for all their neighbours)."""
    if budget_tokens <= 0:
        return [h.text for h in hits]
    wanted: dict[str, set[int]] = {}
    for hit in hits:
        near = {hit.chunk_index + d for d in range(-NEIGHBOURS, NEIGHBOURS + 1) if d}
        wanted.setdefault(hit.upload_id, set()).update(i for i in near if i >= 0)
    chunks: dict[tuple[str, int], Hit] = {}
    for upload_id, indexes in wanted.items():
        found = await vectors.chunks(
            user_id=str(user_id), upload_id=upload_id, indexes=sorted(indexes)
        )
        chunks.update(((c.upload_id, c.chunk_index), c) for c in found)
    budget = budget_tokens * CHARS_PER_TOKEN
    return [around(hit, chunks, budget) for hit in hits]


def around(hit: Hit, chunks: Mapping[tuple[str, int], Hit], budget_chars: int) -> str:
    """``hit``'s text widened by its neighbours on the same page, within ``budget_chars``."""
    before: list[Hit] = []
    after: list[Hit] = []
    size = len(hit.text)
    steps = {"after": 1, "before": 1}
    while steps:
        for side in ("after", "before"):
            if side not in steps:
                continue
            offset = steps[side] if side == "after" else -steps[side]
            neighbour = chunks.get((hit.upload_id, hit.chunk_index + offset))
            if (
                neighbour is None
                or neighbour.pages != hit.pages
                or size + len(neighbour.text) > budget_chars
            ):
                del steps[side]
                continue
            (after if side == "after" else before).append(neighbour)
            size += len(neighbour.text)
            steps[side] += 1
    text = ""
    for part in [*reversed(before), hit, *after]:
        text = join_overlapping(text, part.text)
    return text


def join_overlapping(first: str, second: str) -> str:
    """``first`` then ``second``, the text that ends one and starts the other given once."""
    if not first:
        return second
    if not second:
        return first
    tail = first[-MAX_OVERLAP_CHARS:]
    # The longest suffix of ``tail`` that starts ``second``: the overlap is whole units, so it
    # starts at a place where ``second``'s first characters occur in ``tail``.
    probe = second[: min(len(second), 16)]
    start = tail.find(probe)
    while start != -1:
        if second.startswith(tail[start:]):
            rest = second[len(tail) - start :]
            return first + rest
        start = tail.find(probe, start + 1)
    separator = "\n" if "\n" in (first[-1], second[0]) else " "
    return f"{first}{separator}{second}"
