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
    assert is_follow_up("And in 2020?")
    assert is_follow_up("Why did it grow?")
    assert not is_follow_up("What revenue did Lyft report for the full year 2021?")


def test_page_references() -> None:
    assert words.page_references("What date is mentioned on page 14?") == [14]
    assert words.page_references("What models are introduced on pages 10 and 11?") == [10, 11]
    assert words.page_references("Summarise pages 3-5, then p. 9") == [3, 4, 5, 9]
    assert words.page_references("What colour is the stamp on the 6th page?") == [6]
    assert words.page_references("What date is on the second page?") == [2]
    assert words.page_references("Pages 1 to 100 please") == [1, 2, 3, 4, 5]  # at most five
    assert words.page_references("How many pages does the report have? 2 pages?") == []
    assert words.page_references("What was revenue in 2021?") == []
