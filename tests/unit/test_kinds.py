"""What a question asks for, and what a sentence offers of it."""

from __future__ import annotations

import pytest

from pdfqa.kinds import Kind, kind_of, offered


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many employees does Uber have?", "count"),
        ("What percentage of trips happen outside the US?", "percent"),
        ("When did the Drizly acquisition close?", "year"),
        ("In which year was the company founded?", "year"),
        ("How much did Uber pay for Drizly?", "amount"),
        ("What was Lyft's revenue in 2021?", "amount"),
        ("How long is the warranty?", "number"),
        ("Who is the presenter of this slide?", "person"),
        ("Where was Gestalt psychology conceived?", "place"),
        ("What is the email id of Mtre Laurent Nahmiash?", "email"),
        ("Which number shall I call for AppleCare in Mexico?", "phone"),
        ("Which paper uses the Fast NMS processing?", "name"),
        ("Explain how GraphRAG builds its graph.", "other"),
    ],
)
def test_the_kind_a_question_asks_for(question: str, kind: Kind) -> None:
    assert kind_of(question) == kind


def spans(sentence: str, kind: Kind, question: str) -> list[str]:
    return [sentence[a:b] for a, b in offered(sentence, kind, question)]


def test_what_a_sentence_offers_leaves_out_what_the_question_says() -> None:
    sentence = "In 2021 we had approximately 29,300 employees in 72 countries."
    assert spans(sentence, "count", "How many employees did Uber have in 2021?") == [
        "29,300",
        "72",
    ]  # the year is no count, and the question already says it
    assert spans("Revenue was $17.5 billion, up 57%.", "amount", "revenue?") == [
        "$17.5 billion",
        "57%",
    ]
    assert spans("Contact lnahmiash@infavocats.com today.", "email", "email?") == [
        "lnahmiash@infavocats.com"
    ]
    assert spans("Call 1-800-275-2273 for help.", "phone", "which number?") == ["1-800-275-2273"]
    assert spans("It was founded by David Lubliner in Berlin.", "person", "who?") == [
        "David Lubliner",
        "Berlin",
    ]
    assert spans("Nothing of the kind here.", "percent", "what share?") == []
    # The number of a name is no count.
    assert spans("As a result of COVID-19, 3 offices closed.", "count", "how many?") == ["3"]
