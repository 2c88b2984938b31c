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
