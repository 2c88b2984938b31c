from pdfqa import words
from pdfqa.words import STOP_WORDS, is_follow_up, specific_terms, terms, tokenize


def test_one_stop_word_list_serves_index_and_answers() -> None:
    text = "What is the revenue of the company?"
    assert not set(tokenize(text)) & STOP_WORDS
    assert terms(text) == {"revenu", "compani"}  # stems: "revenues" and "companies" match
    assert terms("Revenues of companies") == terms(text)


def test_specific_terms_skip_question_words_even_capitalised() -> None:
    assert specific_terms("Tell me how Lyft did in 2021") == {"lyft", "2021"}
    assert specific_terms("According to the report, what grew?") == set()


def test_follow_up_detection() -> None:
    follow_ups = [
        "And in 2020?",
        "Why did it grow?",
        "what are its risks?",
        "who founded it?",
        "What about Japan?",
        "How much did Uber pay for it?",
        "Why?",
        "Tell me more",
        "How much?",
    ]
    standing = [
        "What revenue did Lyft report for the full year 2021?",
        # Questions asked one after another in the benchmark's conversations: "this report",
        # "the document" and a pronoun among enough words of their own do not lean back.
        "How many organisations does this report introduce?",
        "What does NARL stand for?",
        "What are the uses of the remote sensing satellite constellation?",
        "What is GraphRAG?",
        "Who is the author of this document?",
        "How do they stop the model from mixing languages in its chain of thought?",
        "Why did the company's revenue decline in 2021?",
    ]
    assert [q for q in follow_ups if not is_follow_up(q)] == []
    assert [q for q in standing if is_follow_up(q)] == []


def test_page_references() -> None:
    assert words.page_references("What date is mentioned on page 14?") == [14]
    assert words.page_references("What models are introduced on pages 10 and 11?") == [10, 11]
    assert words.page_references("Summarise pages 3-5, then p. 9") == [3, 4, 5, 9]
    assert words.page_references("What colour is the stamp on the 6th page?") == [6]
    assert words.page_references("What date is on the second page?") == [2]
    assert words.page_references("Pages 1 to 100 please") == [1, 2, 3, 4, 5]  # at most five
    assert words.page_references("How many pages does the report have? 2 pages?") == []
    assert words.page_references("What was revenue in 2021?") == []


def test_the_figures_a_question_names() -> None:
    assert words.named_numbers("What share voted in 2024?") == {"2024"}
    assert words.named_numbers("What is common equity for COSTCO in FY2021?") == {"2021"}
    assert words.named_numbers("When did tweets exceed 700,000?") == {"700,000"}
    # Small numbers, page numbers and what follows the question (its answer's form) are not.
    assert words.named_numbers("Which 3 tasks are on page 142?") == set()
    assert words.named_numbers("What was revenue in 2021? Round to 100 dollars.") == {"2021"}


def test_the_question_asked_leaves_out_instructions_on_the_answers_form() -> None:
    q = "What is Costco's total debt in FY2021? Answer in millions."
    assert words.asked(q) == "What is Costco's total debt in FY2021?"
    assert words.asked("Why? And how?") == "Why? And how?"
    assert words.asked("what is prop 22") == "what is prop 22"
