"""Asking questions: retrieval scoped to the asker, answers over SSE and JSON, feedback.

These tests run without a language model (extractive answers) against the real PostgreSQL,
Redis, arq worker and local Qdrant. The language-model path is in test_answers_llm.py.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.answer import EXTRACTIVE_NOTE, NOT_FOUND
from pdfqa.resources import Resources
from pdfqa.retrieval import retrieve
from tests.integration.conftest import login, on_app, run_jobs, upload

Client = AsyncTestClient[Litestar]
SSE = {"Accept": "text/event-stream"}


async def ready_upload(
    client: Client, resources: Resources, headers: dict[str, str], path: Path
) -> str:
    accepted = await upload(client, headers, path)
    on_app(client, run_jobs, resources)
    body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
    assert body["status"] == "ready", body
    return str(accepted["id"])


async def conversation(client: Client, headers: dict[str, str], *upload_ids: str) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": list(upload_ids)}, headers=headers
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
        if name:
            events.append((name, data))
    return events


async def ask_sse(
    client: Client, headers: dict[str, str], conversation_id: str, question: str
) -> list[tuple[str, Any]]:
    r = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"question": question},
        headers={**headers, **SSE},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


async def test_an_extractive_answer_streams_sources_tokens_and_cited_pages(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, upload_id)
    assert conv["upload_ids"] == [upload_id]
    assert conv["title"] == "DeepSeek_R1.pdf"

    events = await ask_sse(
        client, headers, conv["id"], "What pass@1 score does DeepSeek-R1 reach on AIME 2024?"
    )
    names = [name for name, _ in events]
    assert names[0] == "sources"
    assert names[-1] == "done"
    assert set(names[1:-1]) == {"token"}
    assert len(names) > 10  # streamed in pieces, not at once

    sources = events[0][1]["sources"]
    assert 1 <= len(sources) <= resources.settings.retrieval_top_k
    for s in sources:
        assert s["upload_id"] == upload_id
        assert s["upload_name"] == "DeepSeek_R1.pdf"
        assert 1 <= s["page"] <= 22
        assert s["text"]
        assert {"chunk_id", "score", "n", "pages"} <= s.keys()
    answer = "".join(data["text"] for name, data in events if name == "token")
    assert answer.count(EXTRACTIVE_NOTE) == 1
    assert "79.8" in answer  # the figure the paper reports

    done = events[-1][1]
    assert done["mode"] == "extractive"
    citations = done["citations"]
    assert citations
    by_n = {s["n"]: s for s in sources}
    for c in citations:
        assert f"[{c['n']}]" in answer
        assert c["page"] == by_n[c["n"]]["page"]
        assert c["chunk_id"] == by_n[c["n"]]["chunk_id"]
    # The cited passage really is on the cited page: its text is in that chunk.
    points = {p.chunk_id: p for p in on_app(client, resources.vectors.scroll, upload_id=upload_id)}
    assert any(
        "79.8" in points[c["chunk_id"]].text and c["page"] in points[c["chunk_id"]].pages
        for c in citations
    )

    # The question's vector is cached in Redis for the next time it is asked.
    cached = on_app(client, resources.redis.keys, "pdfqa:qvec:*")
    assert cached
    vector = on_app(client, resources.redis.get, cached[0])
    assert len(vector) == 4 * resources.embedder.dimensions

    stored = (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()
    assert [m["id"] for m in stored["messages"]] == [done["message_id"]]
    message = stored["messages"][0]
    assert message["answer"] == answer.strip()
    assert message["citations"] == citations
    assert message["feedback"] is None


async def test_the_json_form_returns_the_whole_answer(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, upload_id)
    r = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={
            "question": "Which reinforcement learning algorithm is used to train DeepSeek-R1-Zero?"
        },
        headers={**headers, "Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "message_id",
        "answer",
        "mode",
        "sources",
        "citations",
        "confidence",
        "reading",
    }
    assert body["reading"] == []  # every document is ready
    assert body["mode"] == "extractive"
    assert body["citations"]
    assert body["confidence"] >= resources.settings.min_confidence
    # The best sentence comes first, figures emphasised; it too is the document's own words.
    first = re.match(r"^(.+) \[(\d+)\] \(DeepSeek_R1.pdf, p\. (\d+)\)$", body["answer"], re.M)
    assert first is not None
    best = first.group(1).replace("**", "")
    source = next(s for s in body["sources"] if s["n"] == int(first.group(2)))
    assert " ".join(best.split()) in " ".join(source["context"].split())
    # Every source carries what the answerer read: its passage, widened on the same page.
    for s in body["sources"]:
        assert " ".join(s["text"].split()) in " ".join(s["context"].split())
    assert any(len(s["context"]) > len(s["text"]) for s in body["sources"])
    # Every quoted sentence is the document's own words, from the source it cites.
    quotes = re.findall(
        r'^- "(.+)" \[(\d+)\] \(DeepSeek_R1.pdf, p\. (\d+)\)$', body["answer"], re.M
    )
    assert quotes
    by_n = {s["n"]: s for s in body["sources"]}
    for sentence, n, page in quotes:
        source = by_n[int(n)]
        assert " ".join(sentence.split()) in " ".join(source["context"].split())
        assert int(page) == source["page"]
    assert {c["n"] for c in body["citations"]} <= {s["n"] for s in body["sources"]}


async def test_a_question_the_documents_cannot_answer_gets_a_plain_not_found(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, upload_id)
    events = await ask_sse(
        client, headers, conv["id"], "What is the population of Kazakhstan in 1970?"
    )
    # The sources are still shown, with the (low) confidence that made it "not found".
    name, first = events[0]
    assert name == "sources"
    assert first["sources"]
    assert 0 <= first["confidence"] < resources.settings.min_confidence
    answer = "".join(d["text"] for n, d in events if n == "token")
    assert answer.startswith(NOT_FOUND)
    assert "confidence: low" in answer
    assert events[-1][1]["mode"] == "not_found"
    assert events[-1][1]["confidence"] == first["confidence"]
    assert events[-1][1]["citations"] == []


async def test_follow_ups_keep_the_subject_without_a_language_model(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, upload_id)
    await ask_sse(client, headers, conv["id"], "What is DeepSeek-R1-Zero?")
    await ask_sse(client, headers, conv["id"], "How was it trained?")
    await ask_sse(
        client,
        headers,
        conv["id"],
        "Describe the distillation of smaller dense models from DeepSeek-R1.",
    )
    # A pronoun among enough words of its own does not lean on the question before.
    alone = "Why did they avoid neural reward models in this paper?"
    in_conversation = await ask_sse(client, headers, conv["id"], alone)
    messages = (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()[
        "messages"
    ]
    assert [m["query"] for m in messages] == [
        "What is DeepSeek-R1-Zero?",
        "What is DeepSeek-R1-Zero? How was it trained?",  # a follow-up: the subject is kept
        "Describe the distillation of smaller dense models from DeepSeek-R1.",  # stands alone
        alone,
    ]
    # ... and is answered exactly as it is in a conversation of its own.
    fresh = await ask_sse(
        client, headers, (await conversation(client, headers, upload_id))["id"], alone
    )
    assert in_conversation[0] == fresh[0]  # the same sources, in the same order
    assert [e for e in in_conversation if e[0] == "token"] == [e for e in fresh if e[0] == "token"]


async def test_feedback_is_kept_replaced_exported_and_withdrawn(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, upload_id)
    events = await ask_sse(client, headers, conv["id"], "What is the cold-start data used for?")
    message_id = events[-1][1]["message_id"]
    sources = events[0][1]["sources"]

    r = await client.put(
        f"/api/v1/messages/{message_id}/feedback", json={"vote": "up"}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["vote"] == "up"
    r = await client.put(
        f"/api/v1/messages/{message_id}/feedback",
        json={"vote": "down", "comment": "too vague"},
        headers=headers,
    )
    assert r.json()["vote"] == "down"
    stored = (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()
    assert stored["messages"][0]["feedback"]["vote"] == "down"
    assert stored["messages"][0]["feedback"]["comment"] == "too vague"

    r = await client.get("/api/v1/feedback/export", headers=headers)
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 1
    assert lines[0]["vote"] == "down"
    assert lines[0]["question"] == "What is the cold-start data used for?"
    assert lines[0]["answer"] == stored["messages"][0]["answer"]
    assert lines[0]["chunk_ids"] == [s["chunk_id"] for s in sources]

    r = await client.put(
        f"/api/v1/messages/{message_id}/feedback", json={"vote": "meh"}, headers=headers
    )
    assert r.status_code == 400
    assert (
        await client.delete(f"/api/v1/messages/{message_id}/feedback", headers=headers)
    ).status_code == 204
    stored = (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()
    assert stored["messages"][0]["feedback"] is None
    assert (await client.get("/api/v1/feedback/export", headers=headers)).text == ""


async def test_conversations_are_listed_newest_first_and_deleted(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    a = await ready_upload(client, resources, headers, corpus / "quivr_sample.pdf")
    b = await ready_upload(client, resources, headers, corpus / "file_multicolumn.pdf")
    first = await conversation(client, headers, a)
    second = await conversation(client, headers, a, b)
    assert second["title"] == "quivr_sample.pdf and 1 more"
    listed = (await client.get("/api/v1/conversations", headers=headers)).json()["items"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    await ask_sse(client, headers, first["id"], "What is this document about?")
    listed = (await client.get("/api/v1/conversations", headers=headers)).json()["items"]
    assert [c["id"] for c in listed] == [first["id"], second["id"]]  # activity moves it up
    assert (
        await client.delete(f"/api/v1/conversations/{first['id']}", headers=headers)
    ).status_code == 204
    assert (
        await client.get(f"/api/v1/conversations/{first['id']}", headers=headers)
    ).status_code == 404


async def test_only_unfailed_uploads_of_your_own_can_be_asked_about(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    broken = (await upload(client, headers, corpus / "bad" / "password.pdf"))["id"]
    on_app(client, run_jobs, resources)
    r = await client.post("/api/v1/conversations", json={"upload_ids": [broken]}, headers=headers)
    assert r.status_code == 409
    assert "cannot be asked about: its upload failed" in r.json()["detail"]
    # Still being read is fine (see test_reading.py): a queued upload may join a conversation.
    queued = (await upload(client, headers, corpus / "table.pdf"))["id"]
    r = await client.post("/api/v1/conversations", json={"upload_ids": [queued]}, headers=headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": [str(uuid.uuid4())]}, headers=headers
    )
    assert r.status_code == 404
    r = await client.post("/api/v1/conversations", json={"upload_ids": []}, headers=headers)
    assert r.status_code == 400


async def test_another_user_can_never_retrieve_read_or_vote_on_your_data(
    client: Client, resources: Resources, corpus: Path
) -> None:
    alice = await login(client)
    bob = await login(client)
    a_upload = await ready_upload(client, resources, alice, corpus / "DeepSeek_R1.pdf")
    b_upload = await ready_upload(client, resources, bob, corpus / "quivr_sample.pdf")
    conv = await conversation(client, alice, a_upload)
    events = await ask_sse(client, alice, conv["id"], "What is GRPO?")
    message_id = events[-1][1]["message_id"]

    r = await client.post("/api/v1/conversations", json={"upload_ids": [a_upload]}, headers=bob)
    assert r.status_code == 404
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": [b_upload, a_upload]}, headers=bob
    )
    assert r.status_code == 404
    assert (await client.get(f"/api/v1/conversations/{conv['id']}", headers=bob)).status_code == 404
    r = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"question": "What is GRPO?"},
        headers=bob,
    )
    assert r.status_code == 404
    r = await client.put(
        f"/api/v1/messages/{message_id}/feedback", json={"vote": "down"}, headers=bob
    )
    assert r.status_code == 404
    assert (
        await client.delete(f"/api/v1/messages/{message_id}/feedback", headers=bob)
    ).status_code == 404
    assert (
        await client.delete(f"/api/v1/conversations/{conv['id']}", headers=bob)
    ).status_code == 404
    assert (await client.get("/api/v1/conversations", headers=bob)).json()["items"] == []
    assert (await client.get("/api/v1/feedback/export", headers=bob)).text == ""

    # Below the API: retrieval itself, given Alice's upload id under Bob's identity, finds nothing.
    bob_id = (await client.get("/api/v1/uploads", headers=bob)).json()["items"][0]["user_id"]
    found = on_app(
        client,
        retrieve,
        resources,
        user_id=uuid.UUID(bob_id),
        upload_names={uuid.UUID(a_upload): "forged", uuid.UUID(b_upload): "quivr_sample.pdf"},
        query="What is GRPO? Group Relative Policy Optimization",
    )
    assert found.sources
    assert {s.upload_id for s in found.sources} == {b_upload}


@pytest.mark.parametrize("question", ["", "   ", "x" * 4001])
async def test_bad_questions_are_refused(
    client: Client, resources: Resources, corpus: Path, question: str
) -> None:
    headers = await login(client)
    upload_id = await ready_upload(client, resources, headers, corpus / "quivr_sample.pdf")
    conv = await conversation(client, headers, upload_id)
    r = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages", json={"question": question}, headers=headers
    )
    assert r.status_code == 400


async def test_a_small_document_is_not_crowded_out_by_a_large_one(
    client: Client, resources: Resources, corpus: Path
) -> None:
    # graphrag.pdf: six slides; DeepSeek_R1.pdf: a long paper about language models. Asked
    # about GraphRAG with both selected, the slides are among the sources.
    headers = await login(client)
    small = await ready_upload(client, resources, headers, corpus / "graphrag.pdf")
    large = await ready_upload(client, resources, headers, corpus / "DeepSeek_R1.pdf")
    conv = await conversation(client, headers, small, large)
    events = await ask_sse(client, headers, conv["id"], "What is GraphRAG?")
    sources = events[0][1]["sources"]
    assert small in {s["upload_id"] for s in sources[:3]}
    assert events[-1][1]["mode"] == "extractive"
    # One source per page, and each names the one page its text is on.
    pages = [(s["upload_id"], s["page"]) for s in sources]
    assert len(pages) == len(set(pages))
    assert all(s["pages"] == [s["page"]] for s in sources)
