"""The report's document model: typed blocks and their two renderings.

Every section of the report is a list of ``Block``s: ``Heading``, ``Paragraph``, ``Caption``,
``Table``, ``Figure`` (a PNG file), ``BulletList``, ``Warnings`` (the fair-comparison warnings),
``Links`` (file names) and ``Notes`` (numbered footnotes). ``render_markdown`` writes them for
report.md and bd_rate.md, ``render_html`` for report.html (figures embedded as base64 PNG), so
both files show the same content. Blocks are plain frozen records: they hold text, never compute it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _items(items: Sequence[str], mark: str = "") -> str:
    return "".join(f"- {mark}{item}\n" for item in items)


def _html_items(items: Sequence[str]) -> str:
    return "".join(f"<li>{html.escape(i)}</li>" for i in items)


@dataclass(frozen=True)
class Heading:
    """``#``/``##`` in Markdown, ``<h1>``/``<h2>`` in HTML."""

    level: int
    text: str

    def markdown(self) -> str | None:
        return f"{'#' * self.level} {self.text}\n"

    def html(self) -> str | None:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass(frozen=True)
class Paragraph:
    text: str

    def markdown(self) -> str | None:
        return self.text + "\n"

    def html(self) -> str | None:
        return f"<p class='p'>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class Caption:
    """A table's or figure's caption: a paragraph of its own class in HTML."""

    text: str

    def markdown(self) -> str | None:
        return self.text + "\n"

    def html(self) -> str | None:
        return f"<p class='caption'>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def markdown(self) -> str | None:
        return markdown_table(self.header, self.rows) + "\n"

    def html(self) -> str | None:
        return html_table(self.header, self.rows)


@dataclass(frozen=True)
class Figure:
    """A PNG file: linked by its name from report.md, embedded (base64) in report.html."""

    name: str
    path: Path

    def markdown(self) -> str | None:
        return f"![{self.name}]({self.path.name})\n"

    def html(self) -> str | None:
        data = base64.b64encode(self.path.read_bytes()).decode()
        return (f"<figure><img class='figure' alt='{html.escape(self.name)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(self.name)}</figcaption></figure>")


@dataclass(frozen=True)
class BulletList:
    items: Sequence[str]

    def markdown(self) -> str | None:
        return _items(self.items)

    def html(self) -> str | None:
        return "<ul class='family'>" + _html_items(self.items) + "</ul>"


@dataclass(frozen=True)
class Warnings:
    """The fair-comparison warnings: one bullet each, marked **Warning:** in Markdown."""

    items: Sequence[str]

    def markdown(self) -> str | None:
        return _items(self.items, "**Warning:** ")

    def html(self) -> str | None:
        return "<div class='warn'><b>Fair-comparison warnings</b><ul>" + _html_items(self.items) + "</ul></div>"


@dataclass(frozen=True)
class Links:
    """File names beside the report: a list in Markdown, links on one line in HTML."""

    names: Sequence[str]

    def markdown(self) -> str | None:
        return _items(self.names)

    def html(self) -> str | None:
        return "<p>" + " · ".join(f"<a href='{html.escape(n)}'>{html.escape(n)}</a>" for n in self.names) + "</p>"


@dataclass(frozen=True)
class Notes:
    """Numbered footnotes (``[1] ...``) of the table before them; nothing at all when empty."""

    items: Sequence[str]

    def markdown(self) -> str | None:
        return "".join(f"[{i}] {n}  \n" for i, n in enumerate(self.items, 1)) if self.items else None

    def html(self) -> str | None:
        return "<ol class='notes'>" + _html_items(self.items) + "</ol>" if self.items else None


Block: TypeAlias = Heading | Paragraph | Caption | Table | Figure | BulletList | Warnings | Links | Notes


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown for ``blocks``, one blank line between two blocks."""
    return "\n".join(text for block in blocks if (text := block.markdown()) is not None)


def render_html(blocks: Sequence[Block]) -> str:
    """HTML for ``blocks``, one line each; figures are embedded as base64 PNG."""
    return "\n".join(text for block in blocks if (text := block.html()) is not None)
