"""Conversations people can find again: titled from the first question, renamed, searched, with
documents added or removed (real PostgreSQL, Redis, arq worker, local Qdrant; no model)."""

from __future__ import annotations

import uuid
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.conversations import title_for
from pdfqa.resources import Resources
from tests.integration.conftest import login, on_app, run_jobs, upload
from tests.integration.test_conversations import ask_sse, conversation, ready_upload

Client = AsyncTestClient[Litestar]


def test_a_long_question_makes_a_title_cut_at_a_word() -> None:
    question = "What does the document say about " + "reinforcement learning " * 10 + "?"
    title = title_for(question)
    assert len(title) <= 80
    assert title.endswith("\u2026")
    assert title[:-1].split()[-1] in ("reinforcement", "learning")
    assert title_for("  Short\nquestion?  ") == "Short question?"


async def test_the_first_question_names_an_untitled_conversation_and_renaming_sticks(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    doc = await ready_upload(client, resources, headers, corpus / "quivr_sample.pdf")
    untitled = await conversation(client, headers, doc)
    assert untitled["title"] == "quivr_sample.pdf"
    assert untitled["title_auto"] is True
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": [doc], "title": "Mine"}, headers=headers
    )
    titled = r.json()
    assert titled["title_auto"] is False

    await ask_sse(client, headers, untitled["id"], "What is this document about?")
    await ask_sse(client, headers, untitled["id"], "And who wrote it?")
    await ask_sse(client, headers, titled["id"], "What is this document about?")
    listed = {
        c["id"]: c
        for c in (await client.get("/api/v1/conversations", headers=headers)).json()["items"]
    }
    assert listed[untitled["id"]]["title"] == "What is this document about?"  # the first one
    assert listed[titled["id"]]["title"] == "Mine"  # a given title is kept
    assert listed[untitled["id"]]["created_at"] <= listed[untitled["id"]]["updated_at"]

    url = f"/api/v1/conversations/{untitled['id']}"
    r = await client.patch(url, json={"title": "  About Quivr\u200b  "}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "About Quivr"
    assert (await client.get(url, headers=headers)).json()["title"] == "About Quivr"
    for bad in ({"title": "   "}, {"title": "x" * 201}, {"title": "two\nlines"}):
        assert (await client.patch(url, json=bad, headers=headers)).status_code == 400, bad
    other = await login(client)
    assert (await client.patch(url, json={"title": "Theirs"}, headers=other)).status_code == 404
    missing = f"/api/v1/conversations/{uuid.uuid4()}"
    assert (await client.patch(missing, json={"title": "x"}, headers=headers)).status_code == 404


async def test_conversations_are_searched_by_title_and_question(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    doc = await ready_upload(client, resources, headers, corpus / "quivr_sample.pdf")
    a = await conversation(client, headers, doc)
    b = await conversation(client, headers, doc)
    c = await conversation(client, headers, doc)
    await ask_sse(client, headers, a["id"], "What is this document about?")
    await ask_sse(client, headers, a["id"], "Which Zebra_50% figures does it give?")
    await client.patch(
        f"/api/v1/conversations/{b['id']}", json={"title": "Quarterly PLAN"}, headers=headers
    )

    async def search(q: str) -> list[str]:
        r = await client.get("/api/v1/conversations", params={"q": q}, headers=headers)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    assert await search("quarterly plan") == [b["id"]]  # titles, any case
    assert await search("ZEBRA") == [a["id"]]  # a later question, not only the title
    assert await search("Zebra_50%") == [a["id"]]  # wildcards are taken literally
    assert await search("_50%x") == []
    assert await search("%") == [a["id"]]  # only the question with a literal %
    assert set(await search("quivr")) == {c["id"]}  # c is still named after its document
    assert len(await search("")) == 3
    other = await login(client)
    r = await client.get("/api/v1/conversations", params={"q": "zebra"}, headers=other)
    assert r.json()["items"] == []
    r = await client.get("/api/v1/conversations", params={"q": "x" * 201}, headers=headers)
    assert r.status_code == 400


async def test_documents_are_added_to_and_removed_from_a_conversation(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    a = await ready_upload(client, resources, headers, corpus / "quivr_sample.pdf")
    b = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, a)
    url = f"/api/v1/conversations/{conv['id']}"
    first = await ask_sse(client, headers, conv["id"], "What is DeepSeek-R1 trained with?")
    assert {s["upload_id"] for s in first[0][1]["sources"]} == {a}

    r = await client.patch(url, json={"upload_ids": [a, b]}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["upload_ids"] == [a, b]
    second = await ask_sse(client, headers, conv["id"], "What is DeepSeek-R1 trained with?")
    assert b in {s["upload_id"] for s in second[0][1]["sources"]}

    r = await client.patch(url, json={"upload_ids": [b]}, headers=headers)
    assert r.json()["upload_ids"] == [b]
    third = await ask_sse(client, headers, conv["id"], "What is DeepSeek-R1 trained with?")
    assert {s["upload_id"] for s in third[0][1]["sources"]} == {b}
    # Earlier answers keep their sources.
    detail = (await client.get(url, headers=headers)).json()
    assert {s["upload_id"] for s in detail["messages"][0]["sources"]} == {a}

    assert (await client.patch(url, json={"upload_ids": []}, headers=headers)).status_code == 400
    unknown = str(uuid.uuid4())
    assert (
        await client.patch(url, json={"upload_ids": [b, unknown]}, headers=headers)
    ).status_code == 404
    other = await login(client)
    theirs = (await upload(client, other, corpus / "table.pdf"))["id"]
    assert (
        await client.patch(url, json={"upload_ids": [theirs]}, headers=headers)
    ).status_code == 404
    broken = (await upload(client, headers, corpus / "bad" / "password.pdf"))["id"]
    on_app(client, run_jobs, resources)
    assert (
        await client.patch(url, json={"upload_ids": [b, broken]}, headers=headers)
    ).status_code == 409
    assert (await client.get(url, headers=headers)).json()["upload_ids"] == [b]  # unchanged
