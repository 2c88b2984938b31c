"""A page the question names comes first, through a real ingestion and the real vector store."""

from __future__ import annotations

from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.resources import Resources
from pdfqa.retrieval import Tuning, retrieve
from tests.integration.conftest import ingest_ready, on_app
from tests.pdfs import mixed_pdf

Client = AsyncTestClient[Litestar]

PAGES = [
    (
        ["Minutes of the harbour board", "The board meets on the first Monday of every month."],
        False,
    ),
    (["Meeting dates", "The board met on 4 March 2021 and again on 2 June 2021."], False),
    (["Budget", "Dredging the channel cost 41,200 euros in 2021."], False),
    (["Signatures", "Signed by the chair, Ines Moreau, on 9 July 2021."], False),
]


async def ingest(client: Client) -> tuple[UUID, UUID]:
    _, body = await ingest_ready(client, mixed_pdf(PAGES))
    return UUID(body["user_id"]), UUID(body["id"])


async def pages(
    res: Resources, user_id: UUID, upload_id: UUID, query: str, tuning: Tuning
) -> list[int]:
    found = await retrieve(
        res,
        user_id=user_id,
        upload_names={upload_id: "board.pdf"},
        query=query,
        tuning=tuning,
        cache=False,
    )
    return [s.page for s in found.sources]


async def test_a_page_the_question_names_comes_first(client: Client) -> None:
    res: Resources = client.app.state.resources
    user_id, upload_id = await ingest(client)
    question = "Which date is mentioned on page 4?"
    named = on_app(client, pages, res, user_id, upload_id, question, Tuning())
    plain = on_app(client, pages, res, user_id, upload_id, question, Tuning(named_pages=False))
    # Page 2 is all about dates and wins on the words alone; the question asked about page 4.
    assert plain[0] == 2, plain
    assert named[0] == 4, named
    assert sorted(named) == sorted(set(named))  # still one source per page
    # A page the document does not have changes nothing.
    assert on_app(
        client, pages, res, user_id, upload_id, "Which date is on page 40?", Tuning()
    ) == on_app(
        client,
        pages,
        res,
        user_id,
        upload_id,
        "Which date is on page 40?",
        Tuning(named_pages=False),
    )


async def _present(
    res: Resources, user_id: UUID, upload_id: UUID, query: str
) -> tuple[float, bool]:
    found = await retrieve(
        res, user_id=user_id, upload_names={upload_id: "board.pdf"}, query=query, cache=False
    )
    return found.signals.present, found.relevant


async def test_the_figures_a_question_names_are_looked_for_in_the_whole_document(
    client: Client,
) -> None:
    res: Resources = client.app.state.resources
    user_id, upload_id = await ingest(client)
    # 2021 and 41,200 are in the document; 2024 and 52,000 are nowhere in it.
    present, relevant = on_app(
        client, _present, res, user_id, upload_id, "How much did dredging the channel cost in 2021?"
    )
    assert (present, relevant) == (1.0, True)
    half, _ = on_app(
        client, _present, res, user_id, upload_id, "Did dredging cost 41,200 euros in 2024?"
    )
    assert half == 0.5
    # A year the document never mentions: "not found", whatever else matches.
    none, relevant = on_app(
        client, _present, res, user_id, upload_id, "How much did dredging the channel cost in 2024?"
    )
    assert (none, relevant) == (0.0, False)
    # An instruction after the question, and a page number, are not looked for.
    instructed, _ = on_app(
        client,
        _present,
        res,
        user_id,
        upload_id,
        "What did dredging cost in 2021? Answer with 300 characters at most.",
    )
    assert instructed == 1.0
