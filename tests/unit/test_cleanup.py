"""Running headers and footers out, hyphenated line breaks joined; deterministic per document."""

import pypdfium2

from pdfqa.cleanup import RunningLines, join_hyphens
from tests.conftest import CORPUS


def feed(pages: list[str]) -> list[str]:
    cleaner = RunningLines()
    out = [text for n, t in enumerate(pages, 1) for _, text in cleaner.add(n, t)]
    out += [text for _, text in cleaner.finish()]
    return out


def test_running_headers_footers_and_page_numbers_go() -> None:
    words = ["parsing", "tables", "fonts", "images", "links", "forms", "layers"]
    bodies = [f"On {w}.\nThe {w} API reads {w}.\nIt returns {w}." for w in words]
    pages = [
        f"Chapter 4: Function reference {n + 19}\n{body}\n{n}" for n, body in enumerate(bodies, 1)
    ]
    assert feed(pages) == bodies


def test_a_line_on_one_page_only_stays() -> None:
    pages = ["Intro\nalpha text", "Results\nbeta text", "Summary\ngamma text"]
    assert feed(pages) == pages


def test_alternating_headers_of_facing_pages_go() -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    pages = [
        f"{'Annual Report' if n % 2 else 'Acme Corp'}\nAbout {w}.\nMore on {w}.\nEnd of {w}."
        for n, w in enumerate(words, 1)
    ]
    assert all(t.startswith("About") for t in feed(pages))


def test_hyphenated_line_breaks_are_joined() -> None:
    assert join_hyphens("the infor-\nmation age") == "the information age"
    assert join_hyphens("COVID-\n19 and non-GAAP") == "COVID-\n19 and non-GAAP"


def test_a_page_made_only_of_repeating_lines_keeps_them() -> None:
    """bad/long_5000_pages.pdf: each page is one line that, numbers masked, is the same on every
    page. It is the page's content; dropping it left 5,000 pages without text."""
    pdf = pypdfium2.PdfDocument(CORPUS / "bad" / "long_5000_pages.pdf")
    try:
        pages = [pdf[i].get_textpage().get_text_range() for i in range(12)]
    finally:
        pdf.close()
    assert all(p.startswith(f"Page {n} of the long document.") for n, p in enumerate(pages, 1))
    assert feed(pages) == [p.strip() for p in pages]
    # With text beside them, the same lines are a frame and go.
    framed = [f"{p}\nBody of page {n}, about topic {chr(97 + n)}." for n, p in enumerate(pages)]
    assert feed(framed) == [f"Body of page {n}, about topic {chr(97 + n)}." for n in range(12)]
