"""Citations, extractive answers and the follow-up rule: pure functions."""

from __future__ import annotations

import msgspec

from pdfqa.answer import (
    EXTRACTIVE_NOTE,
    NOT_FOUND,
    extractive_answer,
    not_found_answer,
    pieces,
    prompt,
)
from pdfqa.citations import Source, cited
from pdfqa.retrieval import standalone_query
from pdfqa.words import specific_terms


def source(n: int, text: str, page: int = 1) -> Source:
    return Source(
        n=n,
        chunk_id=f"c{n}",
        upload_id="u",
        upload_name="report.pdf",
        page=page,
        pages=[page],
        text=text,
        score=1.0 / n,
    )


def test_citations_are_the_sources_the_answer_cites_in_order_of_first_mention() -> None:
    sources = [source(1, "a", 3), source(2, "b", 7), source(3, "c", 9)]
    found = cited("Revenue rose [2]. Costs fell [1][2]. Margins [1, 3]. Bogus [9].", sources)
    assert [(c.n, c.page) for c in found] == [(2, 7), (1, 3), (3, 9)]
    assert cited("No citations at all.", sources) == []


def test_the_extractive_answer_quotes_the_best_matching_sentences_with_their_pages() -> None:
    sources = [
        source(
            1, "The weather was mild. Revenue was $17.5 billion in 2021, up 57% year over year.", 56
        ),
        source(2, "Our headquarters are in San Francisco. We have many employees worldwide.", 4),
    ]
    text = extractive_answer("What was revenue in 2021?", sources, 0.5, 0.2)
    # The best sentence first, the figure it asks for emphasised (not the year it already says).
    assert text.startswith(
        "Revenue was **$17.5 billion** in 2021, up **57%** year over year. [1] (report.pdf, p. 56)"
    )
    assert "weather" not in text
    assert text.count(EXTRACTIVE_NOTE) == 1
    assert text.endswith("Confidence: high (0.50).")


def test_table_rows_are_quoted_as_a_small_table() -> None:
    rows = "Revenue | 2021: $17,455 | 2020: $11,139\nNet loss | 2021: $(496) | 2020: $(6,768)"
    text = extractive_answer("What was the net loss in 2021?", [source(1, rows, 77)])
    assert text.startswith(
        "|  | 2021 | 2020 |\n|---|---|---|\n| Revenue | $17,455 | $11,139 |\n"
        "| Net loss | $(496) | $(6,768) |\n[1] (report.pdf, p. 77)"
    )


def test_not_found_says_so_with_its_confidence() -> None:
    text = not_found_answer(0.08, 0.2)
    assert text.startswith(NOT_FOUND)
    assert "low, 0.08" in text


def test_pieces_stream_every_character_of_the_answer() -> None:
    text = "Revenue was $17.5 billion [1].\n- next line"
    assert "".join(pieces(text)) == text
    assert len(pieces(text)) > 3


def test_the_prompt_numbers_passages_with_document_and_page() -> None:
    messages = prompt(
        "What was revenue?", [source(1, "Revenue was 5.", 9)], [("hi", "hello")], nonce="n0"
    )
    assert messages[0].role == "system"
    assert [m.role for m in messages[1:]] == ["user", "assistant", "user"]
    expected = '<passage-n0 n="1" document="report.pdf" page="9">\nRevenue was 5.\n</passage-n0>'
    assert expected in messages[-1].content
    assert "passage-n0" in messages[0].content
    assert messages[-1].content.endswith("Question: What was revenue?")


def test_specific_terms_are_numbers_and_names() -> None:
    assert specific_terms("What was Uber's revenue in 2021 in Japan?") >= {"2021", "japan"}
    assert "what" not in specific_terms("What is the net loss?")
    assert specific_terms("how big is it") == set()


def test_a_follow_up_keeps_the_previous_subject_but_a_new_question_stands_alone() -> None:
    previous = ["What was Lyft's revenue in 2021?"]
    assert (
        standalone_query("And in 2020?", previous)
        == "What was Lyft's revenue in 2021? And in 2020?"
    )
    assert standalone_query("Why did it grow?", previous).startswith("What was Lyft's revenue")
    new = "Who audits Lyft's financial statements every year?"
    assert standalone_query(new, previous) == new
    assert standalone_query("What is GRPO?", []) == "What is GRPO?"


def test_the_prompt_gives_contexts_while_they_fit_then_passages() -> None:
    wide = [
        msgspec.structs.replace(source(n, f"passage {n}"), context=f"passage {n} " + "x" * 300)
        for n in (1, 2, 3)
    ]
    user = prompt("Q?", wide, [], nonce="abc", budget_tokens=160)[-1].content  # 640 characters
    assert user.count("x" * 300) == 2  # the two best sources get their context
    assert '<passage-abc n="3" document="report.pdf" page="1">\npassage 3\n</passage-abc>' in user


def test_a_list_asked_for_is_answered_as_a_list() -> None:
    slide = (
        "HIT Applications \u2022 Patient registration \u2022 Insurance validation "
        "\u2022 Billing systems \u2022 Telemedicine"
    )
    sources = [source(1, "Some hospitals use tablets for notes and forms every day.", 3)]
    sources.append(source(2, slide, 7))
    text = extractive_answer("What are the HIT applications?", sources)
    assert text.startswith(
        "HIT Applications:\n- Patient registration\n- Insurance validation\n- Billing systems\n"
        "- Telemedicine\n[2] (report.pdf, p. 7)"
    )


def test_a_sentence_cut_at_a_line_break_goes_on_and_references_are_not_quoted() -> None:
    text = (
        "We mainly conduct experiments on the\n"
        "event relation extraction and deductive reasoning tasks.\n"
        "[12] A. Author, B. Author. Experiments on reasoning tasks. In Proceedings of ACL, 2020."
    )
    answer = extractive_answer("Which tasks were the experiments conducted on?", [source(1, text)])
    assert answer.startswith(
        "We mainly conduct experiments on the event relation extraction and deductive reasoning"
    )
    assert "Proceedings" not in answer


def test_the_digits_of_a_name_are_not_emphasised_as_figures() -> None:
    text = extractive_answer(
        "How does the distilled Qwen model score on MATH-500?",
        [source(1, "DeepSeek-R1-Distill-Qwen-32B scores 72.6% on AIME and 94.3% on MATH-500.")],
    )
    assert text.startswith("DeepSeek-R1-Distill-Qwen-32B scores **72.6%** on AIME and **94.3%**")
