"""Ruled tables: which pages have them, and pdfplumber's tables rendered as labelled rows.

A page goes to pdfplumber only when pdfium's objects and text look like a ruled table (many path
objects and several lines of numbers); each table is rendered as ``label | 2021: 17,455 | 2020:
...`` lines, in place of pdfium's flattened text for that region (see ``pages``).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = [
    "NUMBER",
    "TABLE_MIN_NUMERIC_LINES",
    "TABLE_MIN_PATHS",
    "count_paths",
    "find_tables",
    "looks_like_table",
]

NUMBER: Final = re.compile(r"^[($€£]*-?\d[\d,]*(?:\.\d+)?\)?%?$")
"""A number as tables print it: ``(1,234)``, ``$17.5``, ``12%``."""
_YEAR: Final = re.compile(r"^(?:19|20)\d\d$")

TABLE_MIN_PATHS: Final = 10
"""Table detector: a page needs this many top-level path objects (rules, cell shading) ..."""
TABLE_MIN_NUMERIC_LINES: Final = 3
"""... and this many text lines holding at least two numbers to go to pdfplumber."""

Box = tuple[float, float, float, float]


def looks_like_table(paths: int, text: str) -> bool:
    """The table detector: many vector paths and several lines of numbers."""
    if paths < TABLE_MIN_PATHS:
        return False
    numeric = 0
    for line in text.splitlines():
        if sum(1 for tok in line.split() if NUMBER.match(tok)) >= 2:
            numeric += 1
            if numeric >= TABLE_MIN_NUMERIC_LINES:
                return True
    return False


def count_paths(page: Any) -> int:
    """Top-level path objects of a pypdfium2 page."""
    import pypdfium2.raw as pdfium_c

    paths = 0
    for i in range(pdfium_c.FPDFPage_CountObjects(page.raw)):
        obj = pdfium_c.FPDFPage_GetObject(page.raw, i)
        if pdfium_c.FPDFPageObj_GetType(obj) == pdfium_c.FPDF_PAGEOBJ_PATH:
            paths += 1
    return paths


def find_tables(plumber_page: Any) -> list[tuple[Box, str]]:
    """pdfplumber's tables on a page as (bbox, rendered rows), tables that render to nothing
    (rules around prose) left out. pdfplumber's y axis points down from the top of the page."""
    found = plumber_page.find_tables()
    return [(t.bbox, rendered) for t in found if (rendered := _render(plumber_page, t))]


def _render(page: Any, table: Any) -> str:
    """Render a pdfplumber table as ``label | header: value | ...`` lines; "" if it is not one."""
    rows: list[tuple[str, list[tuple[float, str]]]] = []
    for row, texts in zip(table.rows, table.extract(), strict=False):
        cells = _merge_cells(row.cells, texts)
        if not cells:
            continue
        label = ""
        if not NUMBER.match(cells[0][1].replace(" ", "")):
            label = cells.pop(0)[1]
        rows.append((label, cells))
    valued = [cells for _, cells in rows if cells]
    if len(rows) < 2 or not valued:
        return ""
    if sum(len(label) for label, _ in rows) / len(rows) > 80:
        return ""  # rules around prose, not a table
    columns = max(len(cells) for cells in valued)
    headers = _headers_above(page, table.bbox, [x for x, _ in max(valued, key=len)], columns)
    lines = []
    for label, cells in rows:
        values = [f"{headers[_nearest(headers, x)][1]}: {v}" if headers else v for x, v in cells]
        lines.append(" | ".join([label, *values]) if label else " | ".join(values))
    return "\n".join(line for line in lines if line)


def _merge_cells(cells: list[Any], texts: list[str | None]) -> list[tuple[float, str]]:
    """Drop empty cells; glue a lone ``$`` to the next cell and a lone ``%`` to the previous."""
    out: list[tuple[float, str]] = []
    carry = ""
    for bbox, raw in zip(cells, texts, strict=False):
        value = " ".join((raw or "").split()).replace("$ ", "$")
        if not value or bbox is None:
            continue
        if value in {"$", "€", "£"}:
            carry = value
            continue
        if value in {"%", ")", ")%"} and out:
            x, prev = out[-1]
            out[-1] = (x, prev + value)
            continue
        out.append(((bbox[0] + bbox[2]) / 2, f"{carry}{value}" if carry else value))
        carry = ""
    return out


def _headers_above(
    page: Any, bbox: tuple[float, float, float, float], xs: list[float], columns: int
) -> list[tuple[float, str]]:
    """Column headers: the nearest line of year-like words just above the table, if it fits."""
    x0, top, x1, _ = bbox
    if top <= 1:
        return []
    words = page.crop((x0, max(0.0, top - 60), x1, top)).extract_words()
    lines: dict[int, list[tuple[float, str]]] = {}
    for w in words:
        if _YEAR.match(w["text"]):
            lines.setdefault(round(w["bottom"]), []).append(((w["x0"] + w["x1"]) / 2, w["text"]))
    for _, found in sorted(lines.items(), reverse=True):
        if len(found) == columns or (len(found) >= 2 and len(found) == len(xs)):
            return sorted(found)
    return []


def _nearest(headers: list[tuple[float, str]], x: float) -> int:
    return min(range(len(headers)), key=lambda i: abs(headers[i][0] - x))
